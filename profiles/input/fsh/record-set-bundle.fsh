// The records sent to a consultant: an immutable collection of document references
// (plus diagnostic reports and imaging studies), each attachment verifiable.

Profile: RecordSetBundle
Parent: Bundle
Id: record-set-bundle
Title: "Record set"
Description: "The patient's records for one second-opinion Task. A sent record set is immutable; adding records makes a new version with a new identifier."
* obeys so-recordset-2
// A plain collection: no transaction semantics, nothing to process on receipt.
* type = #collection
// Which version of the record set this is, and when it was assembled.
* identifier 1..1
* timestamp 1..1
* entry.resource 1..1
* entry obeys so-recordset-1

Invariant: so-recordset-1
Description: "A record-set entry is a DocumentReference, DiagnosticReport or ImagingStudy"
Severity: #error
Expression: "resource is DocumentReference or resource is DiagnosticReport or resource is ImagingStudy"

// The consultant must be able to fetch each attachment and check its size and hash
// (SHA-1, base64, as FHIR defines Attachment.hash) before relying on it.
Invariant: so-recordset-2
Description: "Every DocumentReference attachment in the record set has contentType, size, hash and url"
Severity: #error
Expression: "entry.resource.ofType(DocumentReference).content.attachment.all(contentType.exists() and size.exists() and hash.exists() and url.exists())"
