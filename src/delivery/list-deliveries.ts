/**
 * `GET /admin/deliveries`: the post-backs an operator looks at before fixing a
 * referring EHR's configuration and re-driving (`POST /admin/deliveries/{id}/retry`): newest
 * change first, each with its status, attempts, the last error and the EHR's OperationOutcome
 * as kept. Ids and what the EHR answered only: no opinion text, no patient. Opinions
 * (`kind: opinion`, id the consult note's) and answers to follow-up questions
 * (`kind: follow-up-answer`, id the question's) alike.
 */
import type { OperationOutcome } from '@medplum/fhirtypes';
import { desc, eq, isNotNull } from 'drizzle-orm';
import { parseStatusListQuery, type StatusListQuery } from '../jobs/status-list-query.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { followUps, opinionDeliveries } from '../store/schema.ts';

export const DELIVERY_STATUSES = ['pending', 'delivered', 'failed'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export type DeliveryListQuery = StatusListQuery<DeliveryStatus>;

export interface DeliveryListItem {
  /** The consult note's id (an opinion), or the follow-up question's (its answer). */
  id: string;
  kind: 'opinion' | 'follow-up-answer';
  taskId: string;
  serviceRequestId: string;
  /** The referrer whose EHR receives the opinion. */
  participant: string;
  status: string;
  attempts: number;
  lastError?: string;
  /** The EHR's OperationOutcome of the last failed attempt (issues' severity, code, details.text, diagnostics, expression). */
  lastOutcome?: OperationOutcome;
  remoteDocument?: string;
  /** A follow-up answer as created on the EHR. */
  remoteAnswer?: string;
  updatedAt: string;
  deliveredAt?: string;
}

/** `?status=failed&_count=20` (jobs/status-list-query.ts). */
export function parseDeliveryListQuery(params: Record<string, string[]>): DeliveryListQuery {
  return parseStatusListQuery(params, DELIVERY_STATUSES);
}

export async function listDeliveries(query: DeliveryListQuery, deps: { store: ResourceStore }): Promise<{ items: DeliveryListItem[] }> {
  const rows = await deps.store.database
    .select()
    .from(opinionDeliveries)
    .where(query.status ? eq(opinionDeliveries.status, query.status) : undefined)
    .orderBy(desc(opinionDeliveries.updatedAt), opinionDeliveries.id)
    .limit(query.count);
  // Only answered questions have a post-back.
  const answers = await deps.store.database
    .select()
    .from(followUps)
    .where(query.status ? eq(followUps.deliveryStatus, query.status) : isNotNull(followUps.deliveryStatus))
    .orderBy(desc(followUps.updatedAt), followUps.id)
    .limit(query.count);
  const items: DeliveryListItem[] = [
    ...rows.map((row): DeliveryListItem => ({
      id: row.id,
      kind: 'opinion',
      taskId: row.taskId,
      serviceRequestId: row.serviceRequestId,
      participant: row.participantId,
      status: row.status,
      attempts: row.attempts,
      ...(row.lastError ? { lastError: row.lastError } : {}),
      ...(row.lastOutcome ? { lastOutcome: row.lastOutcome } : {}),
      ...(row.remoteDocument ? { remoteDocument: row.remoteDocument } : {}),
      updatedAt: row.updatedAt.toISOString(),
      ...(row.deliveredAt ? { deliveredAt: row.deliveredAt.toISOString() } : {}),
    })),
    ...answers.map((row): DeliveryListItem => ({
      id: row.id,
      kind: 'follow-up-answer',
      taskId: row.taskId,
      serviceRequestId: row.serviceRequestId,
      participant: row.participantId,
      status: row.deliveryStatus as string,
      attempts: row.attempts,
      ...(row.lastError ? { lastError: row.lastError } : {}),
      ...(row.lastOutcome ? { lastOutcome: row.lastOutcome } : {}),
      ...(row.remoteAnswer ? { remoteAnswer: row.remoteAnswer } : {}),
      updatedAt: row.updatedAt.toISOString(),
      ...(row.deliveredAt ? { deliveredAt: row.deliveredAt.toISOString() } : {}),
    })),
  ];
  // Newest change first across both kinds, then by id (as each query orders them).
  items.sort((a, b) => b.updatedAt.localeCompare(a.updatedAt) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { items: items.slice(0, query.count) };
}
