// The consultant's opinion as a document, posted back to the referring EHR.
// A later issue adds structured-opinion extensions (diagnosis, options, risks, recovery).

Profile: ConsultNote
Parent: DocumentReference
Id: consult-note
Title: "Second-opinion consult note"
Description: "The consultant's second opinion as a readable consult note (LOINC 11488-4), referenced from Task.output and posted to the referring EHR."
* status = #current
// LOINC 11488-4 "Consult note"; display left out of the pattern (codes identify concepts).
* type 1..1
* type = $loinc#11488-4
* subject 1..1
* subject only Reference(Patient)
* date 1..1
// The consultant(s) who wrote the opinion.
* author 1..*
// The readable note, inline or by URL, with a content type so it can be rendered.
* content 1..*
* content.attachment.contentType 1..1
* content.attachment obeys so-consult-1
// The referral this opinion answers.
* context.related 0..*
* context.related ^short = "The second-opinion ServiceRequest this note answers"

Invariant: so-consult-1
Description: "The consult note's attachment carries its content inline (data) or by url"
Severity: #error
Expression: "data.exists() or url.exists()"
