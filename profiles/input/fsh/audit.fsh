// Extensions on the AuditEvents this service records.

// Polling a referral summary would otherwise leave one AuditEvent per poll. Repeated reads of
// the same summary by the same client within one minute are recorded once: the AuditEvent's
// `period` runs from the first read to the last, and this extension says how many reads it stands for.
Extension: AuditReadCountExtension
Id: audit-read-count
Title: "Audit: number of reads"
Description: "How many identical reads (same client, same participant, same resources, same outcome) this AuditEvent records; AuditEvent.period runs from the first of them to the last. Absent means one."
* ^context[0].type = #element
* ^context[0].expression = "AuditEvent"
* value[x] 1..1
* value[x] only positiveInt
