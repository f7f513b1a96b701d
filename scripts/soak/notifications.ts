/**
 * The soak's notification receiver: one node:http server standing in for the webhook receivers
 * of the referrer (st-olaf) and of one clinic (northfield-pathology), and for the endpoint of a
 * FHIR Subscription that clinic creates at the start (rest-hook, id-only, its own Tasks). It
 * verifies every webhook's Standard Webhooks signature and records what arrived and when; the
 * `webhook-receiver-down` fault makes it refuse everything (503, or reset connections) for a
 * few seconds. At the end it reads the Task history from the service's store and the
 * Subscription's `$events`, for the checks in notification-checks.ts.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bundle, Parameters, Subscription } from '@medplum/fhirtypes';
import type { TaskNotification } from '../../src/notify/task-notifications.ts';
import { verifyWebhook } from '../../src/notify/webhook-signature.ts';
import { BACKPORT_EXTENSION, TASK_TOPIC } from '../../src/subscriptions/backport.ts';
import type { ExampleParticipant } from '../../test/support/example-network.ts';
import type { SoakClient } from './driver.ts';
import type { FaultWindow } from './faults.ts';
import { checkSubscription, checkWebhooks, type NotificationFindings, type SubscriptionArrival, type SubscriptionEventSeen, type TaskVersion, type WebhookArrival } from './notification-checks.ts';
import { type FaultKind, type ScheduledFault } from './schedule.ts';
import type { SoakPostgres } from './topology.ts';

/** Participants whose webhooks the soak receives. */
export const WEBHOOK_RECIPIENTS = ['st-olaf', 'northfield-pathology'] as const;
/** The referrer hears of its referrals' Tasks from their creation; a clinic from its admission (the disclosure). */
const REFERRER = 'st-olaf';
/** The clinic that subscribes to its own Tasks. */
export const SUBSCRIBER = 'northfield-pathology';
const SUBSCRIBER_OWNER = `Organization/${SUBSCRIBER}`;
/** Sent by the service with each Subscription notification (`channel.header`), checked by the receiver. */
const SUBSCRIPTION_HEADER = 'Bearer soak-subscription-receiver';
/** How long after the receiver is back its window stays open: the retry backoff (from WEBHOOK_RETRY_DELAY_SECONDS, doubling) needs that to come round. */
const RECOVERY_SLACK_MS = 45_000;

export interface NotificationReceiver {
  origin: string;
  webhooks: WebhookArrival[];
  subscription: SubscriptionArrival[];
  /** While set, every request is refused this way. */
  down: '503' | 'reset' | undefined;
  /** Adds `notify` (URL on this receiver, a secret) to the webhook recipients in the network file. */
  editNetwork(byId: (id: string) => ExampleParticipant): void;
  stop(): Promise<void>;
}

const secretOf = (participant: string) => `soak-${participant}-webhook-secret-0123456789`;

