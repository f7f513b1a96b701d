// Concordance: how each returned opinion compares with the first opinion, kept
// on the consult note, and the Measure that counts how often second opinions change things.
// Codes and displays must match src/fhir/constants.ts (DIAGNOSIS_CONCORDANCE, PLAN_CONCORDANCE)
// and the classification table of src/concordance/classify.ts.

CodeSystem: DiagnosisConcordance
Id: diagnosis-concordance
Title: "Diagnosis concordance with the first opinion"
Description: "How a second opinion's diagnosis compares with the first opinion's, as the service classifies it from the consultant's own agreement and the coded diagnoses."
* ^caseSensitive = true
* ^content = #complete
* ^experimental = false
* #concordant "Concordant" "The consultant agrees with the first diagnosis and codes no different diagnosis."
* #minor-discrepancy "Minor discrepancy" "The consultant agrees with modifications, or agrees but codes a different diagnosis than the first opinion."
* #major-discrepancy "Major discrepancy" "The consultant disagrees with the first diagnosis."

ValueSet: DiagnosisConcordanceVS
Id: diagnosis-concordance
Title: "Diagnosis concordance"
Description: "All diagnosis concordance classes (concordance extension on the consult note)."
* ^experimental = false
* include codes from system DiagnosisConcordance

CodeSystem: PlanConcordance
Id: plan-concordance
Title: "Plan concordance with the first opinion"
Description: "Whether a second opinion leaves the first opinion's plan unchanged, modifies it or changes it, as the service classifies it from the consultant's own agreement and preferred option."
* ^caseSensitive = true
* ^content = #complete
* ^experimental = false
* #unchanged "Unchanged" "The consultant agrees with the first plan and prefers no other option."
* #modified "Modified" "The consultant agrees with modifications, or agrees but prefers an option other than the first plan."
* #changed "Changed" "The consultant disagrees with the first plan."

ValueSet: PlanConcordanceVS
Id: plan-concordance
Title: "Plan concordance"
Description: "All plan concordance classes (concordance extension on the consult note)."
* ^experimental = false
* include codes from system PlanConcordance

// Set by the service when the opinion is submitted, never by the consultant: a client's own
// value in a contained consult note is not read.
Extension: ConcordanceExtension
Id: concordance
Title: "Concordance with the first opinion"
Description: "How this second opinion compares with the referral's first opinion: diagnosis concordant, minor or major discrepancy; plan unchanged, modified or changed. Absent when the referral carries no first opinion."
* ^context[0].type = #element
* ^context[0].expression = "DocumentReference"
* value[x] 0..0
* extension contains
    diagnosis 1..1 and
    plan 1..1
* extension[diagnosis].value[x] only Coding
* extension[diagnosis].valueCoding from DiagnosisConcordanceVS (required)
* extension[plan].value[x] only Coding
* extension[plan].valueCoding from PlanConcordanceVS (required)

