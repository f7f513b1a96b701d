/**
 * Delivery of Subscription notifications, durable exactly as the webhooks are
 * (notify/task-notifications.ts):
 * - `subscriptionEventsFor` runs inside the Task write observer (the same change stream as the
 *   webhooks): each matching Subscription gets the next event number, an event row (what
 *   `$events` replays) and a `notify-subscription` job, all in the Task's own transaction;
 * - `sendSubscriptionNotification` is that job: one POST of the notification Bundle; a non-2xx
 *   answer or a network error throws (the queue retries with backoff); the last failed attempt
 *   puts the Subscription in `error` (visible in `$status`), a later success makes it `active`.
 *   The `error` policy (the backport IG leaves it to the server): while a Subscription is in
 *   `error`, events are still numbered and stored (`$events` replays them) but each notification
 *   is attempted once, with no retry chain, until one (an event or a heartbeat) gets through;
 * - `sweepSubscriptions` is the periodic sweep (every replica): Subscriptions past their `end`
 *   go `off`, and due heartbeats are queued (claiming a heartbeat is one UPDATE, so two replicas
 *   never send the same one).
 */
import { randomUUID } from 'node:crypto';
import type { Subscription, Task } from '@medplum/fhirtypes';
import { and, eq, inArray, isNotNull, lte, or, isNull, gt, sql, type SQL } from 'drizzle-orm';
import { sameResourceReference } from '../fhir/references.ts';
import { FHIR_JSON } from '../fhir/constants.ts';
import type { Job, JobQueue } from '../jobs/job-queue.ts';
import { QUEUE, type NotifySubscriptionJob } from '../jobs/queues.ts';
import type { Db } from '../store/database.ts';
import type { ResourceChange, ResourceStore, ResourceValidator } from '../store/resource-store.ts';
import { subscriptionEvents, subscriptions } from '../store/schema.ts';
import type { PayloadContent, SubscriptionStatusCode, TaskFilter } from './backport.ts';
import { notificationBundle, type SubscriptionEvent } from './notification-bundle.ts';
import { requestedTimeoutSeconds } from './subscription-request.ts';

/** Subscriptions in these statuses hear events (a failing one keeps counting them, so `$events` has them). */
const LISTENING: SubscriptionStatusCode[] = ['requested', 'active', 'error'];

function matches(task: Task, filters: readonly TaskFilter[]): boolean {
  return filters.every((f) => {
    const value = f.param === 'owner' ? task.owner?.reference : task.requester?.reference;
    return value !== undefined && sameResourceReference(value, f.reference);
  });
}

/** A Subscription that may hear a Task change: its id and filters. */
export type SubscriptionCandidate = { id: string; filters: TaskFilter[] };

/**
 * The listening Subscriptions whose read keys meet `access` (an SQL text[] expression, e.g. the
 * access list a Task write returns), as one jsonb array: evaluated inside the statement that
 * writes the Task (WriteObserver.lookup), so the change costs no statement of its own.
 */
export function subscriptionCandidates(access: SQL, now: Date): SQL {
  return sql`(SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'filters', s.filters)), '[]'::jsonb) FROM ${subscriptions} s
     WHERE s.status IN (${sql.join(LISTENING.map((l) => sql`${l}`), sql`, `)}) AND s.reader_keys && ${access} AND (s.end_at IS NULL OR s.end_at > ${now.toISOString()}::timestamptz))`;
}

/** True when no listening Subscription's read keys meet `access` (nothing `subscriptionEventsFor` could act on). */
export function noSubscriptionListening(access: SQL, now: Date): SQL {
  return sql`NOT EXISTS (SELECT 1 FROM ${subscriptions} s
     WHERE s.status IN (${sql.join(LISTENING.map((l) => sql`${l}`), sql`, `)}) AND s.reader_keys && ${access} AND (s.end_at IS NULL OR s.end_at > ${now.toISOString()}::timestamptz))`;
}

/**
 * For one Task change: every listening Subscription whose read keys meet the Task's access list
 * and whose filters match gets its next event and a notification job. Runs in the writing
 * transaction; `candidates` are what `subscriptionCandidates` found in the writing statement
 * (read here when not given).
 */
