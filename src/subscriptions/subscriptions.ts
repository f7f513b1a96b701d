/**
 * Topic-based Subscriptions: create, read, search, delete, `$status` and
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
import { and, asc, desc, eq, gt, gte, inArray, isNull, lte, or, type SQL } from 'drizzle-orm';
import { type Caller, requireRole, requireScope } from '../access/caller.ts';
import { readerOf } from '../access/reader.ts';
import { auditedRead, requestedEntity } from '../audit/audited-read.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { issue, invalid, unprocessable } from '../fhir/outcomes.ts';
import { ResourceValidationError } from '../fhir/validator.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { QUEUE, type NotifySubscriptionJob } from '../jobs/queues.ts';
import type { Participant } from '../network/network.ts';
import type { ResourceStore, ResourceValidator } from '../store/resource-store.ts';
import { subscriptionEvents, subscriptions } from '../store/schema.ts';
import { BACKPORT_PROFILE, type PayloadContent, type SubscriptionStatusCode } from './backport.ts';
import { notificationBundle, statusBundle, type StatusValues, type SubscriptionEvent } from './notification-bundle.ts';
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
  /** Longest `backport-timeout` a client may ask for, seconds (the service's own notification timeout). */
  maxTimeoutSeconds: number;
  /** Reads of Subscriptions, `$status` and `$events` are audited: they reveal which Tasks changed. */
  audit: AuditLog;
}

/** Who may subscribe: the participants Tasks are about. */
const SUBSCRIBERS = ['referrer', 'consultant', 'physician'] as const;
/** Most events one `$events` call returns; ask again from the next number for more. */
export const MAX_EVENTS_PER_QUERY = 100;
/** Most Subscriptions one type-level `$status` answers for. */
export const MAX_STATUSES_PER_QUERY = 100;

export type SubscriptionRow = typeof subscriptions.$inferSelect;

/**
 * The status a Subscription has now: `off` once its `end` has passed, even before the sweep
 * (subscription-delivery.ts `switchOffEnded`) has stored it; else the stored one.
 */
export function liveStatus(row: Pick<SubscriptionRow, 'status' | 'endAt'>, now: Date): SubscriptionStatusCode {
  return row.endAt && row.endAt.getTime() <= now.getTime() ? 'off' : (row.status as SubscriptionStatusCode);
}

/** SQL for "its live status is `status`" (see `liveStatus`). */
function hasLiveStatus(status: string, now: Date): SQL | undefined {
  const ended = lte(subscriptions.endAt, now);
  if (status === 'off') return or(eq(subscriptions.status, 'off'), ended);
  return and(eq(subscriptions.status, status), or(isNull(subscriptions.endAt), gt(subscriptions.endAt, now)));
}

/** The Subscription as clients read it: as created, with the live status and error. */
export function subscriptionResource(row: SubscriptionRow, now: Date): Subscription {
  const { error: _stored, ...content } = row.content as Subscription;
  return {
    ...content,
    id: row.id,
    meta: { ...content.meta, lastUpdated: row.updatedAt.toISOString(), profile: [BACKPORT_PROFILE.subscription] },
    status: liveStatus(row, now),
    ...(row.lastError ? { error: row.lastError } : {}),
  };
}

/** What `$status` and notifications say of a Subscription now. */
function statusValuesOf(row: SubscriptionRow, fhirBaseUrl: string, now: Date, type: StatusValues['type']): StatusValues {
  return { fhirBaseUrl, subscriptionId: row.id, status: liveStatus(row, now), type, eventsSinceStart: row.eventsSinceStart, ...(row.lastError ? { error: row.lastError } : {}) };
}

const subscriptionEntity = (id: string) => ({ reference: `Subscription/${id}` });

/**
 * `POST /fhir/Subscription`: stores the Subscription (status `requested`) and queues its
 * handshake in the same transaction; the handshake's success makes it `active`.
 */
