// The work item: one Task per consulting organisation, owned by that organisation.
// See docs/consults.md for the status machine.

Profile: SecondOpinionTask
Parent: Task
Id: second-opinion-task
Title: "Second-opinion task"
Description: "One consultant's work on a second-opinion referral: who owns it, when it is due, where it stands, and what came out of it."
* obeys so-task-1 and so-task-2
* intent = #order
* priority 1..1

// Fulfil the focal ServiceRequest; display left out of the pattern (codes identify concepts).
* code 1..1
* code = $task-code#fulfill
* focus 1..1
* focus only Reference(ServiceRequest)
* for 1..1
* for only Reference(Patient)
* requester 1..1
* authoredOn 1..1

// The consultant organisation: it accepts, declines and completes the Task.
* owner 1..1
* owner only Reference(Organization)

// The finer step inside the R4 status (records, consent, questions, delivery, overdue).
* businessStatus 1..1
* businessStatus from TaskBusinessStatusVS (required)

// Every Task carries a due date, so overdue work is visible.
* restriction 1..1
* restriction.period 1..1
* restriction.period.end 1..1
* restriction.period.end ^short = "Due date"

* input ^short = "The record-set Bundle"
* output ^short = "The opinion (consult-note DocumentReference)"

Invariant: so-task-1
Description: "statusReason is required when the Task is rejected, cancelled or failed"
Severity: #error
Expression: "status in ('rejected' | 'cancelled' | 'failed') implies statusReason.exists()"

Invariant: so-task-2
Description: "output (the opinion) is required when the Task is completed"
Severity: #error
Expression: "status = 'completed' implies output.exists()"
