/**
 * The referrer's side of the consult lifecycle:
 * - `POST /second-opinions/{id}/cancel` ({reason}): Tasks not yet in progress are cancelled at
 *   once; a Task in progress gets business status cancellation-requested, and its consultant
 *   either confirms (cancelled) or completes. When every Task has ended the referral ends.
 * - `POST /second-opinions/{id}/info` ({text?, documents?}): answers a consultant's request
 *   for information. Documents join the record set (a new assembly, as
 *   `POST /second-opinions/{id}/records`); each Task on hold for information goes back
 *   in-progress with the answer in its notes.
 * Only the referrer that placed the referral may do either (404 for anyone else).
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Annotation, Organization, Reference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { and, eq } from 'drizzle-orm';
import { z } from 'zod';
import { readerOf } from '../access/reader.ts';
import { businessStatus } from '../fhir/business-status.ts';
import { conflictError, issue, outcome } from '../fhir/outcomes.ts';
import type { Caller } from '../access/caller.ts';
import { addRecordsInTransaction, type AddRecordsDeps } from '../intake/add-records.ts';
import { DocumentRefSchema, text } from '../intake/intake-request.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { intakeRequests } from '../store/schema.ts';
import { CANCELLABLE_AT_ONCE, isTerminal } from './task-transitions.ts';
import { settleReferral, transitionTask } from './transition-task.ts';
import { retryOnConflict } from '../store/conflict-retry.ts';

export const CancelRequestSchema = z.strictObject({ reason: text(1000) });

export const InfoAnswerSchema = z
  .strictObject({
    text: text(8000).optional(),
    documents: z.array(DocumentRefSchema).max(100).optional(),
  })
  .refine((b) => b.text !== undefined || (b.documents?.length ?? 0) > 0, { message: 'give a text and/or documents' });

export interface ReferrerActionDeps extends AddRecordsDeps {
  now: () => Date;
}

export interface TaskOutcome {
  id: string;
  status: Task['status'];
  businessStatus?: string;
}

/**
 * The referral's intake row, when the caller placed it and may read it (a token restricted to
 * one clinician acts only on that clinician's referrals), locked for this transaction; 404 otherwise.
 */
export async function lockOwnReferral(tx: ResourceStore, serviceRequestId: string, caller: Caller): Promise<{ taskIds: string[]; serviceRequest: ServiceRequest }> {
  const [row] = await tx.database
    .select({ taskIds: intakeRequests.taskIds })
    .from(intakeRequests)
    .where(and(eq(intakeRequests.serviceRequestId, serviceRequestId), eq(intakeRequests.participantId, caller.participantId)))
    .for('update');
  const serviceRequest = row ? await tx.read<ServiceRequest>('ServiceRequest', serviceRequestId, readerOf(caller)) : undefined;
  if (!row || !serviceRequest) throw new OperationOutcomeError(notFound);
  return { taskIds: row.taskIds, serviceRequest };
}

export function referrerAgent(caller: Caller, deps: { network: { get(id: string): { organization: { reference: string; display?: string } } | undefined } }): Reference<Organization> {
  const org = deps.network.get(caller.participantId)?.organization;
  if (!org) throw new OperationOutcomeError(notFound);
  return { reference: org.reference, ...(org.display ? { display: org.display } : {}) } as Reference<Organization>;
}

const outcomeOf = (t: Task): TaskOutcome => ({ id: t.id as string, status: t.status, ...(t.businessStatus?.coding?.[0]?.code ? { businessStatus: t.businessStatus.coding[0].code } : {}) });

/**
 * The referrer cancels its referral: every Task not yet ended is cancelled (or, once work has
 * started, its clinic is asked to stop). `expectedVersion` is the ServiceRequest version the
 * caller last saw (the FHIR door's `If-Match`): 412 when the referral moved on.
 */
export async function cancelReferral(
  serviceRequestId: string,
  body: z.output<typeof CancelRequestSchema>,
  caller: Caller,
  deps: ReferrerActionDeps,
  expectedVersion?: string,
): Promise<{ id: string; status: string; tasks: TaskOutcome[] }> {
  const agent = referrerAgent(caller, deps);
  return retryOnConflict(expectedVersion, () =>
    deps.store.withTransaction(async (tx) => {
      const { taskIds, serviceRequest: current } = await lockOwnReferral(tx, serviceRequestId, caller);
      if (expectedVersion !== undefined && expectedVersion !== current.meta?.versionId) throw staleVersion('ServiceRequest', current, expectedVersion);
      const now = deps.now();
      const tasks = await tx.readMany<Task>('Task', taskIds, 'system');
      if (tasks.every((t) => isTerminal(t.status))) throw conflictError('Every Task of this referral has already ended: there is nothing to cancel');
      const results: Task[] = [];
      for (const task of tasks) results.push(isTerminal(task.status) ? task : await cancelOne(tx, task, body.reason, agent, now));
      const settled = await settleReferral(tx, serviceRequestId, taskIds);
      const serviceRequest = settled ?? (await tx.read('ServiceRequest', serviceRequestId, 'system'));
      return { id: serviceRequestId, status: (serviceRequest as { status: string }).status, tasks: results.map(outcomeOf) };
    }),
  );
}

/**
 * The referrer cancels one Task of its referral (the FHIR door's `status` -> `cancelled` on a
 * Task): the same step `cancelReferral` takes for each of its Tasks, then the referral settles.
 * `expectedVersion` is the Task version the caller last saw (412 when it moved on).
 */
