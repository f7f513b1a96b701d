import { randomUUID } from 'node:crypto';
import type { Bundle, Parameters, Subscription, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createValidator } from '../src/fhir/validator.ts';
import type { Job, JobQueue } from '../src/jobs/job-queue.ts';
import type { NotifySubscriptionJob } from '../src/jobs/queues.ts';
import type { Database } from '../src/store/database.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { subscriptionEvents, subscriptions } from '../src/store/schema.ts';
import { BACKPORT_EXTENSION, TASK_TOPIC } from '../src/subscriptions/backport.ts';
import { queueDueHeartbeats, sendSubscriptionNotification, SubscriptionEndpointError, subscriptionEventsFor, sweepSubscriptions, switchOffEnded } from '../src/subscriptions/subscription-delivery.ts';
import { liveStatus } from '../src/subscriptions/subscriptions.ts';
import { openTestDatabase } from './support/database.ts';

const T0 = new Date('2026-11-02T10:00:00.000Z');
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);
const RETRY_LIMIT = 2;
const BASE = 'https://so.example/fhir';

/**
 * The delivery of Subscription notifications against the store of record (PGlite, or PostgreSQL
 * with DATABASE_URL), with a controlled clock and endpoint: heartbeats only after a quiet
 * period, the `error` policy (one attempt per notification until one gets through), `end`
 * switching a Subscription off, and the backport-timeout honoured.
 */