Instance: second-opinion-concordance
InstanceOf: Measure
Usage: #definition
Title: "Second-opinion concordance"
* url = "https://second-opinion.org/fhir/Measure/second-opinion-concordance"
* version = "0.1.0"
* name = "SecondOpinionConcordance"
* title = "Second-opinion concordance"
* status = #active
* experimental = false
* publisher = "Second-opinion referral service"
* description = "How often second opinions change the diagnosis or the plan. Each population counts returned opinions (consult notes) dated within the period: the initial population is every returned opinion, the denominator those the service could classify against the referral's first opinion, the numerator those of the group's class. Evaluated for the caller's own organization (a referrer: the opinions on its referrals; a consulting clinic: its own opinions; an auditor: all, or one organization's), and stratified by the kind of second opinion."
* subjectCodeableConcept = http://hl7.org/fhir/resource-types#Organization
* scoring = http://terminology.hl7.org/CodeSystem/measure-scoring#proportion
* type = http://terminology.hl7.org/CodeSystem/measure-type#outcome
* rationale = "Published series put diagnostic changes at about 15 % and treatment changes at about 37 % of second opinions, with wide variation between specialties."
* group[0].id = "diagnosis-major-discrepancy"
* group[0].code = DiagnosisConcordance#major-discrepancy "Major discrepancy"
* group[0].description = "Opinions that disagree with the first diagnosis"
* group[0].population[0].code = http://terminology.hl7.org/CodeSystem/measure-population#initial-population
* group[0].population[0].criteria.language = #text/fhirpath
* group[0].population[0].criteria.expression = "DocumentReference.where(type.coding.code = '11488-4')"
* group[0].population[1].code = http://terminology.hl7.org/CodeSystem/measure-population#denominator
* group[0].population[1].criteria.language = #text/fhirpath
* group[0].population[1].criteria.expression = "DocumentReference.where(extension('https://second-opinion.org/fhir/StructureDefinition/concordance').exists())"
* group[0].population[2].code = http://terminology.hl7.org/CodeSystem/measure-population#numerator
* group[0].population[2].criteria.language = #text/fhirpath
* group[0].population[2].criteria.expression = "DocumentReference.where(extension('https://second-opinion.org/fhir/StructureDefinition/concordance').extension('diagnosis').value.code = 'major-discrepancy')"
* group[0].stratifier[0].code.text = "Kind of second opinion"
* group[0].stratifier[0].criteria.language = #text/fhirpath
* group[0].stratifier[0].criteria.expression = "%referral.code"
* group[1].id = "diagnosis-minor-discrepancy"
* group[1].code = DiagnosisConcordance#minor-discrepancy "Minor discrepancy"
* group[1].description = "Opinions that agree with the first diagnosis with modifications, or code a different diagnosis"
* group[1].population[0].code = http://terminology.hl7.org/CodeSystem/measure-population#initial-population
* group[1].population[0].criteria.language = #text/fhirpath
* group[1].population[0].criteria.expression = "DocumentReference.where(type.coding.code = '11488-4')"
* group[1].population[1].code = http://terminology.hl7.org/CodeSystem/measure-population#denominator
* group[1].population[1].criteria.language = #text/fhirpath
* group[1].population[1].criteria.expression = "DocumentReference.where(extension('https://second-opinion.org/fhir/StructureDefinition/concordance').exists())"
* group[1].population[2].code = http://terminology.hl7.org/CodeSystem/measure-population#numerator
* group[1].population[2].criteria.language = #text/fhirpath
* group[1].population[2].criteria.expression = "DocumentReference.where(extension('https://second-opinion.org/fhir/StructureDefinition/concordance').extension('diagnosis').value.code = 'minor-discrepancy')"
* group[1].stratifier[0].code.text = "Kind of second opinion"
* group[1].stratifier[0].criteria.language = #text/fhirpath
* group[1].stratifier[0].criteria.expression = "%referral.code"
* group[2].id = "plan-changed"
* group[2].code = PlanConcordance#changed "Changed"
* group[2].description = "Opinions that disagree with the first plan"
* group[2].population[0].code = http://terminology.hl7.org/CodeSystem/measure-population#initial-population
* group[2].population[0].criteria.language = #text/fhirpath
* group[2].population[0].criteria.expression = "DocumentReference.where(type.coding.code = '11488-4')"
* group[2].population[1].code = http://terminology.hl7.org/CodeSystem/measure-population#denominator
* group[2].population[1].criteria.language = #text/fhirpath
* group[2].population[1].criteria.expression = "DocumentReference.where(extension('https://second-opinion.org/fhir/StructureDefinition/concordance').exists())"
* group[2].population[2].code = http://terminology.hl7.org/CodeSystem/measure-population#numerator
* group[2].population[2].criteria.language = #text/fhirpath
* group[2].population[2].criteria.expression = "DocumentReference.where(extension('https://second-opinion.org/fhir/StructureDefinition/concordance').extension('plan').value.code = 'changed')"
* group[2].stratifier[0].code.text = "Kind of second opinion"
* group[2].stratifier[0].criteria.language = #text/fhirpath
* group[2].stratifier[0].criteria.expression = "%referral.code"
* group[3].id = "plan-modified"
* group[3].code = PlanConcordance#modified "Modified"
* group[3].description = "Opinions that agree with the first plan with modifications, or prefer another option"
* group[3].population[0].code = http://terminology.hl7.org/CodeSystem/measure-population#initial-population
* group[3].population[0].criteria.language = #text/fhirpath
* group[3].population[0].criteria.expression = "DocumentReference.where(type.coding.code = '11488-4')"
* group[3].population[1].code = http://terminology.hl7.org/CodeSystem/measure-population#denominator
* group[3].population[1].criteria.language = #text/fhirpath
* group[3].population[1].criteria.expression = "DocumentReference.where(extension('https://second-opinion.org/fhir/StructureDefinition/concordance').exists())"
* group[3].population[2].code = http://terminology.hl7.org/CodeSystem/measure-population#numerator
* group[3].population[2].criteria.language = #text/fhirpath
* group[3].population[2].criteria.expression = "DocumentReference.where(extension('https://second-opinion.org/fhir/StructureDefinition/concordance').extension('plan').value.code = 'modified')"
* group[3].stratifier[0].code.text = "Kind of second opinion"
* group[3].stratifier[0].criteria.language = #text/fhirpath
* group[3].stratifier[0].criteria.expression = "%referral.code"

// The answer of GET /fhir/Measure/second-opinion-concordance/$evaluate-measure.
Profile: ConcordanceMeasureReport
Parent: MeasureReport
Id: concordance-measure-report
Title: "Second-opinion concordance report"
Description: "A summary MeasureReport of the second-opinion concordance Measure: one group per population set (major and minor diagnostic discrepancy, changed and modified plan) with counts and rates, for one organization's opinions or all, over a period."
* status = #complete
* type = #summary
* measure = "https://second-opinion.org/fhir/Measure/second-opinion-concordance"
* subject only Reference(Organization)
* date 1..1
* period 1..1
* group 1..*
* group.id 1..1
* group.code 1..1
* group.population 3..3
* group.population.code 1..1
* group.population.count 1..1
* group.stratifier.stratum.population.code 1..1
* group.stratifier.stratum.population.count 1..1
