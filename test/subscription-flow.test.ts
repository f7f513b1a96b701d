import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AuditEvent, Bundle, OperationOutcome, Parameters, ParametersParameter, Subscription, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE, QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { BACKPORT_EXTENSION, BACKPORT_PROFILE, TASK_TOPIC } from '../src/subscriptions/backport.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

interface Received {
  path: string;
  raw: string;
  body: Bundle;
  answered: number;
  authorization: string | undefined;
}

/** Retries of a notification after its first attempt, in this test (so a failing endpoint reaches `error` quickly). */
const RETRY_LIMIT = 2;

const param = (p: Parameters, name: string): ParametersParameter | undefined => p.parameter?.find((x) => x.name === name);
const statusOf = (b: Bundle): Parameters => b.entry?.[0]?.resource as Parameters;
const eventsOf = (p: Parameters) =>
  (p.parameter ?? [])
    .filter((x) => x.name === 'notification-event')
    .map((e) => ({
      number: Number(e.part?.find((x) => x.name === 'event-number')?.valueString),
      focus: e.part?.find((x) => x.name === 'focus')?.valueReference?.reference,
    }));

/**
 * Topic-based Subscriptions (Subscriptions R5 Backport IG) over real HTTP, with a
 * receiving server: handshake, heartbeats, id-only event notifications numbered since the
 * subscription started, nothing of another clinic's Tasks, `$events` for what was missed, and a
 * failing endpoint that is retried and then shows `error` in `$status`.
 */