export async function cancelReferralTask(taskId: string, body: z.output<typeof CancelRequestSchema>, caller: Caller, deps: ReferrerActionDeps, expectedVersion?: string): Promise<Task> {
  const agent = referrerAgent(caller, deps);
  return retryOnConflict(expectedVersion, () =>
    deps.store.withTransaction(async (tx) => {
      const task = await tx.read<Task>('Task', taskId, readerOf(caller));
      if (!task) throw new OperationOutcomeError(notFound);
      const serviceRequestId = (task.focus?.reference ?? '').replace(/^ServiceRequest\//, '');
      const { taskIds } = await lockOwnReferral(tx, serviceRequestId, caller);
      const updated = await cancelOne(tx, task, body.reason, agent, deps.now(), expectedVersion);
      await settleReferral(tx, serviceRequestId, taskIds);
      return updated;
    }),
  );
}

/** One Task of a cancelled referral: cancelled at once when work has not started, else the consultant is asked (business status). */
async function cancelOne(tx: ResourceStore, task: Task, reason: string, agent: Reference<Organization>, now: Date, expectedVersion?: string): Promise<Task> {
  const note = (t: string): Annotation => ({ authorReference: agent, time: now.toISOString(), text: t });
  const version = expectedVersion !== undefined ? { expectedVersion } : {};
  if (!isTerminal(task.status) && !CANCELLABLE_AT_ONCE.includes(task.status)) {
    return transitionTask(tx, {
      task,
      action: 'request-cancellation',
      actor: 'referrer',
      agent,
      now,
      ...version,
      change: (next) => ({ ...next, businessStatus: businessStatus('cancellation-requested', reason), note: [...(next.note ?? []), note(`Cancellation requested by the referrer: ${reason}`)] }),
    });
  }
  return transitionTask(tx, { task, action: 'cancel', actor: 'referrer', agent, now, ...version, change: (next) => ({ ...next, statusReason: { text: reason }, note: [...(next.note ?? []), note(`Cancelled by the referrer: ${reason}`)] }) });
}

export async function answerInformationRequest(
  serviceRequestId: string,
  body: z.output<typeof InfoAnswerSchema>,
  caller: Caller,
  deps: ReferrerActionDeps,
): Promise<{ id: string; recordsRevision?: number; added: unknown[]; tasks: TaskOutcome[] }> {
  const agent = referrerAgent(caller, deps);
  return retryOnConflict(undefined, () =>
    deps.store.withTransaction(async (tx) => {
      const { taskIds } = await lockOwnReferral(tx, serviceRequestId, caller);
      const now = deps.now();
      const tasks = await tx.readMany<Task>('Task', taskIds, 'system');
      const waiting = tasks.filter(waitsForInformation);
      if (waiting.length === 0) throw conflictError('No consultant of this referral is waiting for information');
      const added = body.documents?.length ? await addRecordsInTransaction(tx, serviceRequestId, { documents: body.documents }, caller, deps) : undefined;
      const answer = [body.text, added?.added.length ? `Documents added: ${added.added.map((d) => d.display ?? d.reference).join('; ')}` : undefined].filter(Boolean).join(' — ');
      const resumed: Task[] = [];
      for (const task of waiting) resumed.push(await resumeOne(tx, task, answer, agent, now));
      return { id: serviceRequestId, ...(added ? { recordsRevision: added.recordsRevision } : {}), added: added?.added ?? [], tasks: resumed.map(outcomeOf) };
    }),
  );
}

const waitsForInformation = (t: Task): boolean => t.status === 'on-hold' && t.businessStatus?.coding?.[0]?.code === 'information-requested';

/** One Task waiting for information goes back in progress, the answer in its notes (the step `answerInformationRequest` takes for each). */
function resumeOne(tx: ResourceStore, task: Task, answer: string, agent: Reference<Organization>, now: Date, expectedVersion?: string): Promise<Task> {
  return transitionTask(tx, {
    task,
    action: 'resume',
    actor: 'referrer',
    agent,
    now,
    ...(expectedVersion !== undefined ? { expectedVersion } : {}),
    change: (next) => ({
      ...next,
      businessStatus: businessStatus('records-ready', 'The referrer answered the request for information'),
      note: [...(next.note ?? []), { authorReference: agent, time: now.toISOString(), text: `Information provided: ${answer || '(documents only)'}` }],
    }),
  });
}

/**
 * The referrer answers one Task's request for information (the FHIR door's `status` on-hold ->
 * in-progress on a Task): the step `answerInformationRequest` takes for each waiting Task, for
 * this one only, with a text answer. `expectedVersion` is the Task version the caller last saw.
 */
export async function answerTaskInformationRequest(taskId: string, body: { text: string }, caller: Caller, deps: ReferrerActionDeps, expectedVersion?: string): Promise<Task> {
  const agent = referrerAgent(caller, deps);
  return retryOnConflict(expectedVersion, () =>
    deps.store.withTransaction(async (tx) => {
      const task = await tx.read<Task>('Task', taskId, readerOf(caller));
      if (!task) throw new OperationOutcomeError(notFound);
      await lockOwnReferral(tx, (task.focus?.reference ?? '').replace(/^ServiceRequest\//, ''), caller);
      if (task.status === 'on-hold' && !waitsForInformation(task)) throw conflictError('This Task is on hold, but not for information from the referrer', 'Task.businessStatus');
      return resumeOne(tx, task, body.text, agent, deps.now(), expectedVersion);
    }),
  );
}

/** 412 naming If-Match: the resource moved on since the version the caller last saw. */
function staleVersion(type: string, resource: { meta?: { versionId?: string } }, expected: string): OperationOutcomeError {
  return new OperationOutcomeError({ ...outcome([issue('conflict', `The ${type} is at version ${resource.meta?.versionId}, not ${expected}: read it again`, 'If-Match')]), id: 'precondition-failed' });
}
