import { parseSearchRequest } from '@medplum/core';
import type { DocumentReference, OperationOutcome, ServiceRequest, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXTENSION, SYSTEM } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import type { Worklist } from '../src/consults/worklist.ts';
import { opinionExtensions, readOpinionExtension } from '../src/opinions/consult-note.ts';
import { OpinionSchema } from '../src/opinions/opinion.ts';
import type { Comparison } from '../src/retrieval/comparison.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { opinionDeliveries } from '../src/store/schema.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { completedWithNote, containedConsultNote, referralParts } from './support/fhir-referrals.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const QUESTIONS = [
  { text: 'Will I be able to swim again after a revision?', askedBy: 'patient' },
  { text: 'Is an exchange for a smaller implant reasonable?', askedBy: 'physician' },
  { text: 'How long would I be off work?', askedBy: 'patient' },
] as const;
const ANSWER_AREA = `Task.contained[0].extension('${EXTENSION.secondOpinionAnswer}')`;

/**
 * The patient's and the physician's own questions, answered point by point, over
 * real HTTP against the sandbox EHR: kept as marked notes on the ServiceRequest, shown to the
 * consultants, every one answered (or why not) by every opinion on the JSON and the FHIR door,
 * carried in the consult note to the referring EHR, and compared side by side.
 */
