/**
 * How one `deliver-opinion` attempt is recorded, in one statement (ResourceStore.write): the
 * delivery row, the Task's business status when it changes (only if the Task is still the
 * version the attempt read), and the attempt's AuditEvent. A Task written by someone else since
 * the attempt read it (412) is read again and the record retried, so no Task change is lost.
 */
import { OperationOutcomeError } from '@medplum/core';
import type { CodeableConcept, Task } from '@medplum/fhirtypes';
import { eq, type SQL } from 'drizzle-orm';
import type { AuditLog, AuditRecordInput } from '../audit/audit-log.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { opinionDeliveries } from '../store/schema.ts';

/** The delivery row's new values. */
export type DeliveryRowChange = Omit<Partial<typeof opinionDeliveries.$inferInsert>, 'attempts'> & { attempts?: SQL };

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
    const row = deps.store.database.update(opinionDeliveries).set(record.row).where(eq(opinionDeliveries.id, record.deliveryId)).returning({ id: opinionDeliveries.id }).getSQL();
    try {
      await deps.store.write({
        updates: task && record.task ? [{ resource: { ...task, businessStatus: record.task.businessStatus }, expectedVersion: task.meta?.versionId ?? '' }] : [],
        creates: [{ resource: deps.audit.build(record.audit), access: [] }],
        parts: [{ name: 'delivery_row', sql: row }],
      });
      return;
    } catch (err) {
      if (!task || attempt >= MAX_RECORD_ATTEMPTS || !isPreconditionFailed(err)) throw err;
      task = await deps.store.read<Task>('Task', task.id as string, 'system');
      if (!task) throw err;
    }
  }
}

function isPreconditionFailed(err: unknown): boolean {
  return err instanceof OperationOutcomeError && err.outcome.id === 'precondition-failed';
}
