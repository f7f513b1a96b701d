import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseSearchRequest } from '@medplum/core';
import type { DocumentReference, OperationOutcome, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeliveryListItem } from '../src/delivery/list-deliveries.ts';
import { SYSTEM } from '../src/fhir/constants.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE, QUEUE_POLICIES } from '../src/jobs/queues.ts';
import type { TaskNotification } from '../src/notify/task-notifications.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION as OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/** What a scope-enforcing EHR (Medplum) answers a post-back its token does not cover. */
const FORBIDDEN: OperationOutcome = {
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code: 'forbidden', details: { text: 'Forbidden: missing system/DocumentReference.c' }, diagnostics: 'scope check failed', expression: ['DocumentReference'] }],
};

/**
 * Permanent and transient failures of outbound calls against the sandbox EHR
 * over real HTTP, on the store the run uses (PGlite, or PostgreSQL with DATABASE_URL): a refusal
 * stops at once with the EHR's OperationOutcome shown to the referrer and the operator; a busy
 * EHR is retried, not before its Retry-After.
 */
describe('permanent vs transient outbound failures (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let receiver: Server;
  const notifications: TaskNotification[] = [];
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        notifications.push(JSON.parse(raw) as TaskNotification);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 10_000 } });
    const networkFile = await writeSandboxNetwork(ehr, {
      timeoutMs: 2_000,
      edit: (byId) => {
        byId('st-olaf').notify = { url: `${hook}/st-olaf`, secret: 'st-olaf-webhook-secret-0123456789abcdef' };
      },
    });
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, {
      // Short delays; Retry-After is capped at retryDelayMaxSeconds, so that cap leaves room for the 2 s asked below.
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 5, ...(q.name === QUEUE.deliverOpinion ? { retryLimit: 3 } : {}) })),
      jobPollingIntervalSeconds: 0.5,
    });
    for (const p of ['st-olaf', 'lakeside-consults', 'audit-office']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterEach(() => ehr?.faults.clear());
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
    await new Promise((r) => receiver?.close(r));
  });

  const call = callerFor(() => service.url, tokens);
  const summaryOf = async (id: string) => (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;

  /** A referral, assembled, accepted and started by Lakeside. */
  async function inProgress(): Promise<{ id: string; taskId: string }> {
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded));
    expect(created.status).toBe(201);
    const id = created.body.id;
    const taskId = created.body.tasks[0]?.id as string;
    await until(async () => ((await summaryOf(id)).recordSet.status === 'records-ready' ? true : undefined), 'records');
    expect((await call('POST', `/consults/${taskId}/accept`, 'lakeside-consults')).status).toBe(200);
    expect((await call('POST', `/consults/${taskId}/start`, 'lakeside-consults')).status).toBe(200);
    return { id, taskId };
  }

  async function submit(taskId: string): Promise<string> {
    const res = await call<Task>('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', OPINION);
    expect(res.status).toBe(200);
    return (res.body.output?.[0]?.valueReference?.reference as string).split('/')[1] as string;
  }

  const delivery = async (id: string, noteId: string) => (await summaryOf(id)).consultants[0]?.delivery?.id === noteId ? (await summaryOf(id)).consultants[0]?.delivery : undefined;
  const notesOnEhr = async (noteId: string) => (await ehr.repo.searchResources(parseSearchRequest(`DocumentReference?identifier=${encodeURIComponent(`${SYSTEM.consultNoteId}|${noteId}`)}`))) as DocumentReference[];
  const postBacks = (since: number) => ehr.requests.slice(since).filter((r) => r.method === 'POST' && r.path.split('?')[0] === '/fhir/R4/DocumentReference');
  const jobRows = async (name: string, where: string) =>
    (await service.database.db.execute(sql.raw(`SELECT state, retry_count FROM ${service.jobs.schema}.job WHERE name = '${name}' AND ${where}`))) as unknown as { rows: { state: string; retry_count: number }[] };

  it('a 403 with an OperationOutcome on the post-back: one attempt, failed, the EHR\'s outcome in the summary and the admin list, delivery-failed notified; a re-drive after the fix delivers one note', async () => {
    const { id, taskId } = await inProgress();
    const fault = ehr.faults.add({ path: '/fhir/R4/DocumentReference', method: 'POST', status: 403, body: FORBIDDEN });
    const since = ehr.requests.length;
    const noteId = await submit(taskId);

    const failed = await until(async () => ((await delivery(id, noteId))?.status === 'failed' ? delivery(id, noteId) : undefined), 'the failed delivery');
    const lastError = 'OutboundHttpError: POST ' + `${ehr.baseUrl}/DocumentReference` + ' HTTP 403 (permanent, not retried); the EHR said: forbidden: Forbidden: missing system/DocumentReference.c / scope check failed';
    expect(failed).toEqual({ id: noteId, status: 'failed', attempts: 1, lastError, lastOutcome: FORBIDDEN });
    // Exactly one attempt: one POST reached the EHR, and the job is done, with no retry scheduled.
    expect(fault.hits).toBe(1);
    expect(postBacks(since)).toHaveLength(1);
    expect((await jobRows(QUEUE.deliverOpinion, `singleton_key = '${noteId}'`)).rows).toEqual([{ state: 'completed', retry_count: 0 }]);

    // The Task (which the consultant reads too) names the call, the status and the issue code; not the EHR's text.
    const summary = await summaryOf(id);
    expect(summary.consultants[0]?.task).toMatchObject({
      status: 'completed',
      businessStatus: 'delivery-failed',
      businessStatusReason: `POST ${ehr.baseUrl}/DocumentReference HTTP 403 (forbidden): permanent, not retried`,
    });
    await until(() => (notifications.some((n) => n.data.task.endsWith(`Task/${taskId}`) && n.data.businessStatus === 'delivery-failed') ? true : undefined), 'the delivery-failed webhook');

    // The operator's list: the same error and outcome; other callers are refused.
    const list = await call<{ items: DeliveryListItem[] }>('GET', '/admin/deliveries?status=failed', 'audit-office');
    expect(list.status).toBe(200);
    expect(list.body.items.find((d) => d.id === noteId)).toEqual({
      id: noteId,
      kind: 'opinion',
      taskId,
      serviceRequestId: id,
      participant: 'st-olaf',
      status: 'failed',
      attempts: 1,
      lastError,
      lastOutcome: FORBIDDEN,
      updatedAt: expect.any(String),
    });
    expect((await call('GET', '/admin/deliveries', 'st-olaf')).status).toBe(403);
    const bad = await call<OperationOutcome>('GET', '/admin/deliveries?status=lost', 'audit-office');
    expect(bad).toMatchObject({ status: 400, body: { issue: [{ code: 'value', expression: ['status'] }] } });

    // The EHR administrator grants the scope; the operator re-drives: one note, delivered.
    ehr.faults.remove(fault);
    const redrive = await call<{ status: string; lastOutcome?: OperationOutcome }>('POST', `/admin/deliveries/${noteId}/retry`, 'audit-office');
    expect(redrive).toMatchObject({ status: 202, body: { status: 'pending', lastOutcome: FORBIDDEN } });
    const delivered = await until(async () => ((await delivery(id, noteId))?.status === 'delivered' ? delivery(id, noteId) : undefined), 'the re-driven delivery');
    expect(delivered).toEqual({ id: noteId, status: 'delivered', attempts: 2, remoteDocument: expect.stringContaining(`${ehr.baseUrl}/DocumentReference/`), deliveredAt: expect.any(String) });
    expect(await notesOnEhr(noteId)).toHaveLength(1);
    expect(postBacks(since)).toHaveLength(2);
    expect((await summaryOf(id)).consultants[0]?.task.businessStatus).toBe('opinion-delivered');
  });

  it('a 429 with Retry-After: 2 is retried not before 2 s, then delivered', async () => {
    const { id, taskId } = await inProgress();
    ehr.faults.add({ path: '/fhir/R4/DocumentReference', method: 'POST', status: 429, headers: { 'retry-after': '2' }, times: 1 });
    const since = ehr.requests.length;
    const noteId = await submit(taskId);
    const delivered = await until(async () => ((await delivery(id, noteId))?.status === 'delivered' ? delivery(id, noteId) : undefined), 'the delivery');
    expect(delivered).toMatchObject({ status: 'delivered', attempts: 2 });
    const [throttled, accepted] = postBacks(since);
    expect(throttled?.status).toBe(429);
    expect(accepted?.status).toBe(201);
    expect((accepted?.receivedAt ?? 0) - (throttled?.receivedAt ?? 0)).toBeGreaterThanOrEqual(2_000);
    expect(await notesOnEhr(noteId)).toHaveLength(1);
  });

  it('a 503 twice, then the EHR is back: delivered once, on the third attempt', async () => {
    const { id, taskId } = await inProgress();
    const fault = ehr.faults.add({ path: '/fhir/R4/DocumentReference', method: 'POST', status: 503, times: 2 });
    const since = ehr.requests.length;
    const noteId = await submit(taskId);
    const delivered = await until(async () => ((await delivery(id, noteId))?.status === 'delivered' ? delivery(id, noteId) : undefined), 'the delivery');
    expect(delivered).toMatchObject({ status: 'delivered', attempts: 3 });
    expect(delivered).not.toHaveProperty('lastError');
    expect(fault.hits).toBe(2);
    expect(postBacks(since).map((r) => r.status)).toEqual([503, 503, 201]);
    expect(await notesOnEhr(noteId)).toHaveLength(1);
  });

  it('a record-assembly read answered 403 ends the assembly at once: records-failed, the EHR\'s outcome in the referrer\'s summary', async () => {
    const fault = ehr.faults.add({ path: /^\/fhir\/R4\/DocumentReference/, method: 'GET', status: 403, body: FORBIDDEN });
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded));
    expect(created.status).toBe(201);
    const id = created.body.id;
    const recordSet = await until(async () => ((await summaryOf(id)).recordSet.status === 'records-failed' ? (await summaryOf(id)).recordSet : undefined), 'the failed assembly');
    expect(recordSet).toMatchObject({
      status: 'records-failed',
      attempts: 1,
      failureReason: expect.stringMatching(/^The referring EHR refused a read: OutboundHttpError: GET .*\/fhir\/R4\/DocumentReference\S* HTTP 403 \(permanent, not retried\); the EHR said: forbidden: Forbidden: missing system\/DocumentReference\.c \/ scope check failed$/),
      failureOutcome: FORBIDDEN,
    });
    expect(fault.hits).toBe(1);
    expect((await jobRows(QUEUE.assembleRecordSet, `data->>'serviceRequestId' = '${id}'`)).rows).toEqual([{ state: 'completed', retry_count: 0 }]);
    const task = (await summaryOf(id)).consultants[0]?.task;
    expect(task?.businessStatus).toBe('records-failed');
    expect(task?.businessStatusReason).toMatch(/^The referring EHR refused a read: GET .*\/fhir\/R4\/DocumentReference\S* HTTP 403 \(forbidden\): permanent, not retried$/);
    // The Task could never get its record set: failed, the reason in plain words (no URL, no EHR text).
    expect(task?.status).toBe('failed');
    expect(task?.statusReason).toBe('The record set could not be assembled: the referring EHR refused to share the records (HTTP 403)');
    expect((await summaryOf(id)).status).toBe('revoked');
  });
});
