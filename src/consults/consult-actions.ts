/**
 * What a consulting clinic does with its Task: acknowledge it (received),
 * accept, decline (with a reason), start, ask the referrer for more information, and confirm a cancellation the referrer asked
 * for. Each is one transaction: the new Task version and its Provenance (and, when the last
 * Task ends, the referral's new status). Submitting the opinion is `submit-opinion.ts`.
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Annotation, Organization, Reference, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { z } from 'zod';
import { businessStatus } from '../fhir/business-status.ts';
import type { Caller } from '../access/caller.ts';
import { Coding, text } from '../intake/intake-request.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { intakeRequests } from '../store/schema.ts';
import type { TaskAction } from './task-transitions.ts';
import { settleReferral, transitionTask } from './transition-task.ts';
import { readerOf } from '../access/reader.ts';
import { retryOnConflict } from '../store/conflict-retry.ts';

export const NoBodySchema = z.strictObject({}).optional();

export const DeclineSchema = z.strictObject({
  /** Why the clinic declines (Task.statusReason): shown to the referrer. */
  reason: text(1000),
});

export const RequestInfoSchema = z.strictObject({
  /** What the consultant needs to know (shown to the referrer in its summary). */
  question: text(4000),
  /** Record types wanted, e.g. LOINC 11504-8 (optional). */
  recordTypes: z.array(Coding).max(20).optional(),
});

export type ConsultActionBody =
  | { action: 'receive' | 'accept' | 'start' | 'confirm-cancellation' }
  | { action: 'decline'; reason: string }
  | { action: 'request-info'; question: string; recordTypes?: z.output<typeof Coding>[] };

export interface ConsultDeps {
  store: ResourceStore;
  network: { get(id: string): { organization: { reference: string; display?: string } } | undefined };
  now: () => Date;
}

/** The caller's Organization as a Reference (Provenance agent, notes). */
export function organizationOf(caller: Caller, deps: ConsultDeps): Reference<Organization> {
  const participant = deps.network.get(caller.participantId);
  if (!participant) throw new OperationOutcomeError(notFound);
  return { reference: participant.organization.reference, ...(participant.organization.display ? { display: participant.organization.display } : {}) } as Reference<Organization>;
}

/** The Task, when the caller's organization owns it; 404 otherwise (whether or not it exists). */
export async function readOwnTask(tx: ResourceStore, taskId: string, caller: Caller, deps: ConsultDeps): Promise<Task> {
  const task = await tx.read<Task>('Task', taskId, readerOf(caller));
  const organization = deps.network.get(caller.participantId)?.organization.reference;
  if (!task || !organization || task.owner?.reference !== organization) throw new OperationOutcomeError(notFound);
  return task;
}

/** Ids of every Task of the referral `task` belongs to (for settling the referral). */
export async function referralTaskIds(tx: ResourceStore, serviceRequestId: string): Promise<string[]> {
  const [row] = await tx.database.select({ taskIds: intakeRequests.taskIds }).from(intakeRequests).where(eq(intakeRequests.serviceRequestId, serviceRequestId));
  return row?.taskIds ?? [];
}

export function serviceRequestIdOf(task: Task): string {
  return (task.focus?.reference ?? '').replace(/^ServiceRequest\//, '');
}

/** Runs one consultant action on the caller's Task; returns the new version. */
export async function actOnConsult(taskId: string, body: ConsultActionBody, caller: Caller, deps: ConsultDeps, ifMatch?: string): Promise<Task> {
  const agent = organizationOf(caller, deps);
  return retryOnConflict(ifMatch, () =>
    deps.store.withTransaction(async (tx) => {
      const task = await readOwnTask(tx, taskId, caller, deps);
      const now = deps.now();
      const note = (textValue: string): Annotation => ({ authorReference: agent, time: now.toISOString(), text: textValue });
      const action: TaskAction = body.action;
      const updated = await transitionTask(tx, {
        task,
        action,
        actor: 'consultant',
        agent,
        now,
        ...(ifMatch !== undefined ? { expectedVersion: ifMatch } : {}),
        precondition: (current) => {
          if (action === 'accept' && !current.input?.length) {
            return `The record set is not ready for this Task (${current.businessStatus?.coding?.[0]?.code ?? 'records-pending'}): it can be accepted once it is`;
          }
          if (action === 'confirm-cancellation' && current.businessStatus?.coding?.[0]?.code !== 'cancellation-requested') {
            return 'The referrer has not asked to cancel this Task';
          }
          return undefined;
        },
        change: (next) => {
          switch (body.action) {
            case 'decline':
              return { ...next, statusReason: { text: body.reason }, note: [...(next.note ?? []), note(`Declined: ${body.reason}`)] };
            case 'request-info': {
              const wanted = body.recordTypes?.length ? ` Records wanted: ${body.recordTypes.map((c) => c.display ?? `${c.system}|${c.code}`).join('; ')}.` : '';
              return {
                ...next,
                businessStatus: businessStatus('information-requested', body.question),
                note: [...(next.note ?? []), note(`Information requested: ${body.question}${wanted}`)],
              };
            }
            case 'confirm-cancellation':
              return { ...next, statusReason: { text: 'Cancelled at the referrer\'s request' } };
            default:
              return next;
          }
        },
      });
      if (updated.status === 'rejected' || updated.status === 'cancelled') {
        const serviceRequestId = serviceRequestIdOf(updated);
        await settleReferral(tx, serviceRequestId, await referralTaskIds(tx, serviceRequestId));
      }
      return updated;
    }),
  );
}
