/**
 * Topic-based Subscriptions (issue 12 §3): create, read, search, delete, `$status` and
 * `$events`, as use cases that know no door. A Subscription belongs to the participant that
 * created it: anyone else is told it does not exist (404).
 *
 * What a subscriber hears is forced to what it may read: the Subscription keeps the caller's
 * read keys (`readerOf`), and a Task change reaches it only when the Task's access list holds
 * one of them (subscription-delivery.ts), whatever filters it asked for.
 */
import { randomUUID } from 'node:crypto';
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Bundle, Subscription } from '@medplum/fhirtypes';
import { and, asc, desc, eq, gte, lte } from 'drizzle-orm';
import { type Caller, requireRole, requireScope } from '../access/caller.ts';
import { readerOf } from '../access/reader.ts';
import { issue, invalid, unprocessable } from '../fhir/outcomes.ts';
import { ResourceValidationError } from '../fhir/validator.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { QUEUE, type NotifySubscriptionJob } from '../jobs/queues.ts';
import type { Participant } from '../network/network.ts';
import type { ResourceStore, ResourceValidator } from '../store/resource-store.ts';
import { subscriptionEvents, subscriptions } from '../store/schema.ts';
import { BACKPORT_PROFILE, type PayloadContent, type SubscriptionStatusCode } from './backport.ts';
import { notificationBundle, statusBundle, type SubscriptionEvent } from './notification-bundle.ts';
import { originsOf, parseSubscriptionRequest } from './subscription-request.ts';

export interface SubscriptionDeps {
  store: ResourceStore;
  validator: ResourceValidator;
  network: { get(id: string): Participant | undefined };
  jobs: Pick<JobQueue, 'enqueue'>;
  now: () => Date;
  /** The service's FHIR base (`${PUBLIC_URL}/fhir`). */
  fhirBaseUrl: string;
  minHeartbeatSeconds: number;
}

/** Who may subscribe: the participants Tasks are about. */
const SUBSCRIBERS = ['referrer', 'consultant', 'physician'] as const;
/** Most events one `$events` call returns; ask again from the next number for more. */
export const MAX_EVENTS_PER_QUERY = 100;

export type SubscriptionRow = typeof subscriptions.$inferSelect;

/** The Subscription as clients read it: as created, with the live status and error. */
export function subscriptionResource(row: SubscriptionRow): Subscription {
  const { error: _stored, ...content } = row.content as Subscription;
  return {
    ...content,
    id: row.id,
    meta: { ...content.meta, lastUpdated: row.updatedAt.toISOString(), profile: [BACKPORT_PROFILE.subscription] },
    status: row.status as Subscription['status'],
    ...(row.lastError ? { error: row.lastError } : {}),
  };
}

/**
 * `POST /fhir/Subscription`: stores the Subscription (status `requested`) and queues its
 * handshake in the same transaction; the handshake's success makes it `active`.
 */
export async function createSubscription(body: unknown, caller: Caller, deps: SubscriptionDeps): Promise<Subscription> {
  requireRole(caller, SUBSCRIBERS);
  requireScope(caller, 'Subscription', 'c');
  const participant = deps.network.get(caller.participantId);
  const request = parseSubscriptionRequest(body, { minHeartbeatSeconds: deps.minHeartbeatSeconds, allowedOrigins: originsOf([participant?.notify?.url, participant?.fhir?.baseUrl]) });
  const reader = readerOf(caller);
  const readerKeys = reader === 'system' ? [] : 'participantId' in reader ? [reader.participantId] : [...reader.anyOf];
  if (readerKeys.length === 0) throw unprocessable([issue('forbidden', 'This token reads no referral, so a Subscription would never hear of one', 'Subscription')]);

  const id = randomUUID();
  const now = deps.now();
  const { id: _ignored, meta: _meta, status: _status, error: _error, ...rest } = request.resource;
  const content: Subscription = { ...rest, resourceType: 'Subscription', id, meta: { profile: [BACKPORT_PROFILE.subscription] }, status: 'requested' };
  // Stored only if it is valid R4: the refusal names the fields, as the validator found them.
  try {
    deps.validator.validate(content);
  } catch (err) {
    if (err instanceof ResourceValidationError) throw unprocessable(err.issues.filter((i) => i.severity === 'error' || i.severity === 'fatal'));
    throw err;
  }
  const row = await deps.store.withTransaction(async (tx) => {
    const [created] = await tx.database
      .insert(subscriptions)
      .values({
        id,
        participantId: caller.participantId,
        readerKeys,
        filters: request.filters,
        endpoint: request.endpoint,
        headers: request.headers,
        payload: request.payload,
        heartbeatSeconds: request.heartbeatSeconds ?? null,
        status: 'requested',
        nextHeartbeatAt: request.heartbeatSeconds ? new Date(now.getTime() + request.heartbeatSeconds * 1000) : null,
        endAt: request.end ?? null,
        content,
        createdAt: now,
        updatedAt: now,
      })
      .returning();
    const job: NotifySubscriptionJob = { subscriptionId: id, type: 'handshake', eventNumber: '0', notificationId: randomUUID() };
    await deps.jobs.enqueue(tx.database, QUEUE.notifySubscription, job);
    return created as SubscriptionRow;
  });
  return subscriptionResource(row);
}

