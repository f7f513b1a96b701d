/**
 * How one `deliver-opinion` attempt is recorded, in one statement (ResourceStore.write): the
 * delivery row, the Task's business status when it changes (only if the Task is still the
 * version the attempt read), and the attempt's AuditEvent. A Task written by someone else since
 * the attempt read it (412) is read again and the record retried, so no Task change is lost.
 */
import type { CodeableConcept, OperationOutcome, Task } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { AuditLog, AuditRecordInput } from '../audit/audit-log.ts';
import { isVersionConflict } from '../store/conflict-retry.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { opinionDeliveries } from '../store/schema.ts';

/** The delivery row's new values (`remoteDocument`, `remoteCommunication` and `deliveredAt` are kept when absent). */
export interface DeliveryRowChange {
  status: 'pending' | 'delivered' | 'failed';
  /** An expression of the current count. */
  attempts: SQL;
  lastError: string | null;
  lastOutcome: OperationOutcome | null;
  remoteDocument?: string;
  remoteCommunication?: string;
  updatedAt: Date;
  deliveredAt?: Date;
}

export interface AttemptRecord {
  deliveryId: string;
  row: DeliveryRowChange;
  /** The Task as the attempt read it, and its new business status; none when the Task does not change. */
  task?: { current: Task; businessStatus: CodeableConcept };
  audit: AuditRecordInput;
}

/** Attempts at the record when the Task keeps changing under it; each one re-reads the Task. */
const MAX_RECORD_ATTEMPTS = 5;

export async function recordAttempt(deps: { store: ResourceStore; audit: Pick<AuditLog, 'build'> }, record: AttemptRecord): Promise<void> {
  let task = record.task?.current;
  for (let attempt = 1; ; attempt++) {
    const row = deliveryRowUpdate(record.deliveryId, record.row);
    try {
      await deps.store.write({
        updates: task && record.task ? [{ resource: { ...task, businessStatus: record.task.businessStatus }, expectedVersion: task.meta?.versionId ?? '' }] : [],
        creates: [{ resource: deps.audit.build(record.audit), access: [] }],
        parts: [{ name: 'delivery_row', sql: row }],
      });
      return;
    } catch (err) {
      if (!task || attempt >= MAX_RECORD_ATTEMPTS || !isVersionConflict(err)) throw err;
      task = await deps.store.read<Task>('Task', task.id as string, 'system');
      if (!task) throw err;
    }
  }
}

/**
 * The delivery row's UPDATE as a flat statement: the query builder's (each value through its
 * column's encoder) cost about three times this to render, on every attempt. Values are encoded
 * as its encoders did (timestamps as ISO strings, the OperationOutcome as JSON text).
 */
function deliveryRowUpdate(id: string, row: DeliveryRowChange): SQL {
  const set: SQL[] = [
    sql`status = ${row.status}`,
    sql`attempts = ${row.attempts}`,
    sql`last_error = ${row.lastError}`,
    sql`last_outcome = ${row.lastOutcome === null ? null : JSON.stringify(row.lastOutcome)}::jsonb`,
    ...(row.remoteDocument !== undefined ? [sql`remote_document = ${row.remoteDocument}`] : []),
    ...(row.remoteCommunication !== undefined ? [sql`remote_communication = ${row.remoteCommunication}`] : []),
    sql`updated_at = ${row.updatedAt.toISOString()}`,
    ...(row.deliveredAt !== undefined ? [sql`delivered_at = ${row.deliveredAt.toISOString()}`] : []),
  ];
  return sql`UPDATE ${opinionDeliveries} SET ${sql.join(set, sql`, `)} WHERE id = ${id} RETURNING id`;
}
