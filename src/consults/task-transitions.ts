/**
 * The consultant Task's state machine (docs/consults.md), as one
 * table: every action, the statuses it may start from, the status it leads to, and who may
 * take it. Everything that changes a Task's status goes through `planTransition`, so the
 * rules live here and nowhere else.
 *
 * R4 Task status machine: requested -> received | accepted | rejected | cancelled;
 * received -> accepted | rejected; accepted -> in-progress; in-progress <-> on-hold;
 * in-progress -> completed | failed. Terminal: rejected, cancelled, completed, failed.
 *
 * One departure, on purpose: `fail` also starts from requested, received and accepted. R4's
 * diagram draws only in-progress -> failed, but its Task status value set defines `failed`
 * ("the task was attempted but could not be completed due to some error") with no rule on the
 * status it comes from. Here the service's own part of the work (assembling the record set
 * from the referring EHR) comes before the clinic starts: when that cannot be done within its
 * retry budget, the Task cannot be completed, whichever of those statuses it waits in.
 *
 * @see https://hl7.org/fhir/R4/task.html#statemachine
 */
import type { Task } from '@medplum/fhirtypes';

export type TaskStatus = Task['status'];

/** Who takes an action: the consultant organization owning the Task, the referrer, or the service itself. */
export type Actor = 'consultant' | 'referrer' | 'service';

export type TaskAction =
  | 'receive'
  | 'accept'
  | 'decline'
  | 'start'
  | 'request-info'
  | 'resume'
  | 'complete'
  | 'cancel'
  | 'request-cancellation'
  | 'confirm-cancellation'
  | 'withdraw-consent'
  | 'fail';

export interface Transition {
  action: TaskAction;
  from: readonly TaskStatus[];
  /** The new status; `undefined` when the action changes only the business status. */
  to?: TaskStatus;
  /** Who may take it: one actor, or several (each may, by the same rule). */
  actor: Actor | readonly Actor[];
  /** What it means, for OperationOutcomes and docs/consults.md. */
  description: string;
}

export const TERMINAL_STATUSES: readonly TaskStatus[] = ['rejected', 'cancelled', 'completed', 'failed', 'entered-in-error'];

/** Statuses from which the referrer's cancellation takes effect at once (the consultant has not started). */
export const CANCELLABLE_AT_ONCE: readonly TaskStatus[] = ['draft', 'requested', 'received', 'accepted', 'ready'];

/**
 * Every status a Task can still move from. The patient's withdrawal of consent ends the Task
 * from any of them at once: once the patient said no, no more of the records may reach the clinic,
 * whether or not it started work (the cancellation the clinic confirms does not apply).
 */
export const OPEN_STATUSES: readonly TaskStatus[] = ['draft', 'requested', 'received', 'accepted', 'ready', 'in-progress', 'on-hold'];

export const TRANSITIONS: readonly Transition[] = [
  // The clinic's system acknowledges the Task (`/receive`, or a FHIR update to received), or its FHIR server accepted the pushed record set.
  { action: 'receive', from: ['requested'], to: 'received', actor: ['consultant', 'service'], description: 'the Task reached the consultant (its system acknowledged it, or accepted the pushed record set)' },
  { action: 'accept', from: ['requested', 'received'], to: 'accepted', actor: 'consultant', description: 'the consultant takes the case' },
  { action: 'decline', from: ['requested', 'received'], to: 'rejected', actor: 'consultant', description: 'the consultant declines, with a reason' },
  { action: 'start', from: ['accepted'], to: 'in-progress', actor: 'consultant', description: 'the consultant starts the review' },
  { action: 'request-info', from: ['in-progress'], to: 'on-hold', actor: 'consultant', description: 'the consultant asks the referrer for more information' },
  { action: 'resume', from: ['on-hold'], to: 'in-progress', actor: 'referrer', description: 'the referrer answered the request for information' },
  { action: 'complete', from: ['in-progress'], to: 'completed', actor: 'consultant', description: 'the consultant submits the opinion' },
  { action: 'cancel', from: CANCELLABLE_AT_ONCE, to: 'cancelled', actor: 'referrer', description: 'the referrer withdraws the request before work started' },
  { action: 'request-cancellation', from: ['in-progress', 'on-hold'], actor: 'referrer', description: 'the referrer asks the consultant to stop (business status only)' },
  { action: 'confirm-cancellation', from: ['in-progress', 'on-hold'], to: 'cancelled', actor: 'consultant', description: 'the consultant confirms the cancellation the referrer asked for' },
  { action: 'withdraw-consent', from: OPEN_STATUSES, to: 'cancelled', actor: 'referrer', description: 'the patient withdrew consent to disclose the records to this clinic (the referrer records it, or the EHR\'s Consent ended)' },
  // Wider than R4's diagram (see the header): the record set may fail before the clinic started.
  { action: 'fail', from: ['requested', 'received', 'accepted', 'in-progress', 'on-hold'], to: 'failed', actor: 'service', description: 'the Task cannot be completed (its record set could not be assembled within the retry budget)' },
];

export type TransitionPlan = { ok: true; transition: Transition } | { ok: false; reason: 'not-allowed-from-status' | 'wrong-actor'; allowed: TaskAction[] };

/** Whether `actor` may take `action` on a Task in `status`; when not, the actions that actor could take. */
export function planTransition(status: TaskStatus, action: TaskAction, actor: Actor): TransitionPlan {
  const transition = TRANSITIONS.find((t) => t.action === action);
  const allowed = allowedActions(status, actor);
  if (!transition || !actorsOf(transition).includes(actor)) return { ok: false, reason: 'wrong-actor', allowed };
  if (!transition.from.includes(status)) return { ok: false, reason: 'not-allowed-from-status', allowed };
  return { ok: true, transition };
}

/** The actions `actor` may take on a Task in `status`, in table order. */
export function allowedActions(status: TaskStatus, actor: Actor): TaskAction[] {
  return TRANSITIONS.filter((t) => actorsOf(t).includes(actor) && t.from.includes(status)).map((t) => t.action);
}

/** The actors who may take `transition`, as a list. */
export function actorsOf(transition: Transition): readonly Actor[] {
  return typeof transition.actor === 'string' ? [transition.actor] : transition.actor;
}

export function isTerminal(status: TaskStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}
