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

// The structured points of a second opinion, kept machine-readable on the consult note so
// opinions can be compared point by point. The readable note is the attachment.
// The options are a separate extension (one per option): nested complex extensions trip
// Medplum's validator, which applies inner slices to the outer level.
Extension: SecondOpinionExtension
Id: second-opinion
Title: "Second opinion (structured)"
Description: "The consultant's opinion on the same points as the first one: agreement with the diagnosis and the plan, the diagnosis, a summary, what information was missing, and the follow-up. The options are `second-opinion-option` extensions beside it."
* ^context[0].type = #element
* ^context[0].expression = "DocumentReference"
* value[x] 0..0
* extension contains
    diagnosisAgreement 1..1 and
    planAgreement 1..1 and
    diagnosis 0..* and
    summary 1..1 and
    missingInformation 0..* and
    followUp 0..1
* extension[diagnosisAgreement].value[x] only Coding
* extension[diagnosisAgreement].valueCoding from OpinionAgreementVS (required)
* extension[planAgreement].value[x] only Coding
* extension[planAgreement].valueCoding from OpinionAgreementVS (required)
* extension[diagnosis].value[x] only CodeableConcept
* extension[summary].value[x] only string
* extension[missingInformation].value[x] only string
* extension[followUp].value[x] only string

Extension: SecondOpinionOptionExtension
Id: second-opinion-option
Title: "Second opinion: an option"
Description: "One treatment or management option the consultant considered, in the consultant's order: whether it is the preferred one, why, its key risks and the recovery or downtime to expect."
* ^context[0].type = #element
* ^context[0].expression = "DocumentReference"
* value[x] 0..0
* extension contains
    option 1..1 and
    preferred 0..1 and
    rationale 0..1 and
    risk 0..* and
    recovery 0..1
* extension[option].value[x] only string
* extension[preferred].value[x] only boolean
* extension[rationale].value[x] only string
* extension[risk].value[x] only string
* extension[recovery].value[x] only string

// The patient's and the physician's own questions are notes of the referral,
// so an EHR shows them as notes; this extension marks such a note as a question and says who
// asked it. A question's index is its position among the notes so marked.
Extension: ReferralQuestionExtension
Id: referral-question
Title: "Referral question"
Description: "Marks a note of the referral as one of the patient's or the physician's own questions, which every consultant's opinion answers one by one. The value says who asked it. A question's index (0, 1, ...) is its position among the notes so marked."
* ^context[0].type = #element
* ^context[0].expression = "ServiceRequest.note"
* value[x] 1..1
* value[x] only Coding
* valueCoding from QuestionAskerVS (required)

// One answer of the opinion to one of the referral's questions, beside the second-opinion
// extension (a sub-extension of it would be a nested complex extension, which Medplum's
// validator mis-reads, as for the options).
Extension: SecondOpinionAnswerExtension
Id: second-opinion-answer
Title: "Second opinion: an answer to a referral question"
Description: "The consultant's answer to one of the referral's questions (by its index among the ServiceRequest's referral-question notes): the answer's text, or why the question cannot be answered."
* ^context[0].type = #element
* ^context[0].expression = "DocumentReference"
* value[x] 0..0
* obeys so-answer-1
* extension contains
    question 1..1 and
    text 0..1 and
    notAnswerable 0..1
* extension[question].value[x] only integer
* extension[text].value[x] only string
* extension[notAnswerable].value[x] only string

Invariant: so-answer-1
Description: "An answer has either a text or the reason the question cannot be answered, not both"
Severity: #error
Expression: "extension.where(url = 'text').exists() xor extension.where(url = 'notAnswerable').exists()"
