// Extensions on the referral (ServiceRequest) for facts R4 has no element for.

Extension: ReviewTypeExtension
Id: review-type
Title: "Review type"
Description: "How the consultant is asked to review the case: records-only desk review, virtual visit or in-person re-evaluation."
// Only on the referral: the review type is agreed when the referral is made.
* ^context[0].type = #element
* ^context[0].expression = "ServiceRequest"
// Exactly one coded value from our own closed list, so consumers can switch on it.
* value[x] 1..1
* value[x] only Coding
* valueCoding from ReviewTypeVS (required)

Extension: BlindedExtension
Id: blinded
Title: "Blinded referral"
Description: "When true, the first clinician's assessment is withheld from the consultants until each has committed an opinion of their own (knowing the first opinion can bias the second)."
* ^context[0].type = #element
* ^context[0].expression = "ServiceRequest"
* value[x] 1..1
* value[x] only boolean