describe('FHIR Subscriptions (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let receiver: Server;
  let hook = '';
  const received: Received[] = [];
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        const path = req.url ?? '';
        // `/down/...` never answers 2xx; webhooks (`/webhook/...`) are answered and ignored here.
        const answered = path.startsWith('/down') ? 500 : 200;
        if (path.startsWith('/subs') || path.startsWith('/down')) {
          received.push({ path, raw, body: JSON.parse(raw) as Bundle, answered, authorization: req.headers.authorization });
        }
        res.writeHead(answered).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 50_000 } });
    const networkFile = await writeSandboxNetwork(ehr, {
      timeoutMs: 2_000,
      edit: (byId) => {
        // Subscriptions may only notify the origins a participant's systems have in the network file.
        byId('st-olaf').notify = { url: `${hook}/webhook/st-olaf`, secret: 'st-olaf-webhook-secret-0123456789' };
        byId('lakeside-consults').notify = { url: `${hook}/webhook/lakeside`, secret: 'lakeside-webhook-secret-0123456789' };
      },
    });
    service = await startTestService({ NETWORK_FILE: networkFile, SUBSCRIPTION_MIN_HEARTBEAT_SECONDS: '1', SUBSCRIPTION_HEARTBEAT_SWEEP_SECONDS: '1' }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 1, ...(q.name === QUEUE.notifySubscription ? { retryLimit: RETRY_LIMIT } : {}) })),
      jobPollingIntervalSeconds: 0.5,
    });
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology', 'audit-office']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  }, 120_000);
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
    await new Promise((r) => receiver?.close(r));
  });

  const call = callerFor(() => service.url, tokens);
  const waitFor = <T>(probe: () => Promise<T | undefined> | T | undefined, what: string) =>
    until(probe, what, 45_000, () => `received: ${JSON.stringify(received.map((r) => [r.path, r.answered, statusOf(r.body)?.parameter?.map((p) => p.valueCode ?? p.valueString)]))}`);
  const at = (path: string, type?: string) => received.filter((r) => r.path === path && (!type || param(statusOf(r.body), 'type')?.valueCode === type));

  function subscription(endpointPath: string, options: { payload?: string; filters?: string[]; heartbeat?: number; headers?: string[]; endpoint?: string } = {}): Subscription {
    return {
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'Hear about our consult Tasks',
      criteria: TASK_TOPIC,
      ...(options.filters ? { _criteria: { extension: options.filters.map((f) => ({ url: BACKPORT_EXTENSION.filterCriteria, valueString: f })) } } : {}),
      channel: {
        type: 'rest-hook',
        endpoint: options.endpoint ?? `${hook}${endpointPath}`,
        payload: 'application/fhir+json',
        _payload: { extension: [{ url: BACKPORT_EXTENSION.payloadContent, valueCode: options.payload ?? 'id-only' }] },
        ...(options.heartbeat ? { extension: [{ url: BACKPORT_EXTENSION.heartbeatPeriod, valueUnsignedInt: options.heartbeat }] } : {}),
        ...(options.headers ? { header: options.headers } : {}),
      },
    } as Subscription;
  }

  const create = async (who: string, body: Subscription) => {
    const res = await call<Subscription>('POST', '/fhir/Subscription', who, body, { 'content-type': 'application/fhir+json' });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.headers.get('location')).toBe(`${service.url}/fhir/Subscription/${res.body.id}`);
    return res.body;
  };
  const status = async (who: string, id: string) => {
    const res = await call<Bundle>('GET', `/fhir/Subscription/${id}/$status`, who);
    expect(res.status).toBe(200);
    return statusOf(res.body);
  };

  it('refuses what it cannot honour, naming the field: full-resource payloads, another topic, an endpoint outside the caller\'s systems; only subscribers may subscribe', async () => {
    const full = await call<OperationOutcome>('POST', '/fhir/Subscription', 'lakeside-consults', subscription('/subs/x', { payload: 'full-resource' }));
    expect(full.status).toBe(422);
    expect(full.body.issue).toEqual([
      { severity: 'error', code: 'value', details: { text: "Payload content must be 'id-only' or 'empty': notifications never carry resources (no PHI leaves in a notification)" }, expression: ['Subscription.channel.payload.extension[0].valueCode'] },
    ]);
    const elsewhere = await call<OperationOutcome>('POST', '/fhir/Subscription', 'lakeside-consults', { ...subscription('/subs/x', { endpoint: 'https://collector.example.net/hook' }), criteria: 'Task?status=requested' });
    expect(elsewhere.status).toBe(422);
    expect(elsewhere.body.issue?.map((i) => i.expression?.[0])).toEqual(['Subscription.criteria', 'Subscription.channel.endpoint']);
    const badFilter = await call<OperationOutcome>('POST', '/fhir/Subscription', 'lakeside-consults', subscription('/subs/x', { filters: ['Patient?name=Alex'] }));
    expect(badFilter.status).toBe(422);
    expect(badFilter.body.issue?.[0]?.expression).toEqual(['Subscription.criteria.extension[0].valueString']);
    // The auditor has no Task to hear about: refused by role.
    expect((await call('POST', '/fhir/Subscription', 'audit-office', subscription('/subs/x'))).status).toBe(403);
    expect((await call<Bundle>('GET', '/fhir/Subscription', 'lakeside-consults')).body.entry).toEqual([]);
  });

  it('handshake, heartbeats, id-only events numbered from the start with the Task as focus, nothing of another clinic; $events replays; a failing endpoint goes to error', async () => {
    // Lakeside: id-only with heartbeats and its own Authorization header; and one that asks for Northfield's Tasks (never given).
    const lakeside = await create('lakeside-consults', subscription('/subs/lakeside', { heartbeat: 1, headers: ['Authorization: Bearer receiver-token'] }));
    expect(lakeside.status).toBe('requested');
    expect(lakeside.meta?.profile).toEqual([BACKPORT_PROFILE.subscription]);
    const nosy = await create('lakeside-consults', subscription('/subs/nosy', { filters: ['Task?owner=Organization/northfield-pathology'] }));
    // St Olaf: empty payload, only the Task owned by Northfield.
    const referrer = await create('st-olaf', subscription('/subs/st-olaf', { payload: 'empty', filters: ['Task?owner=Organization/northfield-pathology'] }));
    // An endpoint that always fails.
    const down = await create('lakeside-consults', subscription('/down/lakeside'));

    // The handshake makes it active.
    const handshake = await waitFor(() => at('/subs/lakeside', 'handshake')[0], 'the handshake');
    expect(handshake.authorization).toBe('Bearer receiver-token');
    expect(handshake.body.type).toBe('history');
    expect(handshake.body.meta?.profile).toEqual([BACKPORT_PROFILE.notification]);
    const hs = statusOf(handshake.body);
    expect(hs.meta?.profile).toEqual([BACKPORT_PROFILE.status]);
    expect(hs.parameter).toEqual([
      { name: 'subscription', valueReference: { reference: `${service.url}/fhir/Subscription/${lakeside.id}` } },
      { name: 'topic', valueCanonical: TASK_TOPIC },
      { name: 'status', valueCode: 'requested' },
      { name: 'type', valueCode: 'handshake' },
      { name: 'events-since-subscription-start', valueString: '0' },
    ]);
    await waitFor(async () => ((await status('lakeside-consults', lakeside.id as string)).parameter?.find((p) => p.name === 'status')?.valueCode === 'active' ? true : undefined), 'the Subscription to become active');
    // Heartbeats at the period asked for.
    const heartbeat = await waitFor(() => at('/subs/lakeside', 'heartbeat')[0], 'a heartbeat');
    expect(param(statusOf(heartbeat.body), 'status')?.valueCode).toBe('active');
    expect(heartbeat.body.entry).toHaveLength(1);

    // A referral to Lakeside and Northfield; Lakeside accepts its Task.
    const request = makeSecondOpinionRequest({ consultants: ['lakeside-consults', 'northfield-pathology'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded);
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', request);
    expect(created.status).toBe(201);
    const [lakesideTask, northfieldTask] = created.body.tasks.map((t) => t.id as string) as [string, string];
    await waitFor(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${created.body.id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');
    const accepted = await call<Task>('POST', `/consults/${lakesideTask}/accept`, 'lakeside-consults');
    expect(accepted.status).toBe(200);
    const acceptedVersion = accepted.body.meta?.versionId as string;

    // The acceptance reaches Lakeside as an event whose focus is its Task at that version.
    const events = () => at('/subs/lakeside', 'event-notification');
    const acceptance = await waitFor(() => events().find((r) => r.body.entry?.[1]?.response?.etag === `W/"${acceptedVersion}"`), 'the acceptance event');
    const [n] = eventsOf(statusOf(acceptance.body)) as [{ number: number; focus: string }];
    expect(n.focus).toBe(`${service.url}/fhir/Task/${lakesideTask}`);
    expect(param(statusOf(acceptance.body), 'events-since-subscription-start')?.valueString).toBe(String(n.number));
    expect(acceptance.body.entry?.[1]).toEqual({ fullUrl: `${service.url}/fhir/Task/${lakesideTask}`, request: { method: 'PUT', url: `Task/${lakesideTask}` }, response: { status: '200', etag: `W/"${acceptedVersion}"` } });
    // Numbered 1..n without a gap, one per change of its own Task, never Northfield's.
    await waitFor(() => (events().length === n.number ? true : undefined), 'every event up to the acceptance');
    expect(events().map((r) => eventsOf(statusOf(r.body))[0]?.number).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(Array.from({ length: n.number }, (_, i) => i + 1));
    for (const r of events()) {
      expect(r.body.entry?.slice(1).map((e) => e.fullUrl)).toEqual([`${service.url}/fhir/Task/${lakesideTask}`]);
      // Id-only: no resource but the status Parameters, no PHI.
      expect(r.body.entry?.slice(1).every((e) => e.resource === undefined)).toBe(true);
      for (const phi of ['Alex', '999-00-1234', 'Nilsen', 'implant', 'Patient', request.question]) expect(r.raw).not.toContain(phi);
    }
    expect(received.some((r) => r.raw.includes(northfieldTask) && r.path !== '/subs/st-olaf')).toBe(false);

    // St Olaf (empty payload) hears Northfield's Task only: no focus in the notification; $events names it.
    const referrerEvents = await waitFor(() => (at('/subs/st-olaf', 'event-notification').length > 0 ? at('/subs/st-olaf', 'event-notification') : undefined), "St Olaf's events");
    expect(referrerEvents.every((r) => r.body.entry?.length === 1 && eventsOf(statusOf(r.body)).every((e) => e.focus === undefined))).toBe(true);
    const replay = await call<Bundle>('GET', `/fhir/Subscription/${referrer.id}/$events`, 'st-olaf');
    expect(replay.status).toBe(200);
    expect(param(statusOf(replay.body), 'type')?.valueCode).toBe('query-event');
    const replayed = eventsOf(statusOf(replay.body));
    expect(replayed.length).toBeGreaterThan(0);
    expect(new Set(replayed.map((e) => e.focus))).toEqual(new Set([`${service.url}/fhir/Task/${northfieldTask}`]));
    // Lakeside asked for Northfield's Tasks, which it may not read: it never hears of them.
    expect(param(await status('lakeside-consults', nosy.id as string), 'events-since-subscription-start')?.valueString).toBe('0');
    expect(at('/subs/nosy', 'event-notification')).toEqual([]);

    // The failing endpoint: the handshake is tried 1 + RETRY_LIMIT times with the same notification id, then the Subscription is in error.
    const downStatus = await waitFor(async () => {
      const s = await status('lakeside-consults', down.id as string);
      return param(s, 'status')?.valueCode === 'error' ? s : undefined;
    }, 'the failing Subscription to go to error');
    expect(param(downStatus, 'error')?.valueCodeableConcept).toEqual({ text: 'The endpoint answered HTTP 500' });
    const handshakes = at('/down/lakeside', 'handshake');
    expect(handshakes).toHaveLength(RETRY_LIMIT + 1);
    expect(new Set(handshakes.map((h) => h.body.id)).size).toBe(1);
    // What it missed is there to catch up on: $events replays the acceptance with its number and focus.
    const missed = await call<Bundle>('GET', `/fhir/Subscription/${down.id}/$events?eventsSinceNumber=1&eventsUntilNumber=100`, 'lakeside-consults');
    const missedEvents = eventsOf(statusOf(missed.body));
    expect(missedEvents.length).toBeGreaterThan(0);
    expect(missedEvents.map((e) => e.number)).toEqual(Array.from({ length: missedEvents.length }, (_, i) => i + 1));
    expect(missedEvents.every((e) => e.focus === `${service.url}/fhir/Task/${lakesideTask}`)).toBe(true);
    expect(missed.body.entry?.slice(1).some((e) => e.response?.etag === `W/"${acceptedVersion}"`)).toBe(true);
    // $events of one number: exactly that event.
    const one = await call<Bundle>('GET', `/fhir/Subscription/${lakeside.id}/$events?eventsSinceNumber=${n.number}&eventsUntilNumber=${n.number}`, 'lakeside-consults');
    expect(eventsOf(statusOf(one.body))).toEqual([n]);
  });

  it('read, search and delete: only the owner sees its Subscriptions; another participant gets 404', async () => {
    const mine = await create('lakeside-consults', subscription('/subs/read'));
    const read = await call<Subscription>('GET', `/fhir/Subscription/${mine.id}`, 'lakeside-consults');
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ resourceType: 'Subscription', id: mine.id, criteria: TASK_TOPIC, channel: { type: 'rest-hook', endpoint: `${hook}/subs/read` } });
    expect((await call('GET', `/fhir/Subscription/${mine.id}`, 'st-olaf')).status).toBe(404);
    expect((await call('GET', `/fhir/Subscription/${mine.id}/$status`, 'northfield-pathology')).status).toBe(404);
    expect((await call('GET', `/fhir/Subscription/${mine.id}/$events`, 'st-olaf')).status).toBe(404);
    expect((await call('DELETE', `/fhir/Subscription/${mine.id}`, 'st-olaf')).status).toBe(404);
    const search = await call<Bundle>('GET', '/fhir/Subscription', 'lakeside-consults');
    expect(search.body.entry?.map((e) => e.resource?.id)).toContain(mine.id);
    expect((await call<Bundle>('GET', '/fhir/Subscription', 'st-olaf')).body.entry?.map((e) => e.resource?.id)).not.toContain(mine.id);
    expect((await call('DELETE', `/fhir/Subscription/${mine.id}`, 'lakeside-consults')).status).toBe(204);
    expect((await call('GET', `/fhir/Subscription/${mine.id}`, 'lakeside-consults')).status).toBe(404);
  });

  it('reads, $status and $events are audited (refusals too); type-level $status answers for several of the caller\'s own only; past its end a Subscription is off; timeout and max-count are honoured or refused naming the extension', async () => {
    const channelExtension = (url: string, value: Record<string, unknown>) => ({ ...subscription('/subs/ext'), channel: { ...subscription('/subs/ext').channel, extension: [{ url, ...value }] } }) as Subscription;
    // backport-timeout up to the service's own (WEBHOOK_TIMEOUT_MS, 10 s by default); max-count from 1.
    const tooLong = await call<OperationOutcome>('POST', '/fhir/Subscription', 'lakeside-consults', channelExtension(BACKPORT_EXTENSION.timeout, { valueUnsignedInt: 3_600 }));
    expect(tooLong.status).toBe(422);
    expect(tooLong.body.issue).toEqual([{ severity: 'error', code: 'value', details: { text: `The timeout (backport-timeout) must be whole seconds from 1 to ${Math.floor(service.config.webhook.timeoutMs / 1000)}` }, expression: ['Subscription.channel.extension[0].valueUnsignedInt'] }]);
    const zeroCount = await call<OperationOutcome>('POST', '/fhir/Subscription', 'lakeside-consults', channelExtension(BACKPORT_EXTENSION.maxCount, { valuePositiveInt: 0 }));
    expect(zeroCount.status).toBe(422);
    expect(zeroCount.body.issue?.map((i) => i.expression?.[0])).toEqual(['Subscription.channel.extension[0].valuePositiveInt']);
    const timed = await create('lakeside-consults', channelExtension(BACKPORT_EXTENSION.timeout, { valueUnsignedInt: 2 }));
    expect(timed.channel?.extension).toEqual([{ url: BACKPORT_EXTENSION.timeout, valueUnsignedInt: 2 }]);

    // An end a few seconds ahead: active after the handshake, off from the end on ($status, read and search say so).
    const pastEnd = await call<OperationOutcome>('POST', '/fhir/Subscription', 'lakeside-consults', { ...subscription('/subs/ending'), end: '2020-01-01T00:00:00Z' });
    expect(pastEnd.status).toBe(422);
    expect(pastEnd.body.issue?.[0]?.expression).toEqual(['Subscription.end']);
    const end = new Date(Date.now() + 4_000);
    const ending = await create('lakeside-consults', { ...subscription('/subs/ending', { heartbeat: 1 }), end: end.toISOString() });
    await waitFor(() => at('/subs/ending', 'handshake')[0], 'the handshake of the ending Subscription');
    await waitFor(async () => (param(await status('lakeside-consults', ending.id as string), 'status')?.valueCode === 'off' ? true : undefined), 'the Subscription to be off after its end');
    expect((await call<Subscription>('GET', `/fhir/Subscription/${ending.id}`, 'lakeside-consults')).body.status).toBe('off');
    expect((await call<Bundle>('GET', '/fhir/Subscription?status=off', 'lakeside-consults')).body.entry?.map((e) => e.resource?.id)).toContain(ending.id);

    // Type-level $status: the caller's own named by id (repeated or comma-separated), another's left out; status filters.
    const other = await create('st-olaf', subscription('/subs/st-olaf-2', { payload: 'empty' }));
    const several = await call<Bundle>('GET', `/fhir/Subscription/$status?id=${ending.id},${timed.id}&id=${other.id}`, 'lakeside-consults');
    expect(several.status).toBe(200);
    expect(several.body).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 2 });
    const byId = new Map(several.body.entry?.map((e) => [param(e.resource as Parameters, 'subscription')?.valueReference?.reference, param(e.resource as Parameters, 'status')?.valueCode]));
    expect(byId).toEqual(
      new Map([
        [`${service.url}/fhir/Subscription/${ending.id}`, 'off'],
        [`${service.url}/fhir/Subscription/${timed.id}`, expect.stringMatching(/^(requested|active)$/)],
      ]),
    );
    const offOnly = await call<Bundle>('GET', '/fhir/Subscription/$status?status=off', 'lakeside-consults');
    expect(offOnly.body.entry?.map((e) => param(e.resource as Parameters, 'subscription')?.valueReference?.reference)).toEqual([`${service.url}/fhir/Subscription/${ending.id}`]);
    const badParam = await call<OperationOutcome>('GET', '/fhir/Subscription/$status?status=paused&topic=x', 'lakeside-consults');
    expect(badParam.status).toBe(400);
    expect(badParam.body.issue?.map((i) => i.expression?.[0])).toEqual(['topic']);
    expect((await call('GET', '/fhir/Subscription/$status', 'audit-office')).status).toBe(403);

    // From here on the ended Subscription's endpoint hears nothing more (counted a few requests after the end).
    const heardAtEnd = received.filter((r) => r.path === '/subs/ending').length;
    const liveHeartbeats = at('/subs/lakeside', 'heartbeat').length;

    // Audited: the read, $events (naming the Tasks it revealed, here none) and a refused $status of another's Subscription.
    expect((await call('GET', `/fhir/Subscription/${ending.id}/$events`, 'lakeside-consults')).status).toBe(200);
    expect((await call('GET', `/fhir/Subscription/${ending.id}/$status`, 'st-olaf')).status).toBe(404);
    const audits = async (query: string) => ((await call<Bundle>('GET', `/fhir/AuditEvent?${query}&_count=100`, 'audit-office')).body.entry ?? []).map((e) => e.resource as AuditEvent);
    const about = await audits(`entity=Subscription/${ending.id}`);
    const seen = about.map((a) => [a.subtype?.[0]?.code, a.outcome, a.agent?.find((g) => g.who?.identifier?.value && !g.who.reference?.startsWith('Device'))?.who?.identifier?.value]);
    expect(seen).toEqual(
      expect.arrayContaining([
        ['read', '0', expect.anything()],
        ['operation', '0', expect.anything()],
        ['operation', '4', expect.anything()],
      ]),
    );
    const refusedStatus = about.find((a) => a.outcome === '4');
    expect(refusedStatus?.outcomeDesc).toBe('Refused (404): not found, or not visible to the caller');
    expect(refusedStatus?.agent?.some((g) => g.who?.identifier?.value === 'st-olaf')).toBe(true);
    // The type-level $status is audited with the Subscriptions it answered for.
    const typeLevel = (await audits(`entity=Subscription/${timed.id}&subtype=operation`)).filter((a) => a.entity?.some((e) => e.role?.code === '24'));
    expect(typeLevel.length).toBeGreaterThan(0);

    // Nothing more reached the ended Subscription's endpoint after its end (no heartbeat, no event).
    await waitFor(() => (at('/subs/lakeside', 'heartbeat').length >= liveHeartbeats + 2 ? true : undefined), 'two more heartbeats of a live Subscription');
    expect(received.filter((r) => r.path === '/subs/ending').length).toBe(heardAtEnd);
  });
});

