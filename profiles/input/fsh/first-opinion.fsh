// The first clinician's assessment, kept apart from the referral so it can be withheld
// from consultants while the referral is blinded.

Profile: FirstOpinion
Parent: ClinicalImpression
Id: first-opinion
Title: "First opinion"
Description: "The referring clinician's diagnosis and plan. Withheld from consultants of a blinded referral until each has committed an opinion of their own; shown side by side with the returned opinions."
// Only a finished assessment is a first opinion.
* status = #completed
* subject 1..1
* subject only Reference(Patient)
* assessor 0..1
* finding 0..*
* finding.itemCodeableConcept ^short = "Diagnosis coding(s) of the first opinion"
* summary 0..1
* summary ^short = "The first clinician's plan"
* supportingInfo 0..*
* supportingInfo ^short = "First-opinion documents on the referring EHR"
