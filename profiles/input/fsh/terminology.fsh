// Code systems and value sets defined by the service. Codes and displays must match
// src/fhir/constants.ts (KIND_DISPLAY, REVIEW_TYPE_DISPLAY, BUSINESS_STATUS); the runtime
// validator derives its code table from the compiled CodeSystems below, so a code added
// here is accepted at runtime after `npm run profiles`.

CodeSystem: SecondOpinionKind
Id: second-opinion-kind
Title: "Second-opinion kind"
Description: "What the referring clinician wants a second opinion on. Each kind has its own checklist of records that matter."
// Complete: the service owns every code; an unknown code is an error, not a local extension.
* ^caseSensitive = true
* ^content = #complete
* ^experimental = false
* #diagnosis-confirmation "Diagnosis confirmation" "Confirm or revise the diagnosis made by the first clinician."
* #treatment-choice "Treatment choice" "Compare treatment options, e.g. surgical versus non-surgical, for a confirmed diagnosis."
* #pre-procedure "Pre-procedure second opinion" "Review whether a planned procedure is indicated before it is performed."
* #revision "Revision after a prior procedure" "Assess whether a revision of an earlier procedure (e.g. an implant) is needed."
* #complication "Complication review" "Review a complication after treatment and how to manage it."
* #pathology-review "Pathology second read" "Independent second read of pathology reports and slides or their images."
* #imaging-review "Imaging second read" "Independent second read of diagnostic imaging studies."

ValueSet: SecondOpinionKindVS
Id: second-opinion-kind
Title: "Second-opinion kinds"
Description: "All kinds of second opinion the service handles (ServiceRequest.code)."
* ^experimental = false
* include codes from system SecondOpinionKind

CodeSystem: ReviewType
Id: review-type
Title: "Review type"
Description: "How the consultant reviews the case."
* ^caseSensitive = true
* ^content = #complete
* ^experimental = false
* #records-only "Records-only desk review" "The consultant reviews the record set without seeing the patient."
* #virtual "Virtual visit" "The consultant reviews the records and sees the patient in a video or phone visit."
* #in-person "In-person re-evaluation" "The consultant reviews the records and re-examines the patient in person."

ValueSet: ReviewTypeVS
Id: review-type
Title: "Review types"
Description: "All review types (review-type extension on ServiceRequest)."
* ^experimental = false
* include codes from system ReviewType

CodeSystem: TaskBusinessStatus
Id: task-business-status
Title: "Second-opinion Task business status"
Description: "The finer steps of a consultant's Task inside the R4 Task.status state machine: records, consent, questions, delivery and overdue work."
* ^caseSensitive = true
* ^content = #complete
* ^experimental = false
* #records-pending "Record set not yet assembled" "The Task exists; the service has not yet assembled the record set from the referring EHR."
* #awaiting-records "Awaiting required records" "Records required by the kind's checklist are missing; the case waits for them instead of going out incomplete."
* #awaiting-consent "Awaiting patient consent to disclose" "The patient has not (yet) consented to disclose the records to this consultant."
* #records-ready "Record set ready for the consultant" "The record set is assembled, verified and available to the consultant."
* #records-failed "Record set could not be assembled" "Assembling the record set failed (e.g. the referring EHR could not be read)."
* #information-requested "Consultant requested more information" "The consultant asked the referrer for more information before giving an opinion."
* #cancellation-requested "Referrer requested cancellation" "The referrer asked to cancel the referral; the consultant's Task is being cancelled."
* #opinion-delivered "Opinion delivered to the referring EHR" "The consultant's opinion was posted back to the referring clinician's EHR."
* #delivery-failed "Opinion could not be delivered" "Posting the opinion to the referring EHR failed after all retries."
* #overdue "Past the due date" "The Task is past its due date (Task.restriction.period.end) without an opinion."

ValueSet: TaskBusinessStatusVS
Id: task-business-status
Title: "Second-opinion Task business statuses"
Description: "All business statuses of a second-opinion Task (Task.businessStatus)."
* ^experimental = false
* include codes from system TaskBusinessStatus

CodeSystem: OpinionAgreement
Id: opinion-agreement
Title: "Agreement with the first opinion"
Description: "How the second opinion relates to the first clinician's diagnosis or plan."
* ^caseSensitive = true
* ^content = #complete
* ^experimental = false
* #agree "Agree" "The consultant agrees with the first opinion."
* #agree-with-modifications "Agree with modifications" "The consultant agrees in substance but recommends changes."
* #disagree "Disagree" "The consultant disagrees with the first opinion."

ValueSet: OpinionAgreementVS
Id: opinion-agreement
Title: "Agreement with the first opinion"
Description: "Agreement codes of a second opinion (diagnosis and plan)."
* ^experimental = false
* include codes from system OpinionAgreement

CodeSystem: ParticipantRole
Id: participant-role
Title: "Network participant role"
Description: "What a participant of the referral network does in it (Organization.type of the service's FHIR directory). Codes and displays must match src/network/network-schema.ts (roles) and src/network/fhir-directory.ts (ROLE_DISPLAY)."
* ^caseSensitive = true
* ^content = #complete
* ^experimental = false
* #referrer "Referrer" "Refers patients for a second opinion from its EHR and receives the opinions back."
* #consultant "Consulting clinic" "Reviews referred cases and returns second opinions."
* #physician "Primary physician" "Reads the opinions returned for its patients' referrals, side by side with the first opinion."
* #auditor "Auditor" "Reads the audit trail of disclosures and reads, and the delivery and push logs."
* #admin "Administrator" "Operates the service: connection checks of participants' EHRs, re-drives of failed deliveries."
* #operator "Operator" "Monitors the service: scrapes its metrics (counts and timings, no patient data)."

ValueSet: ParticipantRoleVS
Id: participant-role
Title: "Network participant roles"
Description: "All roles of a network participant (Organization.type of the service's FHIR directory)."
* ^experimental = false
* include codes from system ParticipantRole

CodeSystem: QuestionAsker
Id: question-asker
Title: "Who asked a referral question"
Description: "Who asked one of the questions a second-opinion referral carries for the consultant."
* ^caseSensitive = true
* ^content = #complete
* ^experimental = false
* #patient "Patient" "The patient's own question."
* #physician "Physician" "The referring physician's question."

ValueSet: QuestionAskerVS
Id: question-asker
Title: "Who asked a referral question"
Description: "Who asked a referral question (referral-question extension on ServiceRequest.note)."
* ^experimental = false
* include codes from system QuestionAsker
