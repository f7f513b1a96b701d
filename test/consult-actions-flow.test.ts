import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { OperationOutcome, Provenance, ServiceRequest, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allowedActions, type TaskAction } from '../src/consults/task-transitions.ts';
import type { Worklist } from '../src/consults/worklist.ts';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const ROOT = path.join(import.meta.dirname, '..');

/**
 * The consulting clinic's side: the worklist, and accept / decline / start /
 * request-info over HTTP, with the transition table, roles, If-Match and concurrent actions.
 * Every refusal leaves the Task unchanged.
 */
describe('consult actions (flow)', () => {
  let ehr: SandboxEhr;
  /** The ids this sandbox gave a seeded document (`op-note-2024`, ...) and its Binary. */
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;
  const binId = (key: string): string => seededDocument(ehr.seeded, key).binaryId!;
  let service: TestService;
  let store: ResourceStore;
  const validator = createValidator();
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
    const network = JSON.parse(readFileSync(path.join(ROOT, 'examples', 'network.json'), 'utf8')) as { participants: { id: string; fhir?: unknown }[] };
    const stOlaf = network.participants.find((p) => p.id === 'st-olaf');
    if (!stOlaf) throw new Error('example network lacks st-olaf');
    stOlaf.fhir = { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: 5_000 };
    const networkFile = path.join(await mkdtemp(path.join(tmpdir(), 'so-network-')), 'network.json');
    await writeFile(networkFile, JSON.stringify(network));
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, { jobPollingIntervalSeconds: 0.5 });
    store = new ResourceStore(service.database.db, validator);
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  async function call<T>(method: string, pathname: string, participant: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: T; headers: Headers }> {
    const res = await fetch(`${service.url}${pathname}`, {
      method,
      headers: { authorization: `Bearer ${tokens[participant]}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T, headers: res.headers };
  }

  /** A referral to Lakeside (consent names Lakeside only) and, when asked, Northfield; waits for its record set. */
  async function referral(consultants = ['lakeside-consults']): Promise<{ id: string; tasks: Task[] }> {
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants, blinded: false, firstOpinion: { documents: [] } }, ehr.seeded));
    expect(created.status).toBe(201);
    const deadline = Date.now() + 45_000;
    for (;;) {
      const summary = (await call<ReferralSummary>('GET', `/second-opinions/${created.body.id}`, 'st-olaf')).body;
      if (summary.recordSet.status !== 'records-pending') break;
      if (Date.now() > deadline) throw new Error('not assembled in time');
      await new Promise((r) => setTimeout(r, 200));
    }
    return created.body;
  }

  const taskNow = async (id: string) => (await store.read<Task>('Task', id, 'system')) as Task;

  /** Asserts a refusal: status, an OperationOutcome with the text, and the Task unchanged. */
  async function expectRefused(res: { status: number; body: unknown }, status: number, taskBefore: Task, text?: RegExp): Promise<void> {
    expect(res.status).toBe(status);
    const oo = res.body as OperationOutcome;
    expect(oo.resourceType).toBe('OperationOutcome');
    if (text) expect(oo.issue?.[0]?.diagnostics ?? oo.issue?.[0]?.details?.text).toMatch(text);
    expect(await taskNow(taskBefore.id as string)).toEqual(taskBefore);
  }

  it('worklist: the Task whose record set was disclosed, with triage facts, record set and allowed actions; nothing for a clinic still waiting on consent', async () => {
    const { id, tasks } = await referral(['lakeside-consults', 'northfield-pathology']);
    const list = await call<Worklist>('GET', '/consults', 'lakeside-consults');
    expect(list.status).toBe(200);
    const item = list.body.items.find((i) => i.task.id === tasks[0]?.id);
    expect(item).toMatchObject({
      task: { status: 'requested', businessStatus: 'records-ready', overdue: false, url: `${service.config.publicUrl}/fhir/Task/${tasks[0]?.id}` },
      referral: { id, kind: 'revision', priority: 'routine', blinded: false, question: expect.any(String) },
      patient: { reference: `${ehr.baseUrl}/Patient/${ehr.seeded.patientId}` },
      recordSet: expect.stringMatching(new RegExp(`^${service.config.publicUrl}/fhir/Bundle/`)),
      actions: ['receive', 'accept', 'decline'],
    });
    const northfield = await call<Worklist>('GET', '/consults', 'northfield-pathology');
    expect(northfield.body.items.map((i) => i.task.id)).not.toContain(tasks[1]?.id);
    expect((await call<Worklist>('GET', '/consults?overdue=true', 'lakeside-consults')).body.items.map((i) => i.task.id)).not.toContain(tasks[0]?.id);
    expect((await call<Worklist>('GET', '/consults?status=accepted', 'lakeside-consults')).body.items.map((i) => i.task.id)).not.toContain(tasks[0]?.id);
    const bad = await call<OperationOutcome>('GET', '/consults?overdue=maybe&colour=red', 'lakeside-consults');
    expect(bad.status).toBe(400);
    expect(bad.body.issue?.map((i) => i.expression?.[0])).toEqual(['overdue', 'colour']);
    expect((await call('GET', '/consults', 'st-olaf')).status).toBe(403);
  });

  it('accept -> start -> request-info: each a new Task version with a Provenance; both validate', async () => {
    const { tasks } = await referral();
    const taskId = tasks[0]?.id as string;
    const accepted = await call<Task>('POST', `/consults/${taskId}/accept`, 'lakeside-consults');
    expect(accepted.status).toBe(200);
    expect(accepted.body).toMatchObject({ id: taskId, status: 'accepted' });
    expect(accepted.headers.get('etag')).toBe(`W/"${accepted.body.meta?.versionId}"`);
    expect(validator.validate(accepted.body)).toEqual([]);
    const provenance = await store.search<Provenance>({ resourceType: 'Provenance', count: 10, contains: [[{ target: [{ reference: `Task/${taskId}/_history/${accepted.body.meta?.versionId}` }] }]] }, 'system');
    expect(provenance.resources).toHaveLength(1);
    expect(provenance.resources[0]).toMatchObject({ agent: [{ who: { reference: 'Organization/lakeside' } }], activity: { coding: [{ code: 'UPDATE' }] } });
    expect(validator.validate(provenance.resources[0] as Provenance)).toEqual([]);
    expect(await store.read('Provenance', provenance.resources[0]?.id as string, { participantId: 'st-olaf' })).toBeDefined();

    const started = await call<Task>('POST', `/consults/${taskId}/start`, 'lakeside-consults', {});
    expect(started.body.status).toBe('in-progress');
    const asked = await call<Task>('POST', `/consults/${taskId}/request-info`, 'lakeside-consults', { question: 'Which implant was used?', recordTypes: [{ system: 'http://loinc.org', code: '11504-8', display: 'Surgical operation note' }] });
    expect(asked.status).toBe(200);
    expect(asked.body).toMatchObject({ status: 'on-hold', businessStatus: { coding: [{ code: 'information-requested' }], text: 'Which implant was used?' } });
    expect(asked.body.note?.at(-1)?.text).toBe('Information requested: Which implant was used? Records wanted: Surgical operation note.');
    const summary = (await call<ReferralSummary>('GET', `/second-opinions/${asked.body.focus?.reference?.split('/')[1]}`, 'st-olaf')).body;
    expect(summary.consultants[0]?.task).toMatchObject({ status: 'on-hold', businessStatus: 'information-requested', informationRequested: 'Which implant was used?' });
    expect(validator.validate(asked.body)).toEqual([]);
  });

  it('an action not allowed from the current status: 409 naming the status and the allowed actions; the Task is unchanged', async () => {
    const { tasks } = await referral();
    const taskId = tasks[0]?.id as string;
    await call('POST', `/consults/${taskId}/accept`, 'lakeside-consults');
    const before = await taskNow(taskId);
    await expectRefused(await call('POST', `/consults/${taskId}/accept`, 'lakeside-consults'), 409, before, /'accept' is not allowed on a Task that is accepted .*; allowed now: start$/);
    await expectRefused(await call('POST', `/consults/${taskId}/decline`, 'lakeside-consults', { reason: 'too late' }), 409, before, /allowed now: start$/);
    await expectRefused(await call('POST', `/consults/${taskId}/confirm-cancellation`, 'lakeside-consults'), 409, before, /allowed now: start$/);
  });

  it('roles: the referrer gets 403, another clinic 404, nobody changes the Task', async () => {
    const { tasks } = await referral();
    const before = await taskNow(tasks[0]?.id as string);
    await expectRefused(await call('POST', `/consults/${before.id}/accept`, 'st-olaf'), 403, before, /consultant role/);
    await expectRefused(await call('POST', `/consults/${before.id}/accept`, 'northfield-pathology'), 404, before);
    await expectRefused(await call('POST', `/consults/no-such-task/accept`, 'lakeside-consults'), 404, before);
  });

  it('If-Match: a stale version answers 412; concurrent accepts: exactly one wins, the other gets 409 or 412', async () => {
    const { tasks } = await referral();
    const before = await taskNow(tasks[0]?.id as string);
    await expectRefused(await call('POST', `/consults/${before.id}/accept`, 'lakeside-consults', undefined, { 'if-match': 'W/"1"' }), 412, before);
    await expectRefused(await call('POST', `/consults/${before.id}/accept`, 'lakeside-consults', undefined, { 'if-match': 'yesterday' }), 400, before);

    const results = await Promise.all([1, 2, 3].map(() => call<Task>('POST', `/consults/${before.id}/accept`, 'lakeside-consults', undefined, { 'if-match': `W/"${before.meta?.versionId}"` })));
    for (const r of results) expect([200, 409, 412]).toContain(r.status);
    for (const r of results.filter((x) => x.status !== 200)) expect((r.body as unknown as OperationOutcome).resourceType).toBe('OperationOutcome');
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    const after = await taskNow(before.id as string);
    expect(after.status).toBe('accepted');
    expect(Number(after.meta?.versionId)).toBe(Number(before.meta?.versionId) + 1);
  });

  it('decline needs a reason (400 naming it); declining the only Task revokes the referral', async () => {
    const { id, tasks } = await referral();
    const before = await taskNow(tasks[0]?.id as string);
    const missing = await call<OperationOutcome>('POST', `/consults/${before.id}/decline`, 'lakeside-consults', {});
    await expectRefused(missing, 400, before);
    expect(missing.body.issue?.[0]).toMatchObject({ code: 'required', expression: ['reason'] });
    const extra = await call<OperationOutcome>('POST', `/consults/${before.id}/decline`, 'lakeside-consults', { reason: 'x', mood: 'bad' });
    expect(extra.body.issue?.[0]).toMatchObject({ expression: ['mood'] });
    const text = await fetch(`${service.url}/consults/${before.id}/decline`, { method: 'POST', headers: { authorization: `Bearer ${tokens['lakeside-consults']}`, 'content-type': 'text/plain' }, body: 'no' });
    expect(text.status).toBe(415);

    const declined = await call<Task>('POST', `/consults/${before.id}/decline`, 'lakeside-consults', { reason: 'Outside our specialty' });
    expect(declined.body).toMatchObject({ status: 'rejected', statusReason: { text: 'Outside our specialty' } });
    expect(validator.validate(declined.body)).toEqual([]);
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('revoked');
  });

  it('accepting before the consent covers the clinic: 404 (the clinic does not see the Task), the Task unchanged', async () => {
    const { tasks } = await referral(['lakeside-consults', 'northfield-pathology']);
    // Northfield is not named in the Consent: its Task waits (awaiting-consent) with no record set.
    const before = await taskNow(tasks[1]?.id as string);
    expect(before.businessStatus?.coding?.[0]?.code).toBe('awaiting-consent');
    await expectRefused(await call('POST', `/consults/${before.id}/accept`, 'northfield-pathology'), 404, before, /Not found/);
  });

  it('request-info -> the referrer answers with text and a document: Task in-progress with the answer, the records re-assembled into a new version', async () => {
    const { id, tasks } = await referral();
    const taskId = tasks[0]?.id as string;
    await call('POST', `/consults/${taskId}/accept`, 'lakeside-consults');
    await call('POST', `/consults/${taskId}/start`, 'lakeside-consults');
    const firstBundle = (await taskNow(taskId)).input?.[0]?.valueReference?.reference;
    const notWaiting = await call<OperationOutcome>('POST', `/second-opinions/${id}/info`, 'st-olaf', { text: 'unasked' });
    expect(notWaiting.status).toBe(409);
    await call('POST', `/consults/${taskId}/request-info`, 'lakeside-consults', { question: 'Please send the H&P.' });

    const empty = await call<OperationOutcome>('POST', `/second-opinions/${id}/info`, 'st-olaf', {});
    expect(empty.status).toBe(400);
    expect((await call('POST', `/second-opinions/${id}/info`, 'lakeside-consults', { text: 'x' })).status).toBe(403);
    const answered = await call<{ id: string; recordsRevision: number; added: unknown[]; tasks: { id: string; status: string; businessStatus: string }[] }>('POST', `/second-opinions/${id}/info`, 'st-olaf', {
      text: 'H&P attached.',
      documents: [{ reference: `DocumentReference/${docId('hp-2024')}`, display: 'History and physical' }],
    });
    expect(answered.status).toBe(200);
    expect(answered.body).toMatchObject({ id, recordsRevision: 1, added: [{ reference: `DocumentReference/${docId('hp-2024')}` }], tasks: [{ id: taskId, status: 'in-progress', businessStatus: 'records-ready' }] });
    const resumed = await taskNow(taskId);
    expect(resumed.note?.at(-1)?.text).toBe('Information provided: H&P attached. — Documents added: History and physical');
    expect(validator.validate(resumed)).toEqual([]);
    // The re-assembly moves the Task's input to the new record set and leaves its status alone.
    const deadline = Date.now() + 45_000;
    let current = resumed;
    while (current.input?.[0]?.valueReference?.reference === firstBundle && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      current = await taskNow(taskId);
    }
    expect(current.input?.[0]?.valueReference?.reference).not.toBe(firstBundle);
    expect(current).toMatchObject({ status: 'in-progress', businessStatus: { coding: [{ code: 'records-ready' }] } });
  });

  it('cancel: a Task not started is cancelled at once, one in progress is asked; confirming ends the referral (revoked)', async () => {
    const { id, tasks } = await referral(['lakeside-consults', 'northfield-pathology']);
    const [lakeside, northfield] = tasks.map((t) => t.id as string) as [string, string];
    await call('POST', `/consults/${lakeside}/accept`, 'lakeside-consults');
    await call('POST', `/consults/${lakeside}/start`, 'lakeside-consults');
    expect((await call('POST', `/second-opinions/${id}/cancel`, 'lakeside-consults', { reason: 'x' })).status).toBe(403);
    const noReason = await call<OperationOutcome>('POST', `/second-opinions/${id}/cancel`, 'st-olaf', {});
    expect(noReason.body.issue?.[0]).toMatchObject({ code: 'required', expression: ['reason'] });

    const cancelled = await call<{ status: string; tasks: { id: string; status: string; businessStatus?: string }[] }>('POST', `/second-opinions/${id}/cancel`, 'st-olaf', { reason: 'Patient chose another provider' });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'active' });
    expect(cancelled.body.tasks).toEqual([
      { id: lakeside, status: 'in-progress', businessStatus: 'cancellation-requested' },
      { id: northfield, status: 'cancelled', businessStatus: 'awaiting-consent' },
    ]);
    expect((await taskNow(northfield)).statusReason).toEqual({ text: 'Patient chose another provider' });
    expect(validator.validate(await taskNow(northfield))).toEqual([]);
    const list = await call<Worklist>('GET', '/consults', 'lakeside-consults');
    expect(list.body.items.find((i) => i.task.id === lakeside)?.actions).toEqual(['request-info', 'complete', 'confirm-cancellation']);

    const confirmed = await call<Task>('POST', `/consults/${lakeside}/confirm-cancellation`, 'lakeside-consults');
    expect(confirmed.body).toMatchObject({ status: 'cancelled', statusReason: { text: "Cancelled at the referrer's request" } });
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('revoked');
    const again = await call<OperationOutcome>('POST', `/second-opinions/${id}/cancel`, 'st-olaf', { reason: 'again' });
    expect(again.status).toBe(409);
  });

  it('every consultant action from every status the table does not allow it from: 409 with the allowed actions, the Task unchanged; the referrer may not act, the consultant may not answer for the referrer', async () => {
    const opinion = { diagnosisAgreement: 'agree', planAgreement: 'agree', diagnosis: [], summary: 'Agree.', recommendations: [{ option: 'As planned', preferred: true }], missingInformation: [], followUp: 'None.' };
    const bodies: Record<string, unknown> = { accept: undefined, decline: { reason: 'No capacity' }, start: undefined, 'request-info': { question: 'Which implant?' }, 'confirm-cancellation': undefined, opinion };
    const tableAction = (path: string) => (path === 'opinion' ? 'complete' : path) as TaskAction;
    const { id, tasks } = await referral();
    const taskId = tasks[0]?.id as string;

    const refusedFrom = async (status: Task['status']) => {
      const before = await taskNow(taskId);
      expect(before.status).toBe(status);
      const allowed: TaskAction[] = allowedActions(status, 'consultant').filter((a) => a !== 'confirm-cancellation');
      for (const [path, body] of Object.entries(bodies)) {
        if (allowed.includes(tableAction(path))) continue;
        const res = await call('POST', `/consults/${taskId}/${path}`, 'lakeside-consults', body);
        await expectRefused(res, 409, before, path === 'confirm-cancellation' && allowedActions(status, 'consultant').includes('confirm-cancellation') ? /has not asked to cancel/ : new RegExp(`allowed now: ${allowedActions(status, 'consultant').join(', ') || 'none'}$`));
        expect((res.body as OperationOutcome).issue?.[0]?.expression).toEqual(['Task.status']);
      }
      // The referrer's token never acts on a consult (403); the consultant never answers for the referrer (403).
      await expectRefused(await call('POST', `/consults/${taskId}/start`, 'st-olaf'), 403, before, /consultant role/);
      await expectRefused(await call('POST', `/second-opinions/${id}/info`, 'lakeside-consults', { text: 'x' }), 403, before);
      await expectRefused(await call('POST', `/second-opinions/${id}/cancel`, 'lakeside-consults', { reason: 'x' }), 403, before);
    };

    await refusedFrom('requested');
    expect((await call('POST', `/consults/${taskId}/accept`, 'lakeside-consults')).status).toBe(200);
    await refusedFrom('accepted');
    expect((await call('POST', `/consults/${taskId}/start`, 'lakeside-consults')).status).toBe(200);
    await refusedFrom('in-progress');
    expect((await call('POST', `/consults/${taskId}/request-info`, 'lakeside-consults', bodies['request-info'])).status).toBe(200);
    await refusedFrom('on-hold');
    expect((await call('POST', `/second-opinions/${id}/info`, 'st-olaf', { text: 'A 350 cc implant.' })).status).toBe(200);
    expect((await call('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', opinion)).status).toBe(200);
    // The post-back job writes the Task once more (business status); wait for it, so "unchanged" is about the refusals.
    const deadline = Date.now() + 45_000;
    while ((await taskNow(taskId)).businessStatus?.coding?.[0]?.code !== 'opinion-delivered') {
      if (Date.now() > deadline) throw new Error('the opinion was not delivered in time');
      await new Promise((r) => setTimeout(r, 200));
    }
    await refusedFrom('completed');
    // A finished referral: nothing left to cancel or answer.
    const done = await taskNow(taskId);
    await expectRefused(await call('POST', `/second-opinions/${id}/cancel`, 'st-olaf', { reason: 'changed our mind' }), 409, done);
    await expectRefused(await call('POST', `/second-opinions/${id}/info`, 'st-olaf', { text: 'late' }), 409, done);
  });
});
