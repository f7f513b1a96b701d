// A follow-up question the referrer asks a consultant after its opinion, and the consultant's
// answer. Both are Communications about the consultant's Task; the answer points
// at its question with inResponseTo, and the question carries the date its answer is due.

Profile: FollowUpCommunication
Parent: Communication
Id: follow-up-communication
Title: "Follow-up question or answer"
Description: "A referrer's follow-up question to a consulting clinic after its second opinion, or the clinic's answer to one (inResponseTo the question). Readable by the referrer and that clinic only."
* obeys so-followup-1
// A business identifier this service owns: the post-back's conditional create keys on it.
* identifier 1..*
* status = #completed
// The consultant's Task the thread belongs to.
* basedOn 1..1
* basedOn only Reference(Task)
* subject 1..1
* subject only Reference(Patient)
* sent 1..1
* sender 1..1
* recipient 1..*
// The question or the answer, as text.
* payload 1..1
* payload.content[x] only string
* inResponseTo 0..1
* inResponseTo only Reference(Communication)
* extension contains FollowUpDueExtension named due 0..1
// Unfolds the extension's elements (its fixed url) so the slice matches by url.
* extension[due].value[x] ^short = "When the answer is due"

Extension: FollowUpDueExtension
Id: follow-up-due
Title: "Follow-up answer due"
Description: "When the consulting clinic's answer to a follow-up question is due (from the referral's priority)."
* ^context[0].type = #element
* ^context[0].expression = "Communication"
* value[x] 1..1
* value[x] only dateTime

Invariant: so-followup-1
Description: "A follow-up question carries the date its answer is due; an answer points at its question"
Severity: #error
Expression: "inResponseTo.exists() or extension.where(url = 'https://second-opinion.org/fhir/StructureDefinition/follow-up-due').exists()"