describe('Subscription delivery (store)', () => {
  let database: Database;
  let store: ResourceStore;
  const validator = createValidator();
  let clock = T0;
  const now = () => clock;
  let queued: NotifySubscriptionJob[] = [];
  const jobs: Pick<JobQueue, 'enqueue'> = {
    async enqueue(_tx, _name, data) {
      queued.push(data as NotifySubscriptionJob);
      return randomUUID();
    },
  };
  /** What the endpoint answers next; every POST it got. */
  let answer: number | 'hang' = 200;
  let posts: Bundle[] = [];
  const fetchStub: typeof fetch = async (_url, init) => {
    posts.push(JSON.parse(String(init?.body)) as Bundle);
    if (answer === 'hang') {
      // Answers only when the attempt's timeout aborts it.
      const signal = init?.signal as AbortSignal;
      await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    }
    return new Response(null, { status: answer as number });
  };
  const sendDeps = () => ({ db: database.db, validator, fhirBaseUrl: BASE, timeoutMs: 55_000, retryLimit: RETRY_LIMIT, now, fetch: fetchStub });
  const send = (data: NotifySubscriptionJob, attempt = 1) => sendSubscriptionNotification({ id: randomUUID(), name: 'notify-subscription', data, attempt } as Job<NotifySubscriptionJob>, sendDeps());
  const row = async (id: string) => (await database.db.select().from(subscriptions).where(eq(subscriptions.id, id)))[0]!;

  async function subscribe(options: { status?: string; heartbeatSeconds?: number; endAt?: Date; timeoutSeconds?: number } = {}): Promise<string> {
    const id = randomUUID();
    const content: Subscription = {
      resourceType: 'Subscription',
      id,
      status: 'requested',
      reason: 'test',
      criteria: TASK_TOPIC,
      channel: { type: 'rest-hook', endpoint: 'https://receiver.example/hook', ...(options.timeoutSeconds ? { extension: [{ url: BACKPORT_EXTENSION.timeout, valueUnsignedInt: options.timeoutSeconds }] } : {}) },
    };
    await database.db.insert(subscriptions).values({
      id,
      participantId: 'lakeside-consults',
      readerKeys: ['lakeside-consults'],
      filters: [],
      endpoint: 'https://receiver.example/hook',
      headers: [],
      payload: 'id-only',
      heartbeatSeconds: options.heartbeatSeconds ?? null,
      status: options.status ?? 'active',
      nextHeartbeatAt: options.heartbeatSeconds ? at(options.heartbeatSeconds) : null,
      endAt: options.endAt ?? null,
      content,
      createdAt: T0,
      updatedAt: T0,
    });
    return id;
  }

  /** A change of a Task Lakeside may read: each listening Subscription gets its next event (and job). */
  async function taskChanged(version: string): Promise<number> {
    const task = { resourceType: 'Task', id: 'task-1', status: 'accepted', intent: 'order', meta: { versionId: version, lastUpdated: clock.toISOString() } } as Task;
    return store.withTransaction((tx) => subscriptionEventsFor(tx, { resource: task, access: ['lakeside-consults'] }, { jobs, now }));
  }

  const statusParam = (b: Bundle) => (b.entry?.[0]?.resource as Parameters).parameter?.find((p) => p.name === 'status')?.valueCode;

  beforeAll(async () => {
    database = await openTestDatabase();
    store = new ResourceStore(database.db, validator, now);
  });
  afterAll(async () => {
    await database?.close();
  });
  beforeEach(async () => {
    await database.db.delete(subscriptions);
    clock = T0;
    queued = [];
    posts = [];
    answer = 200;
  });

  it('no heartbeat while notifications go out within the period: each one sent moves the next heartbeat a full period on', async () => {
    const id = await subscribe({ heartbeatSeconds: 60 });
    clock = at(50);
    expect(await taskChanged('2')).toBe(1);
    expect(await send(queued[0]!)).toEqual({ outcome: 'sent', status: 200 });
    expect((await row(id)).nextHeartbeatAt).toEqual(at(110));
    queued = [];
    // Past the first period (60 s), but only 11 s after the event: nothing due.
    clock = at(61);
    expect(await queueDueHeartbeats({ store, jobs, now })).toBe(0);
    clock = at(100);
    expect(await taskChanged('3')).toBe(1);
    expect(await send(queued[0]!)).toEqual({ outcome: 'sent', status: 200 });
    queued = [];
    clock = at(159);
    expect(await queueDueHeartbeats({ store, jobs, now })).toBe(0);
    // A full quiet period after the last event: one heartbeat, claimed once.
    clock = at(160);
    expect(await queueDueHeartbeats({ store, jobs, now })).toBe(1);
    expect(await queueDueHeartbeats({ store, jobs, now })).toBe(0);
    expect(queued).toEqual([{ subscriptionId: id, type: 'heartbeat', eventNumber: '0', notificationId: expect.any(String) }]);
    expect(posts.map((p) => (p.entry?.[0]?.resource as Parameters).parameter?.find((x) => x.name === 'type')?.valueCode)).toEqual(['event-notification', 'event-notification']);
  });

  it('error: after the last retry of one notification the Subscription is in error; then events are still numbered and stored but each is tried once; a heartbeat that gets through makes it active again', async () => {
    const id = await subscribe({ heartbeatSeconds: 60 });
    answer = 500;
    await taskChanged('2');
    const first = queued[0]!;
    for (let attempt = 1; attempt <= RETRY_LIMIT; attempt++) {
      await expect(send(first, attempt)).rejects.toBeInstanceOf(SubscriptionEndpointError);
      expect((await row(id)).status).toBe('active');
    }
    await expect(send(first, RETRY_LIMIT + 1)).rejects.toBeInstanceOf(SubscriptionEndpointError);
    expect(await row(id)).toMatchObject({ status: 'error', lastError: 'The endpoint answered HTTP 500', failedAttempts: RETRY_LIMIT + 1 });

    // In error: the next event is numbered and kept for $events; its one attempt fails without a retry (no throw).
    queued = [];
    posts = [];
    expect(await taskChanged('3')).toBe(1);
    const second = queued[0]!;
    expect(second).toMatchObject({ type: 'event-notification', eventNumber: '2' });
    const result = await send(second, 1);
    expect(result).toMatchObject({ outcome: 'failed' });
    expect(result.outcome === 'failed' && result.error).toBeInstanceOf(SubscriptionEndpointError);
    expect(posts).toHaveLength(1);
    expect(statusParam(posts[0]!)).toBe('error');
    expect((await database.db.select().from(subscriptionEvents).where(eq(subscriptionEvents.subscriptionId, id))).map((e) => [e.eventNumber, e.focusVersion])).toEqual([
      [1, '2'],
      [2, '3'],
    ]);
    expect(await row(id)).toMatchObject({ status: 'error', eventsSinceStart: 2 });

    // The heartbeat sweep still probes a Subscription in error; one that gets through makes it active.
    queued = [];
    clock = at(60);
    expect(await queueDueHeartbeats({ store, jobs, now })).toBe(1);
    answer = 200;
    expect(await send(queued[0]!)).toEqual({ outcome: 'sent', status: 200 });
    expect(await row(id)).toMatchObject({ status: 'active', lastError: null, failedAttempts: 0 });
    // Active again: a failure is retried as before (it throws for the queue).
    answer = 500;
    await expect(send(second, 1)).rejects.toBeInstanceOf(SubscriptionEndpointError);
    expect((await row(id)).status).toBe('active');
  });

  it('end: from the end on the Subscription is off (the sweep stores it); no event is counted and nothing is sent after it', async () => {
    const id = await subscribe({ heartbeatSeconds: 60, endAt: at(100) });
    const other = await subscribe({ heartbeatSeconds: 60 });
    clock = at(99);
    expect(liveStatus(await row(id), clock)).toBe('active');
    expect(await taskChanged('2')).toBe(2);
    const before = queued.find((j) => j.subscriptionId === id)!;
    queued = [];
    clock = at(100);
    expect(liveStatus(await row(id), clock)).toBe('off');
    // A notification queued before the end and sent after it is not sent.
    expect(await send(before)).toEqual({ outcome: 'skipped', reason: 'the Subscription is off' });
    expect(posts).toEqual([]);
    // Only the other Subscription hears of a later change.
    expect(await taskChanged('3')).toBe(1);
    expect(queued.map((j) => j.subscriptionId)).toEqual([other]);
    queued = [];
    expect(await sweepSubscriptions({ store, jobs, now })).toEqual({ ended: 1, heartbeats: 1 });
    expect(await row(id)).toMatchObject({ status: 'off', nextHeartbeatAt: null });
    expect(queued.map((j) => [j.subscriptionId, j.type])).toEqual([[other, 'heartbeat']]);
    expect(await switchOffEnded({ store, now })).toEqual([]);
  });

  it('backport-timeout: an attempt waits the Subscription\'s own timeout when it is shorter than the service\'s', async () => {
    const id = await subscribe({ timeoutSeconds: 1 });
    answer = 'hang';
    await taskChanged('2');
    // The service would wait 55 s (longer than this test may run): the attempt ends at the Subscription's 1 s.
    await expect(send(queued[0]!, 1)).rejects.toThrow('The endpoint could not be reached (timeout)');
    expect(await row(id)).toMatchObject({ status: 'active', lastError: 'The endpoint could not be reached (timeout)' });
  }, 20_000);
});
