// The consultant's opinion as a document, posted back to the referring EHR.
// The structured points (agreement, diagnosis, options, risks, recovery) are the second-opinion extension.

Profile: ConsultNote
Parent: DocumentReference
Id: consult-note
Title: "Second-opinion consult note"
Description: "The consultant's second opinion as a readable consult note (LOINC 11488-4), referenced from Task.output and posted to the referring EHR."
* status = #current
// The opinion's structured points, machine-readable, for comparison with other opinions:
// exactly one second-opinion extension, a second-opinion-option per option and a
// second-opinion-answer per referral question. Required by
// an invariant rather than extension slices: Medplum's validator applies a complex
// extension's inner slices at the outer level, so slicing would reject every note. The
// extensions' contents are checked against their definitions by the service's validator.
* obeys so-consult-2
// A business identifier this service owns: the post-back's conditional create keys on it.
* identifier 1..*
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

Invariant: so-consult-2
Description: "A consult note carries exactly one structured second-opinion extension"
Severity: #error
Expression: "extension.where(url = 'https://second-opinion.org/fhir/StructureDefinition/second-opinion').count() = 1"
