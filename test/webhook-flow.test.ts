import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import type { TaskNotification } from '../src/notify/task-notifications.ts';
import { verifyWebhook } from '../src/notify/webhook-signature.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const REFERRER_SECRET = 'st-olaf-webhook-secret-0123456789';
// A Standard Webhooks style secret (whsec_ + base64 of the key bytes).
const CONSULTANT_SECRET = `whsec_${Buffer.from('lakeside key bytes, 32 of them!!').toString('base64')}`;

interface Received {
  receiver: string;
  headers: { id: string | undefined; timestamp: string | undefined; signature: string | undefined };
  raw: string;
  body: TaskNotification;
  answered: number;
}

/**
 * Webhooks: every Task change a participant may read reaches its registered URL
 * as a signed, id-only notification, durably: a receiver that fails gets it again later.
 */
describe('webhook notifications (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let receiver: Server;
  const received: Received[] = [];
  /** Receivers answer 503 to the first `failFirst` requests. */
  let failFirst = 0;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        const answered = failFirst > 0 ? 503 : 204;
        if (failFirst > 0) failFirst--;
        const header = (name: string) => req.headers[name] as string | undefined;
        received.push({
          receiver: req.url ?? '',
          headers: { id: header('webhook-id'), timestamp: header('webhook-timestamp'), signature: header('webhook-signature') },
          raw,
          body: JSON.parse(raw) as TaskNotification,
          answered,
        });
        res.writeHead(answered).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
    const networkFile = await writeSandboxNetwork(ehr, {
      timeoutMs: 2_000,
      edit: (byId) => {
        byId('st-olaf').notify = { url: `${hook}/st-olaf`, secret: REFERRER_SECRET };
        byId('lakeside-consults').notify = { url: `${hook}/lakeside`, secret: CONSULTANT_SECRET };
      },
    });
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 1 })),
      jobPollingIntervalSeconds: 0.5,
    });
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
    await new Promise((r) => receiver?.close(r));
  });

  const call = callerFor(() => service.url, tokens);
  const waitFor = <T>(probe: () => Promise<T | undefined> | T | undefined, what: string) =>
    until(probe, what, 45_000, () => `received: ${JSON.stringify(received.map((r) => [r.receiver, r.body.data]))}`);

  it('each Task change reaches the referrer and the owning consultant, signed and id-only; a failed POST is retried with the same id', async () => {
    failFirst = 1;
    const request = makeSecondOpinionRequest({ consultants: ['lakeside-consults', 'northfield-pathology'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded);
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', request);
    expect(created.status).toBe(201);
    const id = created.body.id;
    const [lakesideTask, northfieldTask] = created.body.tasks.map((t) => t.id as string) as [string, string];
    await waitFor(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');

    expect((await call('POST', `/consults/${lakesideTask}/accept`, 'lakeside-consults')).status).toBe(200);
    expect((await call('POST', `/consults/${lakesideTask}/start`, 'lakeside-consults')).status).toBe(200);
    expect((await call('POST', `/consults/${lakesideTask}/request-info`, 'lakeside-consults', { question: 'Which implant was used?' })).status).toBe(200);
    expect((await call('POST', `/second-opinions/${id}/info`, 'st-olaf', { text: 'A 350 cc textured implant.' })).status).toBe(200);
    // The consent names Lakeside only: Northfield is never admitted, so it cannot act on (or hear of) its Task.
    expect((await call('POST', `/consults/${northfieldTask}/decline`, 'northfield-pathology', { reason: 'No capacity this month' })).status).toBe(404);

    const forTask = (who: string, taskId: string) => received.filter((r) => r.receiver === who && r.answered === 204 && r.body.data.task.endsWith(`/Task/${taskId}`));
    const statuses = (who: string, taskId: string) =>
      forTask(who, taskId)
        .sort((a, b) => Number(a.body.data.taskVersion) - Number(b.body.data.taskVersion))
        .map((r) => `${r.body.data.status}/${r.body.data.businessStatus ?? ''}`);

    // The referrer hears about both Tasks; the last change of each has arrived.
    await waitFor(() => (statuses('/st-olaf', lakesideTask).slice(-4).join() === 'accepted/records-ready,in-progress/records-ready,on-hold/information-requested,in-progress/records-ready' && statuses('/st-olaf', northfieldTask).includes('requested/awaiting-consent') ? true : undefined), 'the referrer notifications');
    const referrerView = statuses('/st-olaf', lakesideTask);
    expect(referrerView.slice(-4)).toEqual(['accepted/records-ready', 'in-progress/records-ready', 'on-hold/information-requested', 'in-progress/records-ready']);
    // The consultant hears about its own Task only; Northfield registered no webhook.
    await waitFor(() => (statuses('/lakeside', lakesideTask).includes('on-hold/information-requested') ? true : undefined), 'the consultant notifications');
    expect(received.filter((r) => r.receiver === '/lakeside').every((r) => r.body.data.task.endsWith(`/Task/${lakesideTask}`))).toBe(true);

    // Versions are distinct per receiver (one notification per change), each signed with that receiver's secret.
    const versions = forTask('/st-olaf', lakesideTask).map((r) => r.body.data.taskVersion);
    expect(new Set(versions).size).toBe(versions.length);
    for (const r of received) {
      const secret = r.receiver === '/st-olaf' ? REFERRER_SECRET : CONSULTANT_SECRET;
      expect(verifyWebhook(secret, r.headers, r.raw)).toBe(true);
      expect(verifyWebhook(secret === REFERRER_SECRET ? CONSULTANT_SECRET : REFERRER_SECRET, r.headers, r.raw)).toBe(false);
      expect(verifyWebhook(secret, r.headers, r.raw.replace('"status"', '"status" '))).toBe(false);
      expect(r.headers.id).toBe(r.body.id);
      // Id-only: nothing but ids, versions, codes and the time.
      expect(Object.keys(r.body).sort()).toEqual(['data', 'id', 'timestamp', 'type']);
      expect(r.body.type).toBe('task.status-changed');
      expect(Object.keys(r.body.data).every((k) => ['task', 'taskVersion', 'status', 'businessStatus', 'serviceRequest'].includes(k))).toBe(true);
      expect(r.body.data.serviceRequest).toBe(`${service.url}/fhir/ServiceRequest/${id}`);
      for (const phi of ['Alex', '999-00-1234', 'Nilsen', 'implant', 'Patient']) expect(r.raw).not.toContain(phi);
    }

    // The first POST was answered 503 and sent again, same notification id, later.
    const failed = received.find((r) => r.answered === 503) as Received;
    expect(failed).toBeDefined();
    const again = await waitFor(() => received.find((r) => r.answered === 204 && r.headers.id === failed.headers.id), 'the retry of the failed notification');
    expect(again.raw).toBe(failed.raw);
    expect(Number(again.headers.timestamp)).toBeGreaterThanOrEqual(Number(failed.headers.timestamp));

    // The notification points at a Task the receiver may read with its own token, at that version or later.
    const latest = forTask('/st-olaf', lakesideTask).at(-1) as Received;
    const task = await call<Task>('GET', `/fhir/Task/${lakesideTask}`, 'st-olaf');
    expect(task.status).toBe(200);
    expect(Number(task.body.meta?.versionId)).toBeGreaterThanOrEqual(Number(latest.body.data.taskVersion));
  });
});