export async function startNotificationReceiver(): Promise<NotificationReceiver> {
  const receiver: NotificationReceiver = {
    origin: '',
    webhooks: [],
    subscription: [],
    down: undefined,
    editNetwork(byId) {
      for (const p of WEBHOOK_RECIPIENTS) byId(p).notify = { url: `${receiver.origin}/webhook/${p}`, secret: secretOf(p) };
    },
    stop: async () => undefined,
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        receive(receiver, req, res, Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  receiver.stop = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return receiver;
}

function receive(receiver: NotificationReceiver, req: IncomingMessage, res: ServerResponse, raw: string): void {
  const at = Date.now();
  const down = receiver.down;
  const answered = down === 'reset' ? 0 : down === '503' ? 503 : 204;
  const path = req.url ?? '';
  const header = (name: string) => req.headers[name] as string | undefined;
  const webhook = /^\/webhook\/([a-z-]+)$/.exec(path);
  if (webhook?.[1]) {
    const participant = webhook[1];
    const body = JSON.parse(raw) as TaskNotification;
    receiver.webhooks.push({
      participant,
      webhookId: header('webhook-id') ?? '',
      taskId: body.data.task.split('/').pop() ?? '',
      taskVersion: body.data.taskVersion,
      status: body.data.status,
      businessStatus: body.data.businessStatus ?? '',
      at,
      signatureOk: verifyWebhook(secretOf(participant), { id: header('webhook-id'), timestamp: header('webhook-timestamp'), signature: header('webhook-signature') }, raw, new Date(at)),
      answered,
    });
  } else if (path === '/subscription') {
    const bundle = JSON.parse(raw) as Bundle;
    const status = bundle.entry?.[0]?.resource as Parameters | undefined;
    receiver.subscription.push({
      bundleId: bundle.id ?? '',
      type: status?.parameter?.find((p) => p.name === 'type')?.valueCode ?? '',
      events: eventsOf(bundle),
      at,
      answered,
      headerOk: req.headers.authorization === SUBSCRIPTION_HEADER,
    });
  } else {
    res.writeHead(404).end();
    return;
  }
  if (down === 'reset') req.socket.destroy();
  else res.writeHead(answered).end();
}

/** The events of a notification or `$events` Bundle: number from the SubscriptionStatus, Task and version from the focus entry in the same position. */
export function eventsOf(bundle: Bundle): SubscriptionEventSeen[] {
  const status = bundle.entry?.[0]?.resource as Parameters | undefined;
  const events = (status?.parameter ?? []).filter((p) => p.name === 'notification-event');
  return events.map((e, i) => {
    const focus = e.part?.find((x) => x.name === 'focus')?.valueReference?.reference ?? '';
    const etag = bundle.entry?.[i + 1]?.response?.etag ?? '';
    return { number: Number(e.part?.find((x) => x.name === 'event-number')?.valueString), taskId: focus.split('/').pop() ?? '', version: /"(\d+)"/.exec(etag)?.[1] ?? '' };
  });
}

/** The clinic's Subscription: rest-hook to the receiver, id-only, its own Tasks, a heartbeat; created before the driver starts, then waited for until active (the handshake). */
export async function createSubscription(client: SoakClient, receiver: NotificationReceiver, log: (line: string) => void): Promise<{ id?: string; createdAt?: number; error?: string }> {
  const body: Subscription = {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'The soak: hear every change of our consult Tasks',
    criteria: TASK_TOPIC,
    _criteria: { extension: [{ url: BACKPORT_EXTENSION.filterCriteria, valueString: `Task?owner=${SUBSCRIBER_OWNER}` }] },
    channel: {
      type: 'rest-hook',
      endpoint: `${receiver.origin}/subscription`,
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: BACKPORT_EXTENSION.payloadContent, valueCode: 'id-only' }] },
      header: [`Authorization: ${SUBSCRIPTION_HEADER}`],
      extension: [{ url: BACKPORT_EXTENSION.heartbeatPeriod, valueUnsignedInt: 10 }],
    },
  } as Subscription;
  const createdAt = Date.now();
  const created = await client.call<Subscription>(0, 'POST', '/fhir/Subscription', SUBSCRIBER, body, { retries: 3 }).catch((err: Error) => ({ status: 0, body: { error: err.message } as Subscription }));
  if (created.status !== 201 || !created.body?.id) return { error: `POST /fhir/Subscription answered ${created.status}: ${JSON.stringify(created.body).slice(0, 300)}` };
  const id = created.body.id;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if ((await subscriptionStatus(client, id).catch(() => undefined)) === 'active') break;
    if (Date.now() > deadline) return { id, createdAt, error: 'the Subscription did not become active within 60 s (no handshake)' };
    await new Promise((r) => setTimeout(r, 500));
  }
  log(`Subscription ${id} of ${SUBSCRIBER} active (handshake received)`);
  return { id, createdAt };
}

async function subscriptionStatus(client: SoakClient, id: string): Promise<string | undefined> {
  const res = await client.call<Bundle>(0, 'GET', `/fhir/Subscription/${id}/$status`, SUBSCRIBER);
  const status = res.body?.entry?.[0]?.resource as Parameters | undefined;
  return status?.parameter?.find((p) => p.name === 'status')?.valueCode;
}

