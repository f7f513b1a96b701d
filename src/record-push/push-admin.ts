/**
 * The operator's view of record-set pushes, as for the post-back
 * (delivery/list-deliveries.ts, delivery/redrive.ts): `GET /admin/record-pushes` lists them with
 * the last error and the clinic server's OperationOutcome; `POST /admin/record-pushes/{id}/retry`
 * re-drives one that gave up, once the clinic's server or registration is fixed. Ids and what
 * the server answered only: no record content, no patient.
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { OperationOutcome } from '@medplum/fhirtypes';
import { desc, eq } from 'drizzle-orm';
import { conflictError } from '../fhir/outcomes.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { QUEUE, type PushRecordSetJob } from '../jobs/queues.ts';
import { parseStatusListQuery, type StatusListQuery } from '../jobs/status-list-query.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { recordSetPushes, type PushedResources } from '../store/schema.ts';

export const PUSH_STATUSES = ['pending', 'pushed', 'failed', 'superseded', 'refused'] as const;
export type PushStatus = (typeof PUSH_STATUSES)[number];

export type PushListQuery = StatusListQuery<PushStatus>;

export interface PushView {
  id: string;
  /** The consultant whose server receives it. */
  participant: string;
  taskId: string;
  serviceRequestId: string;
  bundleId: string;
  status: string;
  attempts: number;
  lastError?: string;
  lastOutcome?: OperationOutcome;
  /** What the clinic's server holds (relative references there). */
  remote?: PushedResources;
  updatedAt: string;
  pushedAt?: string;
}

/** `?status=failed&_count=20` (jobs/status-list-query.ts). */
export function parsePushListQuery(params: Record<string, string[]>): PushListQuery {
  return parseStatusListQuery(params, PUSH_STATUSES);
}

type Row = typeof recordSetPushes.$inferSelect;

function view(row: Row): PushView {
  return {
    id: row.id,
    participant: row.participantId,
    taskId: row.taskId,
    serviceRequestId: row.serviceRequestId,
    bundleId: row.bundleId,
    status: row.status,
    attempts: row.attempts,
    ...(row.lastError ? { lastError: row.lastError } : {}),
    ...(row.lastOutcome ? { lastOutcome: row.lastOutcome } : {}),
    ...(row.remote ? { remote: row.remote } : {}),
    updatedAt: row.updatedAt.toISOString(),
    ...(row.pushedAt ? { pushedAt: row.pushedAt.toISOString() } : {}),
  };
}

/** Newest change first. */
export async function listPushes(query: PushListQuery, deps: { store: ResourceStore }): Promise<{ items: PushView[] }> {
  const rows = await deps.store.database
    .select()
    .from(recordSetPushes)
    .where(query.status ? eq(recordSetPushes.status, query.status) : undefined)
    .orderBy(desc(recordSetPushes.updatedAt), recordSetPushes.id)
    .limit(query.count);
  return { items: rows.map(view) };
}

/**
 * Re-drives a push that gave up. The row is locked, so two re-drives never schedule two jobs;
 * the job's conditional creates keep the clinic's server at one copy whatever happens.
 */
export async function redrivePush(id: string, deps: { store: ResourceStore; jobs: Pick<JobQueue, 'enqueue'>; now: () => Date }): Promise<PushView> {
  return deps.store.withTransaction(async (tx) => {
    const [row] = await tx.database.select().from(recordSetPushes).where(eq(recordSetPushes.id, id)).for('update');
    if (!row) throw new OperationOutcomeError(notFound);
    if (row.status === 'pushed') throw conflictError(`Push ${id} was already made (${row.remote?.task ?? 'on the clinic server'})`);
    if (row.status === 'superseded') throw conflictError(`Push ${id} was replaced by a newer record set's push`);
    if (row.status === 'refused') throw conflictError(`Push ${id} was refused: the patient withdrew consent to disclose the records to this clinic`);
    if (row.status !== 'failed') throw conflictError(`Push ${id} is still being attempted (${row.attempts} attempts so far); re-drive it once it has failed`);
    const now = deps.now();
    await tx.database.update(recordSetPushes).set({ status: 'pending', updatedAt: now }).where(eq(recordSetPushes.id, id));
    const job: PushRecordSetJob = { pushId: id };
    await deps.jobs.enqueue(tx.database, QUEUE.pushRecordSet, job, { singletonKey: id });
    return view({ ...row, status: 'pending', updatedAt: now });
  });
}