describe('referral questions (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let store: ResourceStore;
  const validator = createValidator();
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
    const networkFile = await writeSandboxNetwork(ehr, { timeoutMs: 5_000 });
    // Both clinics take part, each admitted by the referrer's attestation (the sandbox's Consent names Lakeside only).
    service = await startTestService({ NETWORK_FILE: networkFile, CONSENT_ATTESTATION_ALLOWED: 'true' }, undefined, { jobPollingIntervalSeconds: 0.5 });
    store = new ResourceStore(service.database.db, validator);
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  }, 120_000);
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  const recordsReady = (id: string) => until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');
  const taskNow = async (id: string) => (await store.read<Task>('Task', id, 'system')) as Task;

  it('intake refuses malformed questions, naming the field', async () => {
    const bad = await call<OperationOutcome>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ questions: [{ text: 'Why?', askedBy: 'nurse' }] as never }, ehr.seeded));
    expect(bad.status).toBe(400);
    expect(bad.body.issue.map((i) => i.expression?.[0])).toEqual(['questions[0].askedBy']);
    const many = Array.from({ length: 21 }, () => ({ text: 'Why?', askedBy: 'patient' }));
    const tooMany = await call<OperationOutcome>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ questions: many } as never, ehr.seeded));
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.issue.map((i) => i.expression?.[0])).toEqual(['questions']);
    const long = await call<OperationOutcome>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ questions: [{ text: 'x'.repeat(2001), askedBy: 'patient' }] } as never, ehr.seeded));
    expect(long.status).toBe(400);
    expect(long.body.issue.map((i) => i.expression?.[0])).toEqual(['questions[0].text']);
  });

  it('questions travel as ServiceRequest notes; every opinion must answer each (JSON and FHIR doors); the answers reach the EHR and the comparison', async () => {
    const request = makeSecondOpinionRequest({ blinded: false, firstOpinion: { documents: [] }, consent: undefined, consentAttested: true, questions: QUESTIONS as never }, ehr.seeded);
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', request);
    expect(created.status).toBe(201);
    const id = created.body.id;
    const [lakesideTask, northfieldTask] = created.body.tasks.map((t) => t.id as string) as [string, string];

    // Kept on the ServiceRequest: the clinical question, then one marked note per question, in order; valid against our profile.
    const sr = (await call<ServiceRequest>('GET', `/fhir/ServiceRequest/${id}`, 'st-olaf')).body;
    expect(validator.validate(sr)).toEqual([]);
    expect(sr.note).toEqual([
      { text: request.question },
      ...QUESTIONS.map((q) => ({ extension: [{ url: EXTENSION.referralQuestion, valueCoding: { system: SYSTEM.questionAsker, code: q.askedBy, display: q.askedBy === 'patient' ? 'Patient' : 'Physician' } }], text: q.text })),
    ]);
    expect((await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.questions).toEqual(QUESTIONS);

    // The consultants see them where they see the case: the worklist, and the ServiceRequest they may read.
    await recordsReady(id);
    const worklist = (await call<Worklist>('GET', '/consults', 'lakeside-consults')).body;
    expect(worklist.items.find((i) => i.task.id === lakesideTask)?.referral.questions).toEqual(QUESTIONS);
    const seen = await call<ServiceRequest>('GET', `/fhir/ServiceRequest/${id}`, 'northfield-pathology');
    expect(seen.body.note?.slice(1).map((n) => n.text)).toEqual(QUESTIONS.map((q) => q.text));
    for (const [taskId, who] of [[lakesideTask, 'lakeside-consults'], [northfieldTask, 'northfield-pathology']] as const) {
      expect((await call('POST', `/consults/${taskId}/accept`, who)).status).toBe(200);
      expect((await call('POST', `/consults/${taskId}/start`, who)).status).toBe(200);
    }

    // JSON door: a question left unanswered, one that does not exist, one answered twice: 422 naming each, nothing written.
    const before = await taskNow(lakesideTask);
    const none = await call<OperationOutcome>('POST', `/consults/${lakesideTask}/opinion`, 'lakeside-consults', { ...EXAMPLE_OPINION, answers: [{ question: 1, text: 'Yes, a smaller implant is reasonable.' }] });
    expect(none.status).toBe(422);
    expect(none.body.issue).toEqual([
      { severity: 'error', code: 'required', details: { text: 'Question 0 (asked by the patient) has no answer: answer it (text), or say why it cannot be answered (notAnswerable)' }, expression: ['answers'] },
      { severity: 'error', code: 'required', details: { text: 'Question 2 (asked by the patient) has no answer: answer it (text), or say why it cannot be answered (notAnswerable)' }, expression: ['answers'] },
    ]);
    expect(JSON.stringify(none.body)).not.toContain('swim');
    const wrong = await call<OperationOutcome>('POST', `/consults/${lakesideTask}/opinion`, 'lakeside-consults', {
      ...EXAMPLE_OPINION,
      answers: [{ question: 0, text: 'a' }, { question: 1, text: 'b' }, { question: 2, text: 'c' }, { question: 1, text: 'd' }, { question: 7, text: 'e' }],
    });
    expect(wrong.status).toBe(422);
    expect(wrong.body.issue.map((i) => [i.code, i.expression?.[0]])).toEqual([['business-rule', 'answers[3].question'], ['value', 'answers[4].question']]);
    const both = await call<OperationOutcome>('POST', `/consults/${lakesideTask}/opinion`, 'lakeside-consults', { ...EXAMPLE_OPINION, answers: [{ question: 0, text: 'a', notAnswerable: 'b' }] });
    expect(both.status).toBe(400);
    expect(both.body.issue.map((i) => i.expression?.[0])).toEqual(['answers[0]']);
    expect((await taskNow(lakesideTask)).meta?.versionId).toBe(before.meta?.versionId);

    const lakesideAnswers = [
      { question: 2, text: 'About six weeks for desk work.' },
      { question: 0, text: 'Yes, after about three months.' },
      { question: 1, notAnswerable: 'The implant record is missing from the records sent.' },
    ];
    const done = await call<Task>('POST', `/consults/${lakesideTask}/opinion`, 'lakeside-consults', { ...EXAMPLE_OPINION, answers: lakesideAnswers });
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    const noteId = (done.body.output?.[0]?.valueReference?.reference as string).split('/')[1] as string;
    const note = (await call<DocumentReference>('GET', `/fhir/DocumentReference/${noteId}`, 'st-olaf')).body;
    expect(validator.validate(note)).toEqual([]);
    expect(readOpinionExtension(note)?.answers).toEqual(lakesideAnswers);
    const html = Buffer.from(note.content[0]?.attachment.data as string, 'base64').toString('utf8');
    expect(html).toContain('<h2>Your questions</h2>');
    expect(html).toContain('<strong>Will I be able to swim again after a revision?</strong> <small>(asked by the patient)</small></p><p>Yes, after about three months.</p>');
    expect(html).toContain('<em>Not answered:</em> The implant record is missing from the records sent.');

    // FHIR door: the same rule on the contained consult note's answers, named there.
    const points = OpinionSchema.parse({ ...EXAMPLE_OPINION, answers: [{ question: 0, text: 'Yes.' }, { question: 1, text: 'Yes, one size smaller.' }] });
    const started = await taskNow(northfieldTask);
    const missing = await call<OperationOutcome>('PUT', `/fhir/Task/${northfieldTask}`, 'northfield-pathology', completedWithNote(started, containedConsultNote(points, { title: 'Notes', text: 'Notes.' })), { 'content-type': 'application/fhir+json' });
    expect(missing.status).toBe(422);
    expect(missing.body.issue.map((i) => [i.details?.text, i.expression?.[0]])).toEqual([
      ['Question 2 (asked by the patient) has no answer: answer it (text), or say why it cannot be answered (notAnswerable)', ANSWER_AREA],
    ]);
    const twice = { ...points, answers: [...points.answers, { question: 2, text: 'Two weeks.' }, { question: 0, text: 'No.' }] };
    const doubled = await call<OperationOutcome>('PUT', `/fhir/Task/${northfieldTask}`, 'northfield-pathology', completedWithNote(started, containedConsultNote(twice, { title: 'Notes', text: 'Notes.' })), { 'content-type': 'application/fhir+json' });
    expect(doubled.status).toBe(422);
    expect(doubled.body.issue.map((i) => i.expression?.[0])).toEqual([`${ANSWER_AREA}[3].extension('question')`]);
    expect((await taskNow(northfieldTask)).meta?.versionId).toBe(started.meta?.versionId);
    const complete = { ...points, answers: [...points.answers, { question: 2, notAnswerable: 'Depends on the surgeon chosen.' }] };
    const fhirDone = await call<Task>('PUT', `/fhir/Task/${northfieldTask}`, 'northfield-pathology', completedWithNote(started, { ...containedConsultNote(complete, { title: 'Notes', text: 'Notes.' }), extension: opinionExtensions(complete) }), { 'content-type': 'application/fhir+json' });
    expect(fhirDone.status, JSON.stringify(fhirDone.body)).toBe(200);
    expect(fhirDone.body.status).toBe('completed');

    // The post-back carries the answers to the referring EHR.
    const delivered = await until(async () => {
      const [row] = await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, noteId));
      return row?.status === 'delivered' ? row : undefined;
    }, 'delivery');
    expect(delivered.status).toBe('delivered');
    const onEhr = (await ehr.repo.searchResources(parseSearchRequest(`DocumentReference?identifier=${encodeURIComponent(`${SYSTEM.consultNoteId}|${noteId}`)}`))) as DocumentReference[];
    expect(onEhr).toHaveLength(1);
    expect(readOpinionExtension(onEhr[0] as DocumentReference)?.answers).toEqual(lakesideAnswers);

    // The comparison: every question with each consultant's answer side by side (JSON and HTML).
    const comparison = (await call<Comparison>('GET', `/second-opinions/${id}/comparison`, 'st-olaf')).body;
    const lakeside = comparison.opinions.find((o) => o.source === 'lakeside-consults')!;
    const northfield = comparison.opinions.find((o) => o.source === 'northfield-pathology')!;
    const answerOf = (o: typeof lakeside, a: { text?: string; notAnswerable?: string }) => ({ source: o.source, name: o.name, ...a });
    const byOrder = (...pair: [ReturnType<typeof answerOf>, ReturnType<typeof answerOf>]) => comparison.opinions.map((o) => pair.find((p) => p.source === o.source));
    expect(comparison.referral.question).toBe(request.question);
    expect(comparison.questions).toEqual([
      { index: 0, ...QUESTIONS[0], answers: byOrder(answerOf(lakeside, { text: 'Yes, after about three months.' }), answerOf(northfield, { text: 'Yes.' })) },
      { index: 1, ...QUESTIONS[1], answers: byOrder(answerOf(lakeside, { notAnswerable: 'The implant record is missing from the records sent.' }), answerOf(northfield, { text: 'Yes, one size smaller.' })) },
      { index: 2, ...QUESTIONS[2], answers: byOrder(answerOf(lakeside, { text: 'About six weeks for desk work.' }), answerOf(northfield, { notAnswerable: 'Depends on the surgeon chosen.' })) },
    ]);
    const page = await fetch(`${service.url}/second-opinions/${id}/comparison`, { headers: { authorization: `Bearer ${tokens['st-olaf']}`, accept: 'text/html' } });
    expect(page.status).toBe(200);
    const text = await page.text();
    expect(text).toContain('<h2>Questions answered</h2>');
    const row = `<tr><th>0. Will I be able to swim again after a revision?<br><small>asked by the patient</small></th>${comparison.questions[0]!.answers.map((a) => `<td>${a.text}</td>`).join('')}</tr>`;
    expect(text).toContain(row);
    expect(text).toContain('<td><em>Not answered:</em> The implant record is missing from the records sent.</td>');

    // The summary shows each opinion's answers.
    const summary = (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
    expect(summary.consultants.find((c) => c.task.id === lakesideTask)?.opinion?.answers).toEqual(lakesideAnswers);
  });

  it('a ServiceRequest created over FHIR carries its questions as marked notes; an unknown asker is refused (400) naming the note extension', async () => {
    const p = referralParts(ehr.seeded, ehr.baseUrl);
    p.serviceRequest.supportingInfo = p.serviceRequest.supportingInfo!.slice(1);
    const marked = (text: string, code: string, system: string = SYSTEM.questionAsker) => ({ text, extension: [{ url: EXTENSION.referralQuestion, valueCoding: { system, code } }] });
    const send = (sr: ServiceRequest) => call<ServiceRequest & { issue?: OperationOutcome['issue'] }>('POST', '/fhir/ServiceRequest', 'st-olaf', sr, { 'content-type': 'application/fhir+json' });

    const bad = await send({ ...p.serviceRequest, note: [...p.serviceRequest.note!, marked('Can I wait a year?', 'nurse')] });
    expect(bad.status).toBe(400);
    expect(bad.body.issue?.map((i) => i.expression?.[0])).toEqual(['ServiceRequest.note[1].extension(\'' + EXTENSION.referralQuestion + '\').valueCoding.code']);
    const foreign = await send({ ...p.serviceRequest, note: [...p.serviceRequest.note!, marked('Can I wait a year?', 'patient', 'http://example.org/askers')] });
    expect(foreign.status).toBe(400);
    expect(foreign.body.issue?.map((i) => i.expression?.[0])).toEqual(['ServiceRequest.note[1].extension(\'' + EXTENSION.referralQuestion + '\').valueCoding']);

    const res = await send({ ...p.serviceRequest, note: [marked('Can I wait a year?', 'patient'), ...p.serviceRequest.note!, marked('Is imaging enough?', 'physician')] });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(validator.validate(res.body)).toEqual([]);
    expect(res.body.note?.map((n) => n.text)).toEqual([p.serviceRequest.note![0]!.text, 'Can I wait a year?', 'Is imaging enough?']);
    const summary = (await call<ReferralSummary>('GET', `/second-opinions/${res.body.id}`, 'st-olaf')).body;
    expect(summary.questions).toEqual([
      { text: 'Can I wait a year?', askedBy: 'patient' },
      { text: 'Is imaging enough?', askedBy: 'physician' },
    ]);
  });
});
