/**
 * What one `deliver-opinion` attempt needs, read in one statement: the delivery row, the consult
 * note, its Task (with the version the attempt's Task update is based on), the ServiceRequest and
 * the referrer's own request id (the intake row). It was five statements, one per row.
 */
import type { DocumentReference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { ResourceStore } from '../store/resource-store.ts';
import { intakeRequests, opinionDeliveries, resources } from '../store/schema.ts';

export interface DeliveryRow {
  id: string;
  taskId: string;
  serviceRequestId: string;
  participantId: string;
  status: string;
}

export interface DeliveryContext {
  delivery: DeliveryRow;
  /** Undefined when gone (the attempt is skipped then). */
  note: DocumentReference | undefined;
  task: Task | undefined;
  serviceRequest: ServiceRequest | undefined;
  /** The referrer's request id (`intake_request.request_id`), when the referral came through intake. */
  requestId: string | undefined;
}

interface Row {
  task_id: string;
  service_request_id: string;
  participant_id: string;
  status: string;
  note: DocumentReference | null;
  task: Task | null;
  service_request: ServiceRequest | null;
  request_id: string | null;
}

/** Undefined when there is no such delivery. The resources are read as the system (no access filter). */
export async function readDeliveryContext(store: Pick<ResourceStore, 'database'>, deliveryId: string): Promise<DeliveryContext | undefined> {
  const result = (await store.database.execute(sql`
    SELECT d.task_id, d.service_request_id, d.participant_id, d.status,
           note.content AS note, task.content AS task, sr.content AS service_request, i.request_id
      FROM ${opinionDeliveries} d
      LEFT JOIN ${resources} note ON note.resource_type = 'DocumentReference' AND note.id = d.id
      LEFT JOIN ${resources} task ON task.resource_type = 'Task' AND task.id = d.task_id
      LEFT JOIN ${resources} sr ON sr.resource_type = 'ServiceRequest' AND sr.id = d.service_request_id
      LEFT JOIN ${intakeRequests} i ON i.service_request_id = d.service_request_id
     WHERE d.id = ${deliveryId}`)) as unknown as { rows: Row[] };
  const row = result.rows[0];
  if (!row) return undefined;
  return {
    delivery: { id: deliveryId, taskId: row.task_id, serviceRequestId: row.service_request_id, participantId: row.participant_id, status: row.status },
    note: row.note ?? undefined,
    task: row.task ?? undefined,
    serviceRequest: row.service_request ?? undefined,
    requestId: row.request_id ?? undefined,
  };
}
