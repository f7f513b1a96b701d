import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseSearchRequest } from '@medplum/core';
import type { AuditEvent, Bundle, Communication, OperationOutcome, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Caller } from '../src/access/caller.ts';
import type { Worklist } from '../src/consults/worklist.ts';
import { PROFILE, SYSTEM } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { askFollowUpQuestion } from '../src/followups/ask-question.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE, QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { loadNetwork } from '../src/network/network.ts';
import type { Comparison } from '../src/retrieval/comparison.ts';
import type { DeliveryListItem } from '../src/delivery/list-deliveries.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { followUps, opinionDeliveries } from '../src/store/schema.ts';
import { clientIdOf } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION as OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const ROOT = path.join(import.meta.dirname, '..');

/**
 * Follow-up questions after the opinion over real HTTP, with the sandbox EHR: the
 * referrer asks once the opinion is delivered, within the limit and the window; the clinic sees
 * the open questions in its worklist and answers; the answer reaches the referring EHR exactly
 * once, whatever fails or repeats, and the disclosure is audited.
 */
describe('follow-up questions (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let store: ResourceStore;
  let networkFile: string;
  const validator = createValidator();
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0 });
    const network = JSON.parse(readFileSync(path.join(ROOT, 'examples', 'network.json'), 'utf8')) as { participants: { id: string; fhir?: unknown }[] };
    const stOlaf = network.participants.find((p) => p.id === 'st-olaf');
    if (!stOlaf) throw new Error('example network lacks st-olaf');
    stOlaf.fhir = { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: 2_000 };
    networkFile = path.join(await mkdtemp(path.join(tmpdir(), 'so-network-')), 'network.json');
    await writeFile(networkFile, JSON.stringify(network));
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 1 })),
      jobPollingIntervalSeconds: 0.5,
    });
    store = new ResourceStore(service.database.db, validator);
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology', 'audit-office']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterEach(() => ehr?.faults.clear());
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  /** A referral to Lakeside, its Task in progress. */
  async function inProgress(): Promise<{ id: string; taskId: string }> {
    const request = makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded);
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', request);
    expect(created.status).toBe(201);
    const { id } = created.body;
    const taskId = created.body.tasks[0]?.id as string;
    await until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');
    expect((await call('POST', `/consults/${taskId}/accept`, 'lakeside-consults')).status).toBe(200);
    expect((await call('POST', `/consults/${taskId}/start`, 'lakeside-consults')).status).toBe(200);
    return { id, taskId };
  }

  /** The opinion submitted and delivered to the sandbox EHR. */
  async function opinionDelivered(taskId: string): Promise<void> {
    expect((await call('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', OPINION)).status).toBe(200);
    await until(async () => ((await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.taskId, taskId)))[0]?.status === 'delivered' ? true : undefined), 'the opinion delivered');
  }

  const ask = (id: string, text: string, participant = 'lakeside-consults') => call<{ id: string; due: string; asked: number; limit: number; communication: Communication }>('POST', `/second-opinions/${id}/consultants/${participant}/questions`, 'st-olaf', { text });
  const rowOf = async (questionId: string) => (await service.database.db.select().from(followUps).where(eq(followUps.id, questionId)))[0];
  const onEhr = async (identifier: string) => (await ehr.repo.searchResources(parseSearchRequest(`Communication?identifier=${encodeURIComponent(`${SYSTEM.followUpId}|${identifier}`)}`))) as Communication[];
  /** Valid against R4 and the follow-up profile (what the EHR stores carries no meta.profile: checked against it all the same). */
  const conforms = (c: Communication) => validator.validate({ ...c, meta: { profile: [PROFILE.followUpCommunication] } });

  it('refuses a question before the opinion is delivered, allows three, refuses the fourth naming the limit; the clinic answers once and the EHR gets it once', async () => {
    const { id, taskId } = await inProgress();
    const early = await call<OperationOutcome>('POST', `/second-opinions/${id}/consultants/lakeside-consults/questions`, 'st-olaf', { text: 'Too early?' });
    expect(early.status).toBe(409);
    expect(early.body.issue?.[0]).toMatchObject({ code: 'conflict', expression: ['participant'], details: { text: expect.stringContaining('has not given its opinion yet') } });
    // A participant that is no consultant of the referral: 404, like an unknown referral.
    expect((await ask(id, 'Anyone?', 'northfield-pathology')).status).toBe(404);
    expect((await call<OperationOutcome>('POST', `/second-opinions/${id}/consultants/lakeside-consults/questions`, 'st-olaf', { text: '' })).body.issue?.[0]?.expression).toEqual(['text']);

    await opinionDelivered(taskId);
    const asked = [];
    for (const text of ['Would an MRI change your view?', 'How long can revision safely wait?', 'Is a bone scan enough to rule out infection?']) {
      const res = await ask(id, text);
      expect(res.status).toBe(201);
      expect(res.headers.get('location')).toBe(`${service.config.publicUrl}/fhir/Communication/${res.body.id}`);
      expect(validator.validate(res.body.communication)).toEqual([]);
      expect(res.body.communication).toMatchObject({
        basedOn: [{ reference: `Task/${taskId}` }],
        recipient: [{ reference: 'Organization/lakeside' }],
        payload: [{ contentString: text }],
        extension: [{ url: expect.stringContaining('follow-up-due'), valueDateTime: res.body.due }],
      });
      asked.push(res.body);
    }
    expect(asked.map((a) => a.asked)).toEqual([1, 2, 3]);
    const fourth = await call<OperationOutcome>('POST', `/second-opinions/${id}/consultants/lakeside-consults/questions`, 'st-olaf', { text: 'One more?' });
    expect(fourth.status).toBe(409);
    expect(fourth.body.issue?.[0]).toMatchObject({ code: 'conflict', expression: ['participant'] });
    expect(fourth.body.issue?.[0]?.details?.text).toMatch(/At most 3 follow-up questions .*within 30 days/);

    // Readable by the referrer and the clinic asked, no one else.
    const q1 = asked[0]!.id;
    expect((await call('GET', `/fhir/Communication/${q1}`, 'st-olaf')).status).toBe(200);
    expect((await call('GET', `/fhir/Communication/${q1}`, 'lakeside-consults')).status).toBe(200);
    expect((await call('GET', `/fhir/Communication/${q1}`, 'northfield-pathology')).status).toBe(404);

    // Searchable by the Task they are based on, by the same two only.
    const byTask = await call<Bundle>('GET', `/fhir/Communication?based-on=Task/${taskId}`, 'lakeside-consults');
    expect(byTask.body.entry?.map((e) => e.resource?.id).sort()).toEqual(asked.map((a) => a.id).sort());
    expect((await call<Bundle>('GET', `/fhir/Communication?based-on=Task/${taskId}`, 'northfield-pathology')).body.entry ?? []).toEqual([]);

    // The clinic's worklist: the three open questions with their due dates, and the action to answer.
    const worklist = await call<Worklist>('GET', '/consults', 'lakeside-consults');
    const item = worklist.body.items.find((i) => i.task.id === taskId);
    expect(item?.followUps.map((f) => ({ question: f.question, due: f.due, text: f.text }))).toEqual(asked.map((a) => ({ question: a.id, due: a.due, text: a.communication.payload?.[0]?.contentString })));
    expect(item?.actions).toContain('answers');

    // Someone else's Task: 404; an answer: 201; the same question again: 409.
    expect((await call('POST', `/consults/${taskId}/answers`, 'northfield-pathology', { question: q1, text: 'Not mine' })).status).toBe(404);
    const answer = await call<{ id: string; communication: Communication }>('POST', `/consults/${taskId}/answers`, 'lakeside-consults', { question: q1, text: 'An MRI would not change it; the bone scan would.' });
    expect(answer.status).toBe(201);
    expect(validator.validate(answer.body.communication)).toEqual([]);
    expect(answer.body.communication).toMatchObject({ inResponseTo: [{ reference: `Communication/${q1}` }], sender: { reference: 'Organization/lakeside' } });
    const twice = await call<OperationOutcome>('POST', `/consults/${taskId}/answers`, 'lakeside-consults', { question: q1, text: 'Again' });
    expect(twice.status).toBe(409);
    expect(twice.body.issue?.[0]).toMatchObject({ code: 'conflict', expression: ['question'] });
    expect((await call<Worklist>('GET', '/consults', 'lakeside-consults')).body.items.find((i) => i.task.id === taskId)?.followUps.map((f) => f.question)).toEqual([asked[1]!.id, asked[2]!.id]);

    // Posted to the EHR once: the question, then the answer in response to it, about the consult note there.
    const delivered = await until(async () => ((await rowOf(q1))?.deliveryStatus === 'delivered' ? rowOf(q1) : undefined), 'the answer delivered');
    expect(delivered).toMatchObject({ attempts: 1, lastError: null });
    const [remoteQuestion] = await onEhr(q1);
    const remoteAnswers = await onEhr(answer.body.id);
    expect(remoteAnswers).toHaveLength(1);
    const [opinionRow] = await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.taskId, taskId));
    expect(remoteAnswers[0]).toMatchObject({
      subject: { reference: `Patient/${ehr.seeded.patientId}` },
      inResponseTo: [{ reference: `Communication/${remoteQuestion?.id}` }],
      about: [{ reference: opinionRow?.remoteDocument?.slice(ehr.baseUrl.length + 1) }],
      basedOn: [{ type: 'Task', identifier: { system: SYSTEM.taskId, value: taskId } }],
      payload: [{ contentString: 'An MRI would not change it; the bone scan would.' }],
    });
    expect(delivered?.remoteAnswer).toBe(`${ehr.baseUrl}/Communication/${remoteAnswers[0]?.id}`);
    expect(conforms(remoteQuestion as Communication)).toEqual([]);
    expect(conforms(remoteAnswers[0] as Communication)).toEqual([]);

    // A replayed job after the row was reset (a second delivery attempt) finds what the first created.
    await service.database.db.update(followUps).set({ deliveryStatus: 'pending' }).where(eq(followUps.id, q1));
    await service.jobs.enqueue(service.database.db, QUEUE.deliverFollowUpAnswer, { followUpId: q1 }, { singletonKey: q1 });
    await until(async () => ((await rowOf(q1))?.attempts === 2 && (await rowOf(q1))?.deliveryStatus === 'delivered' ? true : undefined), 'the replayed delivery');
    expect(await onEhr(q1)).toHaveLength(1);
    expect(await onEhr(answer.body.id)).toHaveLength(1);

    // The disclosure is audited.
    const audits = await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 10, contains: [[{ entity: [{ what: { reference: `Communication/${answer.body.id}` } }] }], [{ subtype: [{ code: 'disclose' }] }]] }, 'system');
    expect(audits.resources.map((a) => a.outcome)).toEqual(['0', '0']);

    // The referrer's summary and the comparison show the thread.
    const summary = (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
    expect(summary.consultants[0]?.followUps).toHaveLength(3);
    expect(summary.consultants[0]?.followUps[0]).toMatchObject({
      question: q1,
      text: 'Would an MRI change your view?',
      askedAt: expect.any(String),
      answer: { id: answer.body.id, text: 'An MRI would not change it; the bone scan would.', answeredAt: expect.any(String) },
      delivery: { status: 'delivered', remoteAnswer: delivered?.remoteAnswer },
    });
    expect(summary.consultants[0]?.followUps[1]).not.toHaveProperty('answer');
    const comparison = (await call<Comparison>('GET', `/second-opinions/${id}/comparison`, 'st-olaf')).body;
    expect(comparison.opinions[0]?.followUps?.[0]).toMatchObject({ question: q1, answer: { text: 'An MRI would not change it; the bone scan would.' }, delivery: { status: 'delivered' } });
    const html = await (await fetch(`${service.url}/second-opinions/${id}/comparison`, { headers: { authorization: `Bearer ${tokens['st-olaf']}`, accept: 'text/html' } })).text();
    expect(html).toContain('Follow-up questions');
    expect(html).toContain('An MRI would not change it; the bone scan would.');
  });

  it('the EHR answers 503, then accepts: the answer is delivered once; outside the window a question is refused naming it', async () => {
    const { id, taskId } = await inProgress();
    await opinionDelivered(taskId);
    const question = await ask(id, 'What about physiotherapy first?');
    expect(question.status).toBe(201);
    ehr.faults.add({ path: /^\/fhir\/R4\/Communication(\?|$)/, method: 'POST', status: 503, times: 1 });
    const answer = await call<{ id: string }>('POST', `/consults/${taskId}/answers`, 'lakeside-consults', { question: question.body.id, text: 'Yes, six weeks.' });
    expect(answer.status).toBe(201);
    const delivered = await until(async () => ((await rowOf(question.body.id))?.deliveryStatus === 'delivered' ? rowOf(question.body.id) : undefined), 'the answer delivered after a 503');
    expect(delivered?.attempts).toBe(2);
    expect(await onEhr(question.body.id)).toHaveLength(1);
    expect(await onEhr(answer.body.id)).toHaveLength(1);
    const audits = await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 10, contains: [[{ entity: [{ what: { reference: `Communication/${answer.body.id}` } }] }], [{ subtype: [{ code: 'disclose' }] }]] }, 'system');
    expect(audits.resources.map((a) => a.outcome).sort()).toEqual(['0', '8']);

    // 31 days after the opinion (the clock injected into the use case): refused, naming the window and the limit.
    const caller: Caller = { clientId: clientIdOf('st-olaf'), participantId: 'st-olaf', roles: ['referrer'], scopes: ['system/*.*'], referrals: { referrer: 'st-olaf' } };
    const later = new Date(Date.now() + 31 * 86_400_000);
    const deps = { store, network: await loadNetwork(networkFile), followUps: { limit: 3, windowDays: 30 }, now: () => later };
    const refused = await askFollowUpQuestion(id, 'lakeside-consults', { text: 'Still there?' }, caller, deps).then(
      () => undefined,
      (err: { status?: number; outcome?: OperationOutcome }) => err,
    );
    expect(refused?.status).toBe(422);
    expect(refused?.outcome?.issue?.[0]).toMatchObject({ code: 'business-rule', expression: ['participant'] });
    expect(refused?.outcome?.issue?.[0]?.details?.text).toMatch(/within 30 days of the opinion \(at most 3\)/);
    // A clinic's own limit from the network file (`followUpLimit`) replaces FOLLOW_UP_LIMIT: one question, already asked.
    const limitedNetwork = { get: (pid: string) => (pid === 'lakeside-consults' ? { ...deps.network.get(pid)!, followUpLimit: 1 } : deps.network.get(pid)) };
    const overLimit = await askFollowUpQuestion(id, 'lakeside-consults', { text: 'Still there?' }, caller, { ...deps, network: limitedNetwork, now: () => new Date() }).then(
      () => undefined,
      (err: { status?: number; outcome?: OperationOutcome }) => err,
    );
    expect(overLimit?.status).toBe(409);
    expect(overLimit?.outcome?.issue?.[0]?.details?.text).toMatch(/^At most 1 follow-up questions/);
    // Within the window the same use case takes it.
    expect((await askFollowUpQuestion(id, 'lakeside-consults', { text: 'Still there?' }, caller, { ...deps, now: () => new Date() })).asked).toBe(2);

    // Once the patient withdraws consent to disclose to Lakeside, no more questions go to it.
    expect((await call('POST', `/second-opinions/${id}/consent-withdrawal`, 'st-olaf', { consultants: ['lakeside-consults'], reason: 'The patient withdrew consent' })).status).toBe(200);
    const withdrawn = await call<OperationOutcome>('POST', `/second-opinions/${id}/consultants/lakeside-consults/questions`, 'st-olaf', { text: 'One more?' });
    expect(withdrawn.status).toBe(409);
    expect(withdrawn.body.issue?.[0]).toMatchObject({ code: 'conflict', expression: ['participant'], details: { text: expect.stringContaining('withdrew consent') } });
  });

  it('before its opinion reaches the EHR no question is taken; an EHR that refuses the answer (403) fails its post-back at once; the admin list shows it, and the re-drive delivers it once', async () => {
    const { id, taskId } = await inProgress();
    // The opinion is given but has not reached the EHR yet (it answers 503 for now): still 409.
    ehr.faults.add({ path: /^\/fhir\/R4\/DocumentReference(\?|$)/, method: 'POST', status: 503 });
    expect((await call('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', OPINION)).status).toBe(200);
    await until(async () => (((await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.taskId, taskId)))[0]?.attempts ?? 0) >= 1 ? true : undefined), 'a failed attempt');
    const pending = await call<OperationOutcome>('POST', `/second-opinions/${id}/consultants/lakeside-consults/questions`, 'st-olaf', { text: 'Too early?' });
    expect(pending.status).toBe(409);
    expect(pending.body.issue?.[0]).toMatchObject({ code: 'conflict', expression: ['participant'], details: { text: expect.stringContaining('has not reached your EHR yet (delivery pending)') } });
    ehr.faults.clear();
    await until(async () => ((await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.taskId, taskId)))[0]?.status === 'delivered' ? true : undefined), 'the opinion delivered');
    const question = await ask(id, 'Should the CRP be repeated first?');
    ehr.faults.add({ path: /^\/fhir\/R4\/Communication(\?|$)/, method: 'POST', status: 403 });
    const answer = await call<{ id: string }>('POST', `/consults/${taskId}/answers`, 'lakeside-consults', { question: question.body.id, text: 'Yes, and the ESR.' });
    expect(answer.status).toBe(201);
    const failed = await until(async () => ((await rowOf(question.body.id))?.deliveryStatus === 'failed' ? rowOf(question.body.id) : undefined), 'the post-back given up');
    expect(failed?.attempts).toBe(1);
    expect(failed?.lastError).toContain('HTTP 403');
    expect(failed?.lastOutcome).toMatchObject({ resourceType: 'OperationOutcome' });
    const summary = (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
    expect(summary.consultants[0]?.followUps[0]?.delivery).toMatchObject({ status: 'failed', attempts: 1, lastError: expect.stringContaining('HTTP 403') });

    const list = await call<{ items: DeliveryListItem[] }>('GET', '/admin/deliveries?status=failed', 'audit-office');
    expect(list.body.items.find((i) => i.id === question.body.id)).toMatchObject({ kind: 'follow-up-answer', taskId, serviceRequestId: id, participant: 'st-olaf', status: 'failed', attempts: 1 });
    ehr.faults.clear();
    const redrive = await call<{ kind: string; status: string }>('POST', `/admin/deliveries/${question.body.id}/retry`, 'audit-office');
    expect(redrive.status).toBe(202);
    expect(redrive.body).toMatchObject({ kind: 'follow-up-answer', status: 'pending' });
    await until(async () => ((await rowOf(question.body.id))?.deliveryStatus === 'delivered' ? true : undefined), 'the re-driven post-back');
    expect(await onEhr(question.body.id)).toHaveLength(1);
    expect(await onEhr(answer.body.id)).toHaveLength(1);
    const again = await call<OperationOutcome>('POST', `/admin/deliveries/${question.body.id}/retry`, 'audit-office');
    expect(again.status).toBe(409);
    // A question not answered yet has no post-back to re-drive.
    const open = await ask(id, 'And the ESR?');
    expect((await call('POST', `/admin/deliveries/${open.body.id}/retry`, 'audit-office')).status).toBe(404);
  });
});