export async function subscriptionEventsFor(tx: ResourceStore, change: ResourceChange, deps: { jobs: Pick<JobQueue, 'enqueue'>; now: () => Date }, candidates?: readonly SubscriptionCandidate[]): Promise<number> {
  const task = change.resource as Task;
  const keys = [...new Set(change.access)];
  if (keys.length === 0) return 0;
  const now = deps.now();
  candidates ??= await tx.database
    .select({ id: subscriptions.id, filters: subscriptions.filters })
    .from(subscriptions)
    .where(
      and(
        inArray(subscriptions.status, LISTENING),
        sql`${subscriptions.readerKeys} && ${`{${keys.map((k) => JSON.stringify(k)).join(',')}}`}::text[]`,
        or(isNull(subscriptions.endAt), gt(subscriptions.endAt, now)),
      ),
    );
  let queued = 0;
  for (const candidate of candidates.filter((c) => matches(task, c.filters))) {
    // The row lock taken here orders the numbers: each event gets the next one, with no gap.
    const [counted] = await tx.database
      .update(subscriptions)
      .set({ eventsSinceStart: sql`${subscriptions.eventsSinceStart} + 1` })
      .where(eq(subscriptions.id, candidate.id))
      .returning({ eventNumber: subscriptions.eventsSinceStart });
    if (!counted) continue;
    await tx.database.insert(subscriptionEvents).values({
      subscriptionId: candidate.id,
      eventNumber: counted.eventNumber,
      focusType: 'Task',
      focusId: task.id as string,
      focusVersion: task.meta?.versionId ?? '1',
      occurredAt: task.meta?.lastUpdated ? new Date(task.meta.lastUpdated) : now,
    });
    const job: NotifySubscriptionJob = { subscriptionId: candidate.id, type: 'event-notification', eventNumber: String(counted.eventNumber), notificationId: randomUUID() };
    await deps.jobs.enqueue(tx.database, QUEUE.notifySubscription, job);
    queued++;
  }
  return queued;
}

export interface SubscriptionSendDeps {
  db: Db;
  validator: ResourceValidator;
  fhirBaseUrl: string;
  /** The service's notification timeout; a Subscription's `backport-timeout` may only shorten it. */
  timeoutMs: number;
  /** Retries after the first attempt (the queue's policy): attempt `retryLimit + 1` is the last. */
  retryLimit: number;
  now: () => Date;
  fetch?: typeof fetch;
}

/** The endpoint answered with a non-2xx status: the job is retried. */
export class SubscriptionEndpointError extends Error {
  readonly status: number;

  constructor(status: number) {
    super(`subscription endpoint answered HTTP ${status}`);
    this.name = 'SubscriptionEndpointError';
    this.status = status;
  }
}

export type SubscriptionSendResult =
  | { outcome: 'sent'; status: number }
  | { outcome: 'skipped'; reason: string }
  /** The one attempt of a notification to a Subscription in `error` failed: no retry (the event stays in `$events`). */
  | { outcome: 'failed'; error: Error };

