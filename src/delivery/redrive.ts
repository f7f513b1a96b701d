/**
 * `POST /admin/deliveries/{id}/retry`: after the post-back gave up (every retry
 * failed), an auditor or admin sends it again once the referring EHR is fixed. The delivery
 * row is locked, so two re-drives never schedule two jobs; the job's own conditional create
 * keeps the EHR at one copy whatever happens. The id is an opinion's (its consult note's) or a
 * follow-up question's, whose answer's post-back is re-driven the same way.
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { OperationOutcome } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { conflictError } from '../fhir/outcomes.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { type DeliverFollowUpAnswerJob, type DeliverOpinionJob, QUEUE } from '../jobs/queues.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { followUps, opinionDeliveries } from '../store/schema.ts';

export interface DeliveryView {
  id: string;
  kind: 'opinion' | 'follow-up-answer';
  taskId: string;
  status: string;
  attempts: number;
  lastError?: string;
  /** The EHR's OperationOutcome of the last failed attempt, as kept. */
  lastOutcome?: OperationOutcome;
  remoteDocument?: string;
  deliveredAt?: string;
}

export async function redriveDelivery(id: string, deps: { store: ResourceStore; jobs: JobQueue; now: () => Date }): Promise<DeliveryView> {
  return deps.store.withTransaction(async (tx) => {
    const [row] = await tx.database.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, id)).for('update');
    if (!row) return redriveAnswer(tx, id, deps);
    refuseUnlessFailed(id, row.status, row.attempts, row.remoteDocument);
    await tx.database.update(opinionDeliveries).set({ status: 'pending', updatedAt: deps.now() }).where(eq(opinionDeliveries.id, id));
    const job: DeliverOpinionJob = { deliveryId: id };
    await deps.jobs.enqueue(tx.database, QUEUE.deliverOpinion, job, { singletonKey: id });
    return { id, kind: 'opinion', taskId: row.taskId, status: 'pending', attempts: row.attempts, ...(row.lastError ? { lastError: row.lastError } : {}), ...(row.lastOutcome ? { lastOutcome: row.lastOutcome } : {}) };
  });
}

/** The same for the answer to follow-up question `id` (404 when there is none, or it is not answered). */
async function redriveAnswer(tx: ResourceStore, id: string, deps: { jobs: JobQueue; now: () => Date }): Promise<DeliveryView> {
  const [row] = await tx.database.select().from(followUps).where(eq(followUps.id, id)).for('update');
  if (!row?.deliveryStatus) throw new OperationOutcomeError(notFound);
  refuseUnlessFailed(id, row.deliveryStatus, row.attempts, row.remoteAnswer);
  await tx.database.update(followUps).set({ deliveryStatus: 'pending', updatedAt: deps.now() }).where(eq(followUps.id, id));
  const job: DeliverFollowUpAnswerJob = { followUpId: id };
  await deps.jobs.enqueue(tx.database, QUEUE.deliverFollowUpAnswer, job, { singletonKey: id });
  return { id, kind: 'follow-up-answer', taskId: row.taskId, status: 'pending', attempts: row.attempts, ...(row.lastError ? { lastError: row.lastError } : {}), ...(row.lastOutcome ? { lastOutcome: row.lastOutcome } : {}) };
}

function refuseUnlessFailed(id: string, status: string, attempts: number, remote: string | null): void {
  if (status === 'delivered') throw conflictError(`Delivery ${id} was already delivered (${remote ?? 'on the referring EHR'})`);
  if (status !== 'failed') throw conflictError(`Delivery ${id} is still being attempted (${attempts} attempts so far); re-drive it once it has failed`);
}
