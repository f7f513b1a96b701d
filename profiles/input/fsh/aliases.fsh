// Code systems of other organisations that the profiles refer to.
Alias: $sct = http://snomed.info/sct
Alias: $loinc = http://loinc.org
Alias: $v2-0336 = http://terminology.hl7.org/CodeSystem/v2-0336
Alias: $task-code = http://hl7.org/fhir/CodeSystem/task-code
