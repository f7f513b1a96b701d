import type { OperationOutcome, Provenance, ServiceRequest, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const FHIR_JSON = 'application/fhir+json';
const JSON_PATCH = 'application/json-patch+json';

/**
 * The referrer's side over FHIR: `PUT /fhir/ServiceRequest/{id}` with status
 * revoked and the reason as a new note is the JSON cancel; a Task on hold for information put
 * back `in-progress` with the answer as a new note is the JSON answer. Each is driven on one
 * referral through the JSON door and on a twin through the FHIR door; what is stored must match.
 */
describe('the referrer over FHIR: revoke the referral, answer a request for information (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let store: ResourceStore;
  const validator = createValidator();
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
    const networkFile = await writeSandboxNetwork(ehr, { timeoutMs: 5_000 });
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, { jobPollingIntervalSeconds: 0.5 });
    store = new ResourceStore(service.database.db, validator);
    for (const p of ['st-olaf', 'st-olaf-physicians', 'lakeside-consults', 'northfield-pathology']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  }, 120_000);
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
  const putReferral = <T = ServiceRequest>(sr: ServiceRequest, who = 'st-olaf', headers: Record<string, string> = {}) => call<T>('PUT', `/fhir/ServiceRequest/${sr.id}`, who, sr, { 'content-type': FHIR_JSON, ...headers });
  const putTask = <T = Task>(task: Task, who = 'st-olaf', headers: Record<string, string> = {}) => call<T>('PUT', `/fhir/Task/${task.id}`, who, task, { 'content-type': FHIR_JSON, ...headers });
  const patchTask = <T = Task>(id: string, ops: unknown, who = 'st-olaf') => call<T>('PATCH', `/fhir/Task/${id}`, who, ops, { 'content-type': JSON_PATCH });

  /** A referral to Lakeside (and optionally Northfield), its record set assembled. */
  async function referral(consultants: string[] = ['lakeside-consults']): Promise<{ id: string; taskIds: string[] }> {
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants, blinded: false, firstOpinion: { documents: [] } }, ehr.seeded));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${created.body.id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');
    return { id: created.body.id, taskIds: created.body.tasks.map((t) => t.id as string) };
  }
  /** The clinic accepts and starts its Task (JSON door); with a question, it then asks for information. */
  async function work(taskId: string, question?: string): Promise<void> {
    const who = 'lakeside-consults';
    expect((await call('POST', `/consults/${taskId}/accept`, who)).status).toBe(200);
    expect((await call('POST', `/consults/${taskId}/start`, who)).status).toBe(200);
    if (question) expect((await call('POST', `/consults/${taskId}/request-info`, who, { question })).status).toBe(200);
  }

  const taskNow = async (id: string) => (await store.read<Task>('Task', id, 'system')) as Task;
  const referralNow = async (id: string) => (await store.read<ServiceRequest>('ServiceRequest', id, 'system')) as ServiceRequest;
  const provenanceOf = async (task: Task) =>
    (await store.search<Provenance>({ resourceType: 'Provenance', count: 10, contains: [[{ target: [{ reference: `Task/${task.id}/_history/${task.meta?.versionId}` }] }]] }, 'system')).resources;
  /** What a transition wrote, without what differs between two referrals (ids, times). */
  const shape = (task: Task) => ({
    status: task.status,
    version: task.meta?.versionId,
    businessStatus: task.businessStatus,
    statusReason: task.statusReason,
    note: task.note?.map((n) => ({ text: n.text, author: n.authorReference })),
    owner: task.owner,
    for: task.for,
  });
  const provenanceShape = (p: Provenance[]) => p.map((x) => ({ activity: x.activity, reason: x.reason, agent: x.agent }));
  /** The JSON twin's and the FHIR twin's stored Tasks match, with their last Provenance, and validate. */
  async function expectTwins(jsonTaskId: string, fhirTaskId: string): Promise<void> {
    const [viaJson, viaFhir] = [await taskNow(jsonTaskId), await taskNow(fhirTaskId)];
    expect(shape(viaFhir)).toEqual(shape(viaJson));
    expect(provenanceShape(await provenanceOf(viaFhir))).toEqual(provenanceShape(await provenanceOf(viaJson)));
    expect((await provenanceOf(viaFhir)).length).toBe(1);
    expect(validator.validate(viaFhir)).toEqual([]);
  }
  /** A refusal: status, an OperationOutcome naming `expressions`, and `unchanged` as it was. */
  async function expectRefused(res: { status: number; body: unknown }, status: number, unchanged: Task | ServiceRequest, expressions?: string[]): Promise<OperationOutcome> {
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    const oo = res.body as OperationOutcome;
    expect(oo.resourceType).toBe('OperationOutcome');
    if (expressions) expect(oo.issue?.map((i) => i.expression?.[0])).toEqual(expressions);
    const now = unchanged.resourceType === 'Task' ? await taskNow(unchanged.id as string) : await referralNow(unchanged.id as string);
    expect(now).toEqual(unchanged);
    return oo;
  }
  const withNote = (sr: ServiceRequest, text: string): ServiceRequest => ({ ...sr, status: 'revoked', note: [...(sr.note ?? []), { text }] });

  it('revoke by PUT /fhir/ServiceRequest (status revoked, reason as a new note): the JSON cancel; the referral revoked, its Tasks cancelled with the reason', async () => {
    const [json, fhir] = [await referral(['lakeside-consults', 'northfield-pathology']), await referral(['lakeside-consults', 'northfield-pathology'])];
    const reason = 'Patient chose another provider';
    expect((await call('POST', `/second-opinions/${json.id}/cancel`, 'st-olaf', { reason })).status).toBe(200);

    const read = await call<ServiceRequest>('GET', `/fhir/ServiceRequest/${fhir.id}`, 'st-olaf');
    expect(read.status).toBe(200);
    const revoked = await putReferral(withNote(read.body, reason), 'st-olaf', { 'if-match': read.headers.get('etag') as string });
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
    expect(revoked.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
    expect(revoked.headers.get('etag')).toBe(`W/"${revoked.body.meta?.versionId}"`);
    expect(revoked.body).toEqual(await referralNow(fhir.id));
    expect(revoked.body.status).toBe('revoked');
    expect(validator.validate(revoked.body)).toEqual([]);
    expect((await referralNow(json.id)).status).toBe('revoked');
    for (const i of [0, 1]) {
      expect(await taskNow(fhir.taskIds[i] as string)).toMatchObject({ status: 'cancelled', statusReason: { text: reason } });
      await expectTwins(json.taskIds[i] as string, fhir.taskIds[i] as string);
    }
    // Sent again as stored: nothing to do, no new version.
    const same = await putReferral(revoked.body);
    expect(same.status).toBe(200);
    expect(same.body).toEqual(revoked.body);
    // Nothing else may change afterwards: a status back to active, a note on its own.
    await expectRefused(await putReferral({ ...withNote(revoked.body, 'again'), status: 'active' }), 422, revoked.body, ['ServiceRequest.status']);
    await expectRefused(await putReferral(withNote(revoked.body, 'again')), 422, revoked.body, ['ServiceRequest.note']);
  });

  it('once a clinic started work the revoke asks it to stop: the referral stays active until the clinic confirms, as the JSON cancel', async () => {
    const [json, fhir] = [await referral(), await referral()];
    await work(json.taskIds[0] as string);
    await work(fhir.taskIds[0] as string);
    const reason = 'Changed our mind';
    expect((await call('POST', `/second-opinions/${json.id}/cancel`, 'st-olaf', { reason })).status).toBe(200);
    const asked = await putReferral(withNote(await referralNow(fhir.id), reason));
    expect(asked.status, JSON.stringify(asked.body)).toBe(200);
    expect(asked.body.status).toBe('active');
    expect(await taskNow(fhir.taskIds[0] as string)).toMatchObject({ status: 'in-progress', businessStatus: { coding: [{ code: 'cancellation-requested' }], text: reason } });
    await expectTwins(json.taskIds[0] as string, fhir.taskIds[0] as string);
    const confirmed = await putTask({ ...(await taskNow(fhir.taskIds[0] as string)), status: 'cancelled' }, 'lakeside-consults');
    expect(confirmed.status, JSON.stringify(confirmed.body)).toBe(200);
    expect((await referralNow(fhir.id)).status).toBe('revoked');
  });

  it('revoke refusals: 422 naming the element (no reason, an empty one, other changes, other statuses), stale If-Match 412, others 404 or 403; nothing changes', async () => {
    const { id } = await referral();
    const before = await referralNow(id);
    expect(before.note).toHaveLength(1); // the clinical question: the reason is a note after it
    await expectRefused(await putReferral({ ...before, status: 'revoked' }), 422, before, ['ServiceRequest.note']);
    await expectRefused(await putReferral(withNote(before, '   ')), 422, before, ['ServiceRequest.note[1].text']);
    await expectRefused(await putReferral({ ...before, status: 'revoked', note: [{ text: 'rewritten question' }] }), 422, before, ['ServiceRequest.note']);
    await expectRefused(await putReferral({ ...withNote(before, 'why'), priority: 'urgent', occurrenceDateTime: '2099-01-01' }), 422, before, ['ServiceRequest.occurrenceDateTime', 'ServiceRequest.priority']);
    await expectRefused(await putReferral({ ...withNote(before, 'why'), status: 'completed' }), 422, before, ['ServiceRequest.status']);
    await expectRefused(await putReferral({ ...before, note: [...(before.note ?? []), { text: 'just a note' }] }), 422, before, ['ServiceRequest.note']);
    await expectRefused(await putReferral({ ...before, priority: 'urgent' }), 422, before, ['ServiceRequest.priority']);
    await expectRefused(await putReferral(withNote(before, 'why'), 'st-olaf', { 'if-match': 'W/"999"' }), 412, before, ['If-Match']);
    await expectRefused(await call('PUT', `/fhir/ServiceRequest/${id}`, 'st-olaf', { ...withNote(before, 'why'), id: 'another' }, { 'content-type': FHIR_JSON }), 400, before, ['ServiceRequest.id']);
    await expectRefused(await call('PUT', `/fhir/ServiceRequest/${id}`, 'st-olaf', { ...withNote(before, 'why'), resourceType: 'Task' }, { 'content-type': FHIR_JSON }), 400, before, ['ServiceRequest.resourceType']);
    await expectRefused(await call('PUT', `/fhir/ServiceRequest/${id}`, 'st-olaf', withNote(before, 'why'), { 'content-type': 'text/plain' }), 415, before);
    // Not the referrer: the clinic and the physician are refused by role; no such referral is 404.
    await expectRefused(await putReferral(withNote(before, 'why'), 'lakeside-consults'), 403, before);
    await expectRefused(await putReferral(withNote(before, 'why'), 'st-olaf-physicians'), 403, before);
    await expectRefused(await putReferral({ ...withNote(before, 'why'), id: 'no-such-referral' }), 404, before);
  });

  it('answer by PUT /fhir/Task (on-hold -> in-progress, the answer as a new note): the JSON answer; the clinic is back at work with the answer in its notes', async () => {
    const [json, fhir] = [await referral(), await referral()];
    const question = 'Which implant was used?';
    await work(json.taskIds[0] as string, question);
    await work(fhir.taskIds[0] as string, question);
    const answer = 'A 350 cc cohesive gel implant (2019).';
    expect((await call('POST', `/second-opinions/${json.id}/info`, 'st-olaf', { text: answer })).status).toBe(200);

    const onHold = await taskNow(fhir.taskIds[0] as string);
    const answered = await putTask({ ...onHold, status: 'in-progress', note: [...(onHold.note ?? []), { text: answer }] }, 'st-olaf', { 'if-match': `W/"${onHold.meta?.versionId}"` });
    expect(answered.status, JSON.stringify(answered.body)).toBe(200);
    expect(answered.body).toEqual(await taskNow(fhir.taskIds[0] as string));
    expect(answered.body).toMatchObject({ status: 'in-progress', businessStatus: { coding: [{ code: 'records-ready' }] } });
    expect(answered.body.note?.at(-1)?.text).toBe(`Information provided: ${answer}`);
    await expectTwins(json.taskIds[0] as string, fhir.taskIds[0] as string);
  });

  it('answer refusals: no new note, an empty one, a rewritten one 422 naming it; a Task not waiting 409; the clinic may not add notes; other clinics 404', async () => {
    const { taskIds } = await referral();
    const taskId = taskIds[0] as string;
    await work(taskId, 'Which implant was used?');
    const onHold = await taskNow(taskId);
    const notes = onHold.note ?? [];
    await expectRefused(await putTask({ ...onHold, status: 'in-progress' }), 422, onHold, ['Task.note']);
    await expectRefused(await putTask({ ...onHold, status: 'in-progress', note: [...notes, { text: ' ' }] }), 422, onHold, [`Task.note[${notes.length}].text`]);
    await expectRefused(await putTask({ ...onHold, status: 'in-progress', note: [{ text: 'rewritten' }, ...notes] }), 422, onHold, ['Task.note']);
    await expectRefused(await patchTask(taskId, [{ op: 'add', path: '/note/-', value: { text: 'answer without status' } }]), 422, onHold, ['Task.note']);
    await expectRefused(await putTask({ ...onHold, status: 'in-progress', note: [...notes, { text: 'x' }], priority: 'urgent' }), 422, onHold, ['Task.priority']);
    // The clinic's own "in-progress" is its start action, which carries no note; other clinics do not see the Task.
    await expectRefused(await putTask({ ...onHold, status: 'in-progress', note: [...notes, { text: 'x' }] }, 'lakeside-consults'), 422, onHold, ['Task.note']);
    await expectRefused(await putTask({ ...onHold, status: 'in-progress', note: [...notes, { text: 'x' }] }, 'northfield-pathology'), 404, onHold);
    await expectRefused(await putTask({ ...onHold, status: 'in-progress', note: [...notes, { text: 'x' }] }, 'st-olaf', { 'if-match': 'W/"1"' }), 412, onHold, ['If-Match']);

    // A Task not on hold: the table refuses the referrer's resume (409 naming Task.status).
    const { taskIds: fresh } = await referral();
    const requested = await taskNow(fresh[0] as string);
    const refused = await expectRefused(await putTask({ ...requested, status: 'in-progress', note: [...(requested.note ?? []), { text: 'x' }] }), 409, requested, ['Task.status']);
    expect(refused.issue?.[0]?.details?.text).toMatch(/'resume' is not allowed on a Task that is requested/);
    // By JSON Patch, the same answer is accepted.
    const patched = await patchTask(taskId, [
      { op: 'test', path: '/status', value: 'on-hold' },
      { op: 'replace', path: '/status', value: 'in-progress' },
      { op: 'add', path: '/note/-', value: { text: 'Implant: 350 cc' } },
    ]);
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body).toMatchObject({ status: 'in-progress', note: expect.arrayContaining([expect.objectContaining({ text: 'Information provided: Implant: 350 cc' })]) });
  });
});