export async function createSubscription(body: unknown, caller: Caller, deps: SubscriptionDeps): Promise<Subscription> {
  requireRole(caller, SUBSCRIBERS);
  requireScope(caller, 'Subscription', 'c');
  const participant = deps.network.get(caller.participantId);
  const now = deps.now();
  const request = parseSubscriptionRequest(body, {
    minHeartbeatSeconds: deps.minHeartbeatSeconds,
    maxTimeoutSeconds: deps.maxTimeoutSeconds,
    allowedOrigins: originsOf([participant?.notify?.url, participant?.fhir?.baseUrl]),
    now,
  });
  const reader = readerOf(caller);
  const readerKeys = reader === 'system' ? [] : 'participantId' in reader ? [reader.participantId] : [...reader.anyOf];
  if (readerKeys.length === 0) throw unprocessable([issue('forbidden', 'This token reads no referral, so a Subscription would never hear of one', 'Subscription')]);

  const id = randomUUID();
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
  return subscriptionResource(row, now);
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

/** `GET /fhir/Subscription/{id}`, audited (success or refusal). */
export async function readSubscription(id: string, caller: Caller, deps: Pick<SubscriptionDeps, 'store' | 'now' | 'audit'>): Promise<Subscription> {
  return auditedRead(deps.audit, caller, { action: 'read', requested: requestedEntity('Subscription', id), touched: (s) => ({ entities: [subscriptionEntity(s.id as string)] }) }, async () =>
    subscriptionResource(await ownSubscription(id, caller, 'r', deps), deps.now()),
  );
}

/** `GET /fhir/Subscription`: the caller's Subscriptions, newest first (`status` filters; `_count` caps). Audited. */
export async function searchSubscriptions(params: Record<string, string[]>, caller: Caller, deps: Pick<SubscriptionDeps, 'store' | 'fhirBaseUrl' | 'now' | 'audit'>): Promise<Bundle> {
  const known = Object.entries(params).filter(([p]) => p === 'status' || p === '_count');
  const query = `Subscription?${known.flatMap(([p, vs]) => vs.map((v) => `${p}=${encodeURIComponent(v)}`)).join('&')}`;
  return auditedRead(deps.audit, caller, { action: 'search', requested: [], query, touched: (b) => ({ entities: (b.entry ?? []).map((e) => subscriptionEntity(e.resource?.id as string)) }) }, async () => {
    requireRole(caller, SUBSCRIBERS);
    requireScope(caller, 'Subscription', 's');
    const unknown = Object.keys(params).filter((p) => p !== 'status' && p !== '_count');
    if (unknown.length) throw invalid(unknown.map((p) => issue('not-supported', `Search parameter '${p}' is not supported on Subscription (status, _count)`, p)));
    const status = params.status?.[0];
    const count = params._count?.[0] !== undefined ? Number(params._count[0]) : 50;
    if (!Number.isInteger(count) || count < 0 || count > 500) throw invalid([issue('value', '_count must be a whole number from 0 to 500', '_count')]);
    const now = deps.now();
    const rows = await deps.store.database
      .select()
      .from(subscriptions)
      .where(and(eq(subscriptions.participantId, caller.participantId), status ? hasLiveStatus(status, now) : undefined))
      .orderBy(desc(subscriptions.createdAt), desc(subscriptions.id))
      .limit(count);
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      entry: rows.map((r) => ({ fullUrl: `${deps.fhirBaseUrl}/Subscription/${r.id}`, resource: subscriptionResource(r, now), search: { mode: 'match' } })),
    } satisfies Bundle;
  });
}

/** `DELETE /fhir/Subscription/{id}`: gone with its events; queued notifications find nothing and are skipped. */
export async function deleteSubscription(id: string, caller: Caller, deps: Pick<SubscriptionDeps, 'store'>): Promise<void> {
  const row = await ownSubscription(id, caller, 'd', deps);
  await deps.store.database.delete(subscriptions).where(eq(subscriptions.id, row.id));
}

/** `GET /fhir/Subscription/{id}/$status`: status, events so far and the delivery error, if any. Audited. */
export async function subscriptionStatusOf(id: string, caller: Caller, deps: Pick<SubscriptionDeps, 'store' | 'fhirBaseUrl' | 'now' | 'audit'>): Promise<Bundle> {
  return auditedRead(deps.audit, caller, { action: 'operation', requested: requestedEntity('Subscription', id), touched: () => ({ entities: [subscriptionEntity(id)] }) }, async () => {
    const row = await ownSubscription(id, caller, 'r', deps);
    return statusBundle([statusValuesOf(row, deps.fhirBaseUrl, deps.now(), 'query-status')]);
  });
}

const STATUS_CODES: readonly SubscriptionStatusCode[] = ['requested', 'active', 'error', 'off'];

