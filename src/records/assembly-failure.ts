/**
 * The record assembly gives up: when the record set could not be assembled within
 * its retry budget (the referring EHR stayed unreachable through the last attempt, or refused a
 * read at once), every open Task of that assembly whose clinic has no record set yet can never be
 * worked on: it becomes `failed` through the transition table's `fail`, with `statusReason` in
 * words a referrer understands and business status `records-failed`, each with its Provenance, in
 * one write; then the referral settles as when any Task ends. A Task whose clinic already holds a
 * record set (an earlier version, before records were added) keeps it and goes on.
 *
 * The referrer's way out is to ask the failed clinics again (`POST /second-opinions/{id}/consultants`
 * accepts a clinic whose Task failed): each gets a new Task and a new assembly.
 */
import type { Task } from '@medplum/fhirtypes';
import { planTransition } from '../consults/task-transitions.ts';
import { planTaskTransition, settleReferral } from '../consults/transition-task.ts';
import { businessStatus } from '../fhir/business-status.ts';
import { SERVICE_DEVICE_DISPLAY } from '../fhir/constants.ts';
import { OutboundAuthError, OutboundError, OutboundHttpError } from '../outbound/outbound-errors.ts';
import type { BatchCreate, ResourceStore, VersionedWrite } from '../store/resource-store.ts';

export interface AssemblyFailure {
  /** The Task's business-status text: the call, status and issue codes (as the summary shows it). */
  taskText: string;
  /** The Task's `statusReason`: why, in plain words, with no PHI and no URL. */
  statusReason: string;
}

/** Whether the clinic holds a record set of the referral on its Task (an earlier assembly disclosed one). */
export function holdsRecordSet(task: Task): boolean {
  return task.input?.some((i) => i.valueReference?.reference?.startsWith('Bundle/')) ?? false;
}

/**
 * Fails, in `tx`, those of the Tasks `taskIds` that are still open and hold no record set (the
 * others are left as they are) and settles the referral (`referralTaskIds`: all its Tasks).
 * The Tasks are read again here: an attempt can take long, and a Task the referrer cancelled
 * meanwhile stays cancelled. Returns the failed Tasks.
 */
export async function failTasksWithoutRecords(
  tx: ResourceStore,
  args: { serviceRequestId: string; referralTaskIds: readonly string[]; taskIds: readonly string[]; failure: AssemblyFailure; now: Date },
): Promise<Task[]> {
  const updates: VersionedWrite<Task>[] = [];
  const creates: BatchCreate[] = [];
  const current = await tx.readMany<Task>('Task', args.taskIds, 'system');
  for (const task of current.filter((t) => !holdsRecordSet(t) && planTransition(t.status, 'fail', 'service').ok)) {
    const { update, provenance } = planTaskTransition(
      {
        task,
        action: 'fail',
        actor: 'service',
        // The service itself gave up (as the record set's own Provenance names it).
        agent: { display: SERVICE_DEVICE_DISPLAY },
        now: args.now,
        change: (next) => ({ ...next, statusReason: { text: args.failure.statusReason }, businessStatus: businessStatus('records-failed', args.failure.taskText) }),
      },
      updates.length,
    );
    updates.push(update);
    creates.push(provenance);
  }
  if (updates.length === 0) return [];
  const { updated } = await tx.write({ updates, creates });
  await settleReferral(tx, args.serviceRequestId, args.referralTaskIds);
  return updated as Task[];
}

/** The first words of every `statusReason` this module writes. */
const NOT_ASSEMBLED = 'The record set could not be assembled';

/** The reason when the EHR stayed unreachable through the last of `attempts`. */
export function unreachableReason(attempts: number): string {
  return `${NOT_ASSEMBLED}: the referring EHR could not be reached after ${attempts} attempts`;
}

/** The reason when the EHR refused a call: which kind of refusal, by its HTTP status only. */
export function refusedReason(err: OutboundError): string {
  if (err instanceof OutboundAuthError) return `${NOT_ASSEMBLED}: the referring EHR did not let this service sign in (token request refused)`;
  if (err instanceof OutboundHttpError) return `${NOT_ASSEMBLED}: the referring EHR refused to share the records (HTTP ${err.status})`;
  return `${NOT_ASSEMBLED}: the referring EHR refused to share the records`;
}

/** The reason when the referring participant has no FHIR endpoint (a configuration error). */
export const NO_ENDPOINT_REASON = `${NOT_ASSEMBLED}: the referring participant has no FHIR endpoint configured`;

/** The reason when the patient's Consent could not be read for a clinic added later. */
export const CONSENT_UNREADABLE_REASON = "The record set could not be disclosed to this clinic: the patient's consent could not be read from the referring EHR";
