// The referral: one ServiceRequest per second-opinion request from a referring EHR.
// See docs/fhir.md, "FHIR model".

Profile: SecondOpinionRequest
Parent: ServiceRequest
Id: second-opinion-request
Title: "Second-opinion request"
Description: "A referral for a second opinion: what kind of opinion, on which patient, from whom, to which consulting organisations, and with which records."
// The service only ever creates orders; proposals and plans are not second-opinion requests.
* intent = #order
* status 1..1

// The referrer's own request id (placer identifier) is the idempotency key of intake.
* identifier 1..*
* identifier ^short = "Placer identifier (the referrer's own request id)"

// Two categories say "this is a referral" and "its reason is a second opinion".
// Sliced with a pattern discriminator on $this rather than a patternCodeableConcept on
// `category` itself: a pattern on a repeating element cannot be matched by every
// category at once, and Medplum's validator then rejects every instance.
// Displays are left out of the patterns: the codes identify the concepts, and a differing
// display text must not make a valid referral fail.
* category 2..*
* category ^slicing.discriminator.type = #pattern
* category ^slicing.discriminator.path = "$this"
* category ^slicing.rules = #open
* category ^slicing.description = "Referral category plus the second-opinion reason for referral"
* category contains
    referral 1..1 and
    secondOpinion 1..1
* category[referral] = $sct#3457005
* category[referral] ^short = "SNOMED CT 3457005 Patient referral"
* category[secondOpinion] = $v2-0336#S
* category[secondOpinion] ^short = "HL7 v2 table 0336 S Second Opinion"

// Emergencies are refused at intake (stat), but the priority still drives the due date.
* priority 1..1

// The kind of second opinion selects the records checklist.
* code 1..1
* code from SecondOpinionKindVS (required)

// The patient whose case is reviewed (usually an absolute reference into the referring EHR).
* subject 1..1
* subject only Reference(Patient)
* requester 1..1
* authoredOn 1..1

// One to eight consulting organisations: at most five at intake, more added later for a
// third or fourth opinion (POST /second-opinions/{id}/consultants); each gets its own Task.
* performer 1..8
* performer only Reference(Organization)

* extension contains
    ReviewTypeExtension named reviewType 1..1 and
    BlindedExtension named blinded 0..1
// Touching a child of each extension slice makes SUSHI unfold the extension's elements
// into the snapshot, including `url` with its fixed value. Medplum's validator matches
// extension slices (discriminator: value of url) only against that unfolded `url`; without
// it no extension ever matches and reviewType 1..1 rejects every referral.
* extension[reviewType].value[x] ^short = "records-only | virtual | in-person"
* extension[blinded].value[x] ^short = "true: withhold the first opinion from consultants until they commit their own"

// The condition(s) the opinion is about.
* reasonCode 0..*
* reasonCode ^short = "Condition codings the second opinion is about"
// note[0].text holds the referrer's question to the consultant. The patient's and the
// physician's own questions follow as further notes, each marked by the referral-question
// extension (who asked it); the consultant's opinion answers each by its index among them.
* note 0..*
* note ^short = "note[0].text: the question for the consultant; then the referral questions"
* note.extension contains ReferralQuestionExtension named referralQuestion 0..1
* note.extension[referralQuestion].value[x] ^short = "patient | physician: who asked this question"
// The first-opinion ClinicalImpression, the Consent on the referring EHR, document
// references on the referring EHR and, once assembled, the record-set Bundle.
* supportingInfo 0..*
* supportingInfo ^short = "First opinion, consent, referring-EHR documents, record-set Bundle"