/**
 * Type-level `GET /fhir/Subscription/$status?id=&status=` (backport `$status` at the resource
 * level): one SubscriptionStatus per Subscription of the caller's own, those named by `id` (repeat
 * or comma-separate; ORed) or all of them, optionally only those in one of `status`. An id that is
 * not the caller's own is simply not in the answer (it does not exist for it). Audited.
 */
export async function subscriptionStatusesOf(params: Record<string, string[]>, caller: Caller, deps: Pick<SubscriptionDeps, 'store' | 'fhirBaseUrl' | 'now' | 'audit'>): Promise<Bundle> {
  const list = (name: string) => (params[name] ?? []).flatMap((v) => v.split(',')).map((v) => v.trim());
  const ids = list('id');
  const statuses = list('status');
  const query = `Subscription/$status?${[...ids.map((v) => `id=${encodeURIComponent(v)}`), ...statuses.map((v) => `status=${encodeURIComponent(v)}`)].join('&')}`;
  let answered: string[] = [];
  const touched = () => ({ entities: answered.map(subscriptionEntity) });
  return auditedRead(deps.audit, caller, { action: 'operation', requested: [], query, touched }, async () => {
    requireRole(caller, SUBSCRIBERS);
    requireScope(caller, 'Subscription', 'r');
    const unknown = Object.keys(params).filter((p) => p !== 'id' && p !== 'status');
    if (unknown.length) throw invalid(unknown.map((p) => issue('not-supported', `Parameter '${p}' is not supported by $status (id, status)`, p)));
    const badId = ids.findIndex((v) => !/^[A-Za-z0-9\-.]{1,64}$/.test(v));
    if (badId >= 0) throw invalid([issue('value', 'id must be Subscription ids (letters, digits, - and ., at most 64)', 'id')]);
    if (ids.length > MAX_STATUSES_PER_QUERY) throw invalid([issue('too-costly', `At most ${MAX_STATUSES_PER_QUERY} ids per $status`, 'id')]);
    const badStatus = statuses.find((v) => !STATUS_CODES.includes(v as SubscriptionStatusCode));
    if (badStatus !== undefined) throw invalid([issue('value', `status must be one of ${STATUS_CODES.join(', ')}`, 'status')]);
    const now = deps.now();
    const rows = await deps.store.database
      .select()
      .from(subscriptions)
      .where(
        and(
          eq(subscriptions.participantId, caller.participantId),
          ids.length ? inArray(subscriptions.id, ids) : undefined,
          statuses.length ? or(...statuses.map((st) => hasLiveStatus(st, now))) : undefined,
        ),
      )
      .orderBy(desc(subscriptions.createdAt), desc(subscriptions.id))
      .limit(MAX_STATUSES_PER_QUERY);
    answered = rows.map((r) => r.id);
    return statusBundle(rows.map((r) => statusValuesOf(r, deps.fhirBaseUrl, now, 'query-status')));
  });
}

/**
 * `GET /fhir/Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=&content=`: the
 * events a client missed, as a notification Bundle (`query-event`). At most
 * MAX_EVENTS_PER_QUERY from `eventsSinceNumber`; `content` is id-only (default) or empty.
 * Audited, naming the Tasks whose changes it returns.
 */
export async function subscriptionEventsOf(id: string, params: Record<string, string[]>, caller: Caller, deps: Pick<SubscriptionDeps, 'store' | 'fhirBaseUrl' | 'now' | 'audit'>): Promise<Bundle> {
  let foci: string[] = [];
  const touched = () => ({ entities: [subscriptionEntity(id), ...foci.map((reference) => ({ reference }))] });
  return auditedRead(deps.audit, caller, { action: 'operation', requested: requestedEntity('Subscription', id), touched }, async () => {
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
    const events = (await deps.store.database
      .select()
      .from(subscriptionEvents)
      .where(and(eq(subscriptionEvents.subscriptionId, row.id), gte(subscriptionEvents.eventNumber, since), lte(subscriptionEvents.eventNumber, until)))
      .orderBy(asc(subscriptionEvents.eventNumber))
      .limit(MAX_EVENTS_PER_QUERY)) as SubscriptionEvent[];
    // Only an id-only answer names the Tasks that changed.
    if (content === 'id-only') foci = [...new Set(events.map((e) => `${e.focusType}/${e.focusId}`))];
    const now = deps.now();
    return notificationBundle(statusValuesOf(row, deps.fhirBaseUrl, now, 'query-event'), events, content as PayloadContent, now);
  });
}