/** The caller's own Subscription, or 404 (another participant's does not exist for it). */
async function ownSubscription(id: string, caller: Caller, interaction: 'r' | 'd', deps: Pick<SubscriptionDeps, 'store'>): Promise<SubscriptionRow> {
  requireRole(caller, SUBSCRIBERS);
  requireScope(caller, 'Subscription', interaction);
  const [row] = await deps.store.database
    .select()
    .from(subscriptions)
    .where(and(eq(subscriptions.id, id), eq(subscriptions.participantId, caller.participantId)));
  if (!row) throw new OperationOutcomeError(notFound);
  return row;
}

export async function readSubscription(id: string, caller: Caller, deps: Pick<SubscriptionDeps, 'store'>): Promise<Subscription> {
  return subscriptionResource(await ownSubscription(id, caller, 'r', deps));
}

/** `GET /fhir/Subscription`: the caller's Subscriptions, newest first (`status` filters; `_count` caps). */
export async function searchSubscriptions(params: Record<string, string[]>, caller: Caller, deps: Pick<SubscriptionDeps, 'store' | 'fhirBaseUrl'>): Promise<Bundle> {
  requireRole(caller, SUBSCRIBERS);
  requireScope(caller, 'Subscription', 's');
  const unknown = Object.keys(params).filter((p) => p !== 'status' && p !== '_count');
  if (unknown.length) throw invalid(unknown.map((p) => issue('not-supported', `Search parameter '${p}' is not supported on Subscription (status, _count)`, p)));
  const status = params.status?.[0];
  const count = params._count?.[0] !== undefined ? Number(params._count[0]) : 50;
  if (!Number.isInteger(count) || count < 0 || count > 500) throw invalid([issue('value', '_count must be a whole number from 0 to 500', '_count')]);
  const rows = await deps.store.database
    .select()
    .from(subscriptions)
    .where(and(eq(subscriptions.participantId, caller.participantId), status ? eq(subscriptions.status, status) : undefined))
    .orderBy(desc(subscriptions.createdAt), desc(subscriptions.id))
    .limit(count);
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    entry: rows.map((r) => ({ fullUrl: `${deps.fhirBaseUrl}/Subscription/${r.id}`, resource: subscriptionResource(r), search: { mode: 'match' } })),
  };
}

/** `DELETE /fhir/Subscription/{id}`: gone with its events; queued notifications find nothing and are skipped. */
export async function deleteSubscription(id: string, caller: Caller, deps: Pick<SubscriptionDeps, 'store'>): Promise<void> {
  const row = await ownSubscription(id, caller, 'd', deps);
  await deps.store.database.delete(subscriptions).where(eq(subscriptions.id, row.id));
}

/** `GET /fhir/Subscription/{id}/$status`: status, events so far and the delivery error, if any. */
export async function subscriptionStatusOf(id: string, caller: Caller, deps: Pick<SubscriptionDeps, 'store' | 'fhirBaseUrl'>): Promise<Bundle> {
  const row = await ownSubscription(id, caller, 'r', deps);
  return statusBundle({ fhirBaseUrl: deps.fhirBaseUrl, subscriptionId: row.id, status: row.status as SubscriptionStatusCode, type: 'query-status', eventsSinceStart: row.eventsSinceStart, ...(row.lastError ? { error: row.lastError } : {}) });
}

/**
 * `GET /fhir/Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=&content=`: the
 * events a client missed, as a notification Bundle (`query-event`). At most
 * MAX_EVENTS_PER_QUERY from `eventsSinceNumber`; `content` is id-only (default) or empty.
 */
export async function subscriptionEventsOf(id: string, params: Record<string, string[]>, caller: Caller, deps: Pick<SubscriptionDeps, 'store' | 'fhirBaseUrl' | 'now'>): Promise<Bundle> {
  const row = await ownSubscription(id, caller, 'r', deps);
  const number = (name: string, fallback: number): number => {
    const raw = params[name]?.[0];
    if (raw === undefined) return fallback;
    if (!/^\d{1,15}$/.test(raw)) throw invalid([issue('value', `${name} must be a whole number`, name)]);
    return Number(raw);
  };
  const unknown = Object.keys(params).filter((p) => !['eventsSinceNumber', 'eventsUntilNumber', 'content'].includes(p));
  if (unknown.length) throw invalid(unknown.map((p) => issue('not-supported', `Parameter '${p}' is not supported by $events (eventsSinceNumber, eventsUntilNumber, content)`, p)));
  const since = number('eventsSinceNumber', 1);
  const until = number('eventsUntilNumber', row.eventsSinceStart);
  const content = params.content?.[0] ?? 'id-only';
  if (content !== 'id-only' && content !== 'empty') throw invalid([issue('not-supported', "content must be 'id-only' or 'empty': resources are read with the caller's own token", 'content')]);
  const events = await deps.store.database
    .select()
    .from(subscriptionEvents)
    .where(and(eq(subscriptionEvents.subscriptionId, row.id), gte(subscriptionEvents.eventNumber, since), lte(subscriptionEvents.eventNumber, until)))
    .orderBy(asc(subscriptionEvents.eventNumber))
    .limit(MAX_EVENTS_PER_QUERY);
  return notificationBundle(
    { fhirBaseUrl: deps.fhirBaseUrl, subscriptionId: row.id, status: row.status as SubscriptionStatusCode, type: 'query-event', eventsSinceStart: row.eventsSinceStart, ...(row.lastError ? { error: row.lastError } : {}) },
    events as SubscriptionEvent[],
    content as PayloadContent,
    deps.now(),
  );
}