/** The `webhook-receiver-down` fault: the receiver refuses everything for `fault.seconds`, then answers again. */
export async function receiverDown(receiver: NotificationReceiver | undefined, fault: ScheduledFault, window: FaultWindow): Promise<void> {
  if (!receiver) {
    window.detail = 'no receiver in this run';
    window.end = Date.now();
    return;
  }
  const mode = (fault.seconds ?? 5) % 2 === 0 ? '503' : 'reset';
  window.detail = `${mode} for ${fault.seconds ?? 5} s`;
  receiver.down = mode;
  await new Promise((r) => setTimeout(r, (fault.seconds ?? 5) * 1_000));
  receiver.down = undefined;
  window.end = Date.now() + RECOVERY_SLACK_MS;
}

/** Every stored Task version (from the store's history table). */
async function taskVersions(postgres: SoakPostgres): Promise<TaskVersion[]> {
  const rows = await postgres.query<{ id: string; version_id: number; last_updated: Date; status: string; business_status: string; access: string[]; owner: string | null }>(
    `SELECT id, version_id, last_updated, content->>'status' AS status, coalesce(content#>>'{businessStatus,coding,0,code}', '') AS business_status, access, content#>>'{owner,reference}' AS owner
       FROM resource_history WHERE resource_type = 'Task'`,
  );
  return rows.map((r) => ({
    taskId: r.id,
    version: Number(r.version_id),
    status: r.status,
    businessStatus: r.business_status,
    access: r.access,
    ...(r.owner ? { owner: r.owner } : {}),
    lastUpdated: new Date(r.last_updated).getTime(),
  }));
}

/** The end of the run: the Task history against what the receiver got and what `$events` replays. */
export async function gatherNotifications(
  postgres: SoakPostgres,
  client: SoakClient,
  receiver: NotificationReceiver,
  subscription: { id?: string; createdAt?: number; error?: string },
): Promise<NotificationFindings> {
  const versions = await taskVersions(postgres);
  const webhooks = checkWebhooks(versions, WEBHOOK_RECIPIENTS, receiver.webhooks, [REFERRER]);
  if (!subscription.id || subscription.error) return { webhooks, subscriptionError: subscription.error ?? 'not created' };
  try {
    return { webhooks, subscription: await subscriptionFindings(postgres, client, receiver, versions, subscription.id, subscription.createdAt) };
  } catch (err) {
    return { webhooks, subscriptionError: (err as Error).message };
  }
}

async function subscriptionFindings(postgres: SoakPostgres, client: SoakClient, receiver: NotificationReceiver, versions: TaskVersion[], id: string, createdAt: number | undefined) {
  const statusRes = await client.call<Bundle>(0, 'GET', `/fhir/Subscription/${id}/$status`, SUBSCRIBER);
  const statusParams = statusRes.body?.entry?.[0]?.resource as Parameters | undefined;
  const status = statusParams?.parameter?.find((p) => p.name === 'status')?.valueCode ?? `unknown ($status answered ${statusRes.status})`;
  const eventsSinceStart = Number(statusParams?.parameter?.find((p) => p.name === 'events-since-subscription-start')?.valueString ?? Number.NaN);
  if (!Number.isInteger(eventsSinceStart)) throw new Error(`$status answered ${statusRes.status} without events-since-subscription-start`);
  // $events, 100 at a time (the service's page), from 1 to the count.
  const replay: SubscriptionEventSeen[] = [];
  for (let since = 1; since <= eventsSinceStart; since += 100) {
    const until = Math.min(eventsSinceStart, since + 99);
    const res = await client.call<Bundle>(0, 'GET', `/fhir/Subscription/${id}/$events?eventsSinceNumber=${since}&eventsUntilNumber=${until}`, SUBSCRIBER);
    if (res.status !== 200) throw new Error(`$events ${since}-${until} answered ${res.status}`);
    replay.push(...eventsOf(res.body));
  }
  const since = (await postgres.query<{ created_at: Date }>('SELECT created_at FROM subscription WHERE id = $1', [id]))[0]?.created_at;
  return checkSubscription({
    versions,
    owner: SUBSCRIBER_OWNER,
    reader: SUBSCRIBER,
    since: since ? new Date(since).getTime() : (createdAt ?? 0),
    eventsSinceStart,
    replay,
    arrivals: receiver.subscription,
    status,
  });
}
