/**
 * `POST /admin/deliveries/{id}/retry` (issue 4 §3): after the post-back gave up (every retry
 * failed), an auditor or admin sends it again once the referring EHR is fixed. The delivery
 * row is locked, so two re-drives never schedule two jobs; the job's own conditional create
 * keeps the EHR at one copy whatever happens.
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { OperationOutcome } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { conflictError } from '../fhir/outcomes.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { type DeliverOpinionJob, QUEUE } from '../jobs/queues.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { opinionDeliveries } from '../store/schema.ts';

export interface DeliveryView {
  id: string;
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
    if (!row) throw new OperationOutcomeError(notFound);
    if (row.status === 'delivered') throw conflictError(`Delivery ${id} was already delivered (${row.remoteDocument ?? 'on the referring EHR'})`);
    if (row.status !== 'failed') throw conflictError(`Delivery ${id} is still being attempted (${row.attempts} attempts so far); re-drive it once it has failed`);
    await tx.database.update(opinionDeliveries).set({ status: 'pending', updatedAt: deps.now() }).where(eq(opinionDeliveries.id, id));
    const job: DeliverOpinionJob = { deliveryId: id };
    await deps.jobs.enqueue(tx.database, QUEUE.deliverOpinion, job, { singletonKey: id });
    return { id, taskId: row.taskId, status: 'pending', attempts: row.attempts, ...(row.lastError ? { lastError: row.lastError } : {}), ...(row.lastOutcome ? { lastOutcome: row.lastOutcome } : {}) };
  });
}