/** The `notify-subscription` job. */
export async function sendSubscriptionNotification(job: Job<NotifySubscriptionJob>, deps: SubscriptionSendDeps): Promise<SubscriptionSendResult> {
  const { subscriptionId, type, eventNumber, notificationId } = job.data;
  const [row] = await deps.db.select().from(subscriptions).where(eq(subscriptions.id, subscriptionId));
  if (!row) return { outcome: 'skipped', reason: 'the Subscription was deleted' };
  // Past its end nothing more is sent (what happened before it stays in `$events`).
  if (row.status === 'off' || (row.endAt && row.endAt.getTime() <= deps.now().getTime())) return { outcome: 'skipped', reason: 'the Subscription is off' };
  // Read before the attempt: a Subscription already in `error` gets one attempt per notification.
  const inError = row.status === 'error';
  let events: SubscriptionEvent[] = [];
  if (type === 'event-notification') {
    events = (await deps.db
      .select()
      .from(subscriptionEvents)
      .where(and(eq(subscriptionEvents.subscriptionId, subscriptionId), eq(subscriptionEvents.eventNumber, Number(eventNumber))))) as SubscriptionEvent[];
    if (events.length === 0) return { outcome: 'skipped', reason: 'the event is gone' };
  }
  const bundle = notificationBundle(
    {
      fhirBaseUrl: deps.fhirBaseUrl,
      subscriptionId,
      // A handshake is sent while the Subscription is still `requested`.
      status: row.status as SubscriptionStatusCode,
      type,
      eventsSinceStart: type === 'event-notification' ? Number(eventNumber) : row.eventsSinceStart,
    },
    events,
    row.payload as PayloadContent,
    deps.now(),
    notificationId,
  );
  // What leaves the service validates against R4 first (a failure here is our bug: no retry helps, but the queue keeps it visible).
  deps.validator.validate(bundle);
  const headers: Record<string, string> = {};
  for (const line of row.headers) {
    const at = line.indexOf(':');
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  let failure: string | undefined;
  let status = 0;
  try {
    const response = await (deps.fetch ?? fetch)(row.endpoint, {
      method: 'POST',
      headers: { ...headers, 'content-type': FHIR_JSON, 'user-agent': 'second-opinion-referrals subscription' },
      body: JSON.stringify(bundle),
      redirect: 'manual',
      signal: AbortSignal.timeout(Math.min(deps.timeoutMs, (requestedTimeoutSeconds(row.content as Subscription) ?? Infinity) * 1000)),
    });
    status = response.status;
    // The receiver's body is not read beyond draining it.
    await response.body?.cancel().catch(() => undefined);
    if (status < 200 || status > 299) failure = `The endpoint answered HTTP ${status}`;
  } catch (err) {
    failure = `The endpoint could not be reached (${networkCode(err)})`;
  }
  const now = deps.now();
  if (failure === undefined) {
    await deps.db
      .update(subscriptions)
      .set({
        // A success ends `error` (the policy above) and the handshake's wait (`requested`).
        status: sql`CASE WHEN ${subscriptions.status} IN ('requested', 'error') THEN 'active' ELSE ${subscriptions.status} END`,
        lastError: null,
        failedAttempts: 0,
        // Anything sent counts as a sign of life: the next heartbeat is a full period away.
        nextHeartbeatAt: sql`CASE WHEN ${subscriptions.heartbeatSeconds} IS NULL THEN NULL ELSE ${now.toISOString()}::timestamptz + make_interval(secs => ${subscriptions.heartbeatSeconds}) END`,
        updatedAt: now,
      })
      .where(eq(subscriptions.id, subscriptionId));
    return { outcome: 'sent', status };
  }
  const last = inError || job.attempt >= deps.retryLimit + 1;
  await deps.db
    .update(subscriptions)
    .set({
      // Never from `off` back to `error`: the sweep may have ended it during the attempt.
      ...(last ? { status: sql`CASE WHEN ${subscriptions.status} = 'off' THEN 'off' ELSE 'error' END` } : {}),
      lastError: failure,
      failedAttempts: sql`${subscriptions.failedAttempts} + 1`,
      updatedAt: now,
    })
    .where(eq(subscriptions.id, subscriptionId));
  const error = status ? new SubscriptionEndpointError(status) : new Error(failure);
  // In `error` already: this was the one attempt; the job ends here instead of a retry chain.
  if (inError) return { outcome: 'failed', error };
  throw error;
}

/** A network error's code (ECONNREFUSED, a timeout...), never its message. */
function networkCode(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  if ((err as { name?: unknown } | null)?.name === 'TimeoutError') return 'timeout';
  return 'network error';
}

/**
 * Claims every heartbeat that is due (one UPDATE moves it a period on) and queues it, in one
 * transaction: two replicas sweeping at once never queue the same heartbeat.
 */
export async function queueDueHeartbeats(deps: { store: ResourceStore; jobs: Pick<JobQueue, 'enqueue'>; now: () => Date }): Promise<number> {
  const now = deps.now();
  return deps.store.withTransaction(async (tx) => {
    const due = await tx.database
      .update(subscriptions)
      .set({ nextHeartbeatAt: sql`${now.toISOString()}::timestamptz + make_interval(secs => ${subscriptions.heartbeatSeconds})` })
      .where(
        and(
          inArray(subscriptions.status, ['active', 'error']),
          isNotNull(subscriptions.heartbeatSeconds),
          lte(subscriptions.nextHeartbeatAt, now),
          or(isNull(subscriptions.endAt), gt(subscriptions.endAt, now)),
        ),
      )
      .returning({ id: subscriptions.id });
    for (const { id } of due) {
      const job: NotifySubscriptionJob = { subscriptionId: id, type: 'heartbeat', eventNumber: '0', notificationId: randomUUID() };
      await deps.jobs.enqueue(tx.database, QUEUE.notifySubscription, job);
    }
    return due.length;
  });
}

/**
 * `Subscription.end` honoured: every Subscription whose end has passed goes `off` (no events are
 * counted for it from then on, no heartbeat or notification is sent; reads say `off` from the end
 * itself, before this runs). Returns the ids switched off.
 */
export async function switchOffEnded(deps: { store: ResourceStore; now: () => Date }): Promise<string[]> {
  const now = deps.now();
  const ended = await deps.store.database
    .update(subscriptions)
    .set({ status: 'off', nextHeartbeatAt: null, updatedAt: now })
    .where(and(lte(subscriptions.endAt, now), inArray(subscriptions.status, ['requested', 'active', 'error'])))
    .returning({ id: subscriptions.id });
  return ended.map((e) => e.id);
}

/** One sweep: Subscriptions past their end go `off`, then the due heartbeats are queued. */
export async function sweepSubscriptions(deps: { store: ResourceStore; jobs: Pick<JobQueue, 'enqueue'>; now: () => Date }): Promise<{ ended: number; heartbeats: number }> {
  const ended = await switchOffEnded(deps);
  const heartbeats = await queueDueHeartbeats(deps);
  return { ended: ended.length, heartbeats };
}

/** Runs the sweep (`sweepSubscriptions`) every `intervalSeconds` until stopped. */
export function startHeartbeatSweep(deps: { store: ResourceStore; jobs: Pick<JobQueue, 'enqueue'>; now: () => Date }, intervalSeconds: number, onError: (err: unknown) => void): { stop(): Promise<void> } {
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = sweepSubscriptions(deps)
      .catch(onError)
      .finally(() => {
        running = undefined;
      });
  }, intervalSeconds * 1000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
