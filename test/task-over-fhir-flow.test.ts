import { parseSearchRequest } from '@medplum/core';
import type { DocumentReference, OperationOutcome, Provenance, ServiceRequest, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXTENSION, SYSTEM } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { opinionExtensions, readOpinionExtension } from '../src/opinions/consult-note.ts';
import { OpinionSchema } from '../src/opinions/opinion.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { opinionDeliveries } from '../src/store/schema.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { completedWithNote, containedConsultNote } from './support/fhir-referrals.ts';
import { until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const FHIR_JSON = 'application/fhir+json';
const JSON_PATCH = 'application/json-patch+json';

/**
 * Tasks over FHIR: `PUT` and `PATCH /fhir/Task/{id}` by the owning clinic move
 * the Task through the same use cases as `POST /consults/{id}/...`, and the referrer cancels
 * with `status: cancelled`. Each transition is driven on one referral through the JSON door
 * and on a twin referral through the FHIR door; the stored Tasks and Provenance must match.
 */
describe('Task over FHIR (flow)', () => {
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
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
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
  const put = <T = Task>(task: Task, who = 'lakeside-consults', headers: Record<string, string> = {}) => call<T>('PUT', `/fhir/Task/${task.id}`, who, task, { 'content-type': FHIR_JSON, ...headers });
  const patch = <T = Task>(id: string, ops: unknown, who = 'lakeside-consults', headers: Record<string, string> = {}) => call<T>('PATCH', `/fhir/Task/${id}`, who, ops, { 'content-type': JSON_PATCH, ...headers });

  /** A referral to Lakeside, its record set assembled; returns its id and Task. */
  async function referral(): Promise<{ id: string; taskId: string }> {
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded));
    expect(created.status).toBe(201);
    await until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${created.body.id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');
    return { id: created.body.id, taskId: created.body.tasks[0]?.id as string };
  }

  const taskNow = async (id: string) => (await store.read<Task>('Task', id, 'system')) as Task;
  const provenanceOf = async (task: Task) =>
    (await store.search<Provenance>({ resourceType: 'Provenance', count: 10, contains: [[{ target: [{ reference: `Task/${task.id}/_history/${task.meta?.versionId}` }] }]] }, 'system')).resources;

  /** What a transition wrote, without what differs between two referrals (ids, times, the referral's own references). */
  const shape = (task: Task) => ({
    status: task.status,
    version: task.meta?.versionId,
    businessStatus: task.businessStatus,
    statusReason: task.statusReason,
    note: task.note?.map((n) => ({ text: n.text, author: n.authorReference })),
    output: task.output?.map((o) => ({ type: o.type, display: o.valueReference?.display, kind: o.valueReference?.reference?.split('/')[0] })),
    contained: task.contained,
    owner: task.owner,
    for: task.for,
    intent: task.intent,
    code: task.code,
  });
  const provenanceShape = (p: Provenance[]) => p.map((x) => ({ activity: x.activity, reason: x.reason, agent: x.agent, target: x.target.map((t) => t.reference?.replace(/^Task\/[^/]+/, 'Task')) }));

  /** Asserts the stored Tasks of the JSON and the FHIR twin match, with their last Provenance, and validate. */
  async function expectTwins(jsonId: string, fhirId: string, answered: Task): Promise<void> {
    const [viaJson, viaFhir] = [await taskNow(jsonId), await taskNow(fhirId)];
    expect(answered).toEqual(viaFhir);
    expect(shape(viaFhir)).toEqual(shape(viaJson));
    expect(provenanceShape(await provenanceOf(viaFhir))).toEqual(provenanceShape(await provenanceOf(viaJson)));
    expect((await provenanceOf(viaFhir)).length).toBe(1);
    expect(validator.validate(viaFhir)).toEqual([]);
  }

  /** Asserts a refusal: status, an OperationOutcome naming `expressions`, and the Task unchanged. */
  async function expectRefused(res: { status: number; body: unknown }, status: number, before: Task, expressions?: string[]): Promise<OperationOutcome> {
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    const oo = res.body as OperationOutcome;
    expect(oo.resourceType).toBe('OperationOutcome');
    if (expressions) expect(oo.issue?.map((i) => i.expression?.[0])).toEqual(expressions);
    expect(await taskNow(before.id as string)).toEqual(before);
    return oo;
  }

  it('accept by PUT, start by PATCH, request-info by PUT: the same stored Task and Provenance as the JSON actions; 200 with the ETag', async () => {
    const [json, fhir] = [await referral(), await referral()];
    expect((await call('POST', `/consults/${json.taskId}/accept`, 'lakeside-consults')).status).toBe(200);
    const accepted = await put({ ...(await taskNow(fhir.taskId)), status: 'accepted' }, 'lakeside-consults', { 'if-match': `W/"${(await taskNow(fhir.taskId)).meta?.versionId}"` });
    expect(accepted.status).toBe(200);
    expect(accepted.headers.get('etag')).toBe(`W/"${accepted.body.meta?.versionId}"`);
    expect(accepted.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
    await expectTwins(json.taskId, fhir.taskId, accepted.body);

    expect((await call('POST', `/consults/${json.taskId}/start`, 'lakeside-consults')).status).toBe(200);
    const started = await patch(fhir.taskId, [{ op: 'test', path: '/status', value: 'accepted' }, { op: 'replace', path: '/status', value: 'in-progress' }], 'lakeside-consults', { 'if-match': accepted.headers.get('etag') as string });
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    await expectTwins(json.taskId, fhir.taskId, started.body);

    const question = 'Which implant was used?';
    expect((await call('POST', `/consults/${json.taskId}/request-info`, 'lakeside-consults', { question })).status).toBe(200);
    const onHold = await put({ ...started.body, status: 'on-hold', businessStatus: { coding: [{ system: SYSTEM.taskBusinessStatus, code: 'information-requested' }], text: question } });
    expect(onHold.status, JSON.stringify(onHold.body)).toBe(200);
    expect(onHold.body).toMatchObject({ status: 'on-hold', businessStatus: { coding: [{ code: 'information-requested', display: expect.any(String) }], text: question } });
    await expectTwins(json.taskId, fhir.taskId, onHold.body);
    // The same Task sent again changes nothing: no new version.
    const same = await put(onHold.body);
    expect(same.status).toBe(200);
    expect(same.body).toEqual(onHold.body);
  });

  it('decline by PATCH: statusReason is the reason, as the JSON decline; the only Task declined revokes the referral', async () => {
    const [json, fhir] = [await referral(), await referral()];
    expect((await call('POST', `/consults/${json.taskId}/decline`, 'lakeside-consults', { reason: 'Outside our specialty' })).status).toBe(200);
    const before = await taskNow(fhir.taskId);
    await expectRefused(await patch(fhir.taskId, [{ op: 'replace', path: '/status', value: 'rejected' }]), 422, before, ['Task.statusReason.text']);
    const declined = await patch(fhir.taskId, [
      { op: 'replace', path: '/status', value: 'rejected' },
      { op: 'add', path: '/statusReason', value: { text: 'Outside our specialty' } },
    ]);
    expect(declined.status, JSON.stringify(declined.body)).toBe(200);
    expect(declined.body).toMatchObject({ status: 'rejected', statusReason: { text: 'Outside our specialty' } });
    await expectTwins(json.taskId, fhir.taskId, declined.body);
    expect((await store.read<ServiceRequest>('ServiceRequest', fhir.id, 'system'))?.status).toBe('revoked');
  });

  it('FHIRPath Patch (Parameters): accept by replace, decline by replace + add; the same stored Task as the JSON actions; unsupported paths 422', async () => {
    const fhirPathPatch = (id: string, ...operations: Record<string, unknown>[]) =>
      call<Task>('PATCH', `/fhir/Task/${id}`, 'lakeside-consults', {
        resourceType: 'Parameters',
        parameter: operations.map((o) => ({ name: 'operation', part: Object.entries(o).map(([name, value]) => ({ name, ...(value as Record<string, unknown>) })) })),
      }, { 'content-type': FHIR_JSON });
    const [json, fhir] = [await referral(), await referral()];
    expect((await call('POST', `/consults/${json.taskId}/accept`, 'lakeside-consults')).status).toBe(200);
    const accepted = await fhirPathPatch(fhir.taskId, { type: { valueCode: 'replace' }, path: { valueString: 'Task.status' }, value: { valueCode: 'accepted' } });
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(200);
    await expectTwins(json.taskId, fhir.taskId, accepted.body);

    const [json2, fhir2] = [await referral(), await referral()];
    expect((await call('POST', `/consults/${json2.taskId}/decline`, 'lakeside-consults', { reason: 'Outside our specialty' })).status).toBe(200);
    const before = await taskNow(fhir2.taskId);
    // A FHIRPath function selects by content: refused, naming the operation's path part; nothing changes.
    await expectRefused(await fhirPathPatch(fhir2.taskId, { type: { valueCode: 'replace' }, path: { valueString: "Task.note.where(text = 'x')" }, value: { valueString: 'y' } }), 422, before, ["Parameters.parameter[0].part.where(name='path')"]);
    await expectRefused(await fhirPathPatch(fhir2.taskId, { type: { valueCode: 'upsert' }, path: { valueString: 'Task.status' } }), 422, before, ["Parameters.parameter[0].part.where(name='type')"]);
    const declined = await fhirPathPatch(
      fhir2.taskId,
      { type: { valueCode: 'replace' }, path: { valueString: 'Task.status' }, value: { valueCode: 'rejected' } },
      { type: { valueCode: 'add' }, path: { valueString: 'Task' }, name: { valueString: 'statusReason' }, value: { valueCodeableConcept: { text: 'Outside our specialty' } } },
    );
    expect(declined.status, JSON.stringify(declined.body)).toBe(200);
    expect(declined.body).toMatchObject({ status: 'rejected', statusReason: { text: 'Outside our specialty' } });
    await expectTwins(json2.taskId, fhir2.taskId, declined.body);
  });

  it('completed with a contained consult note: the same opinion use case; the note is stored, validates, and is posted to the EHR exactly once', async () => {
    const { id, taskId } = await referral();
    await put({ ...(await taskNow(taskId)), status: 'accepted' });
    const started = await put({ ...(await taskNow(taskId)), status: 'in-progress' });
    expect(started.body.status).toBe('in-progress');
    const points = OpinionSchema.parse(EXAMPLE_OPINION);
    const note = containedConsultNote(points, { title: 'Scan notes', text: 'The scan shows no loosening.' });
    const completing = completedWithNote(started.body, note);

    // The note's type and points are checked as the JSON opinion's are: 422 naming the element, nothing written.
    const before = await taskNow(taskId);
    await expectRefused(await put({ ...completing, contained: [{ ...note, type: { text: 'letter' } }] }), 422, before, ['Task.contained[0].type']);
    const badAgreement = { ...note, extension: opinionExtensions({ ...points, planAgreement: 'perhaps' as never }) };
    await expectRefused(await put({ ...completing, contained: [badAgreement] }), 422, before, [`Task.contained[0].extension('${EXTENSION.secondOpinion}').extension('planAgreement')`]);
    await expectRefused(await put({ ...completing, output: [{ type: { text: 'opinion' }, valueReference: { reference: '#nothing' } }] }), 422, before, ['Task.output[0].valueReference']);

    const done = await put(completing, 'lakeside-consults', { 'if-match': `W/"${before.meta?.versionId}"` });
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(done.body).toMatchObject({ status: 'completed', output: [{ valueReference: { reference: expect.stringMatching(/^DocumentReference\//) } }] });
    expect(done.body.contained).toBeUndefined();
    expect(validator.validate(done.body)).toEqual([]);
    const noteId = (done.body.output?.[0]?.valueReference?.reference as string).split('/')[1] as string;
    const stored = (await call<DocumentReference>('GET', `/fhir/DocumentReference/${noteId}`, 'st-olaf')).body;
    expect(validator.validate(stored)).toEqual([]);
    expect(readOpinionExtension(stored)).toEqual(readOpinionExtension({ ...note, extension: opinionExtensions(points) }));
    expect(stored.content.map((c) => c.attachment.contentType)).toEqual(['text/html', 'text/plain']);
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('completed');

    const delivered = await until(async () => {
      const [row] = await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, noteId));
      return row?.status === 'delivered' ? row : undefined;
    }, 'delivery');
    expect(delivered).toMatchObject({ status: 'delivered', attempts: 1, taskId });
    const onEhr = await ehr.repo.searchResources(parseSearchRequest(`DocumentReference?identifier=${encodeURIComponent(`${SYSTEM.consultNoteId}|${noteId}`)}`));
    expect(onEhr).toHaveLength(1);
    expect((await taskNow(taskId)).businessStatus?.coding?.[0]?.code).toBe('opinion-delivered');
    // A second note on the completed Task is no action (its status does not change): 422, and nothing more is delivered.
    const after = await taskNow(taskId);
    await expectRefused(await put({ ...after, contained: [note], output: [{ type: { text: 'opinion' }, valueReference: { reference: '#opinion' } }] }), 422, after, ['Task.contained', 'Task.output']);
    expect(await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.taskId, taskId))).toHaveLength(1);
  });

  it('changes to anything else are 422 naming the element; statuses outside the table 422; the Task unchanged', async () => {
    const { taskId } = await referral();
    const before = await taskNow(taskId);
    await expectRefused(await put({ ...before, owner: { reference: 'Organization/northfield-pathology' } }), 422, before, ['Task.owner']);
    await expectRefused(await put({ ...before, status: 'accepted', for: { reference: 'Patient/someone-else' }, intent: 'plan' }), 422, before, ['Task.for', 'Task.intent']);
    await expectRefused(await put({ ...before, status: 'accepted', focus: { reference: 'ServiceRequest/other' } }), 422, before, ['Task.focus']);
    await expectRefused(await put({ ...before, businessStatus: { text: 'done soon' } }), 422, before, ['Task.businessStatus']);
    await expectRefused(await put({ ...before, status: 'failed' }), 422, before, ['Task.status']);
    await expectRefused(await patch(taskId, [{ op: 'add', path: '/note/-', value: { text: 'hello' } }]), 422, before, ['Task.note']);
    await expectRefused(await patch(taskId, [{ op: 'remove', path: '/requester' }, { op: 'replace', path: '/status', value: 'accepted' }]), 422, before, ['Task.requester']);
    // Malformed requests: 400 naming what is wrong; other content types 415.
    await expectRefused(await call('PUT', `/fhir/Task/${taskId}`, 'lakeside-consults', { ...before, id: 'another', status: 'accepted' }, { 'content-type': FHIR_JSON }), 400, before, ['Task.id']);
    await expectRefused(await call('PUT', `/fhir/Task/${taskId}`, 'lakeside-consults', { resourceType: 'Patient', id: taskId }, { 'content-type': FHIR_JSON }), 400, before, ['Task.resourceType']);
    await expectRefused(await patch(taskId, { op: 'replace' }), 400, before);
    await expectRefused(await patch(taskId, [{ op: 'jump', path: '/status' }]), 400, before, ['[0]']);
    await expectRefused(await patch(taskId, [{ op: 'test', path: '/status', value: 'accepted' }]), 422, before, ['Task.status']);
    await expectRefused(await call('PATCH', `/fhir/Task/${taskId}`, 'lakeside-consults', [{ op: 'replace', path: '/status', value: 'accepted' }], { 'content-type': 'application/json' }), 415, before);
    await expectRefused(await call('PUT', `/fhir/Task/${taskId}`, 'lakeside-consults', { ...before, status: 'accepted' }, { 'content-type': JSON_PATCH }), 415, before);
  });

  it('versions, tables and access: stale If-Match 412, a transition the table refuses 409, another clinic 404, the referrer may only cancel or answer', async () => {
    const { taskId } = await referral();
    const before = await taskNow(taskId);
    await put({ ...before, status: 'accepted' });
    const accepted = await taskNow(taskId);
    await expectRefused(await put({ ...before, status: 'rejected', statusReason: { text: 'late' } }, 'lakeside-consults', { 'if-match': `W/"${before.meta?.versionId}"` }), 412, accepted, ['If-Match']);
    await expectRefused(await patch(taskId, [{ op: 'replace', path: '/status', value: 'in-progress' }], 'lakeside-consults', { 'if-match': `W/"${before.meta?.versionId}"` }), 412, accepted, ['If-Match']);
    await expectRefused(await put({ ...accepted, status: 'in-progress' }, 'lakeside-consults', { 'if-match': 'yesterday' }), 400, accepted, ['If-Match']);
    const refused = await expectRefused(await put({ ...accepted, status: 'rejected', statusReason: { text: 'late' } }), 409, accepted, ['Task.status']);
    expect(refused.issue?.[0]?.details?.text).toMatch(/'decline' is not allowed on a Task that is accepted .*; allowed now: start$/);
    await expectRefused(await put({ ...accepted, status: 'in-progress' }, 'northfield-pathology'), 404, accepted);
    await expectRefused(await patch(taskId, [{ op: 'replace', path: '/status', value: 'in-progress' }], 'northfield-pathology'), 404, accepted);
    await expectRefused(await put({ ...accepted, id: 'no-such-task' }, 'lakeside-consults'), 404, accepted);
    await expectRefused(await put({ ...accepted, status: 'completed' }, 'st-olaf'), 422, accepted, ['Task.status']);
    // The referrer's in-progress is its answer to a request for information: it needs the answer (test/referrer-over-fhir-flow.test.ts).
    await expectRefused(await put({ ...accepted, status: 'in-progress' }, 'st-olaf'), 422, accepted, ['Task.note']);
  });

  it('the referrer cancels its Task with status cancelled: as the JSON cancel (Task cancelled, statusReason, referral revoked); once in progress it asks the clinic', async () => {
    const [json, fhir] = [await referral(), await referral()];
    expect((await call('POST', `/second-opinions/${json.id}/cancel`, 'st-olaf', { reason: 'Patient chose another provider' })).status).toBe(200);
    const before = await taskNow(fhir.taskId);
    await expectRefused(await put({ ...before, status: 'cancelled' }, 'st-olaf'), 422, before, ['Task.statusReason.text']);
    const cancelled = await put({ ...before, status: 'cancelled', statusReason: { text: 'Patient chose another provider' } }, 'st-olaf');
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', statusReason: { text: 'Patient chose another provider' } });
    await expectTwins(json.taskId, fhir.taskId, cancelled.body);
    expect((await store.read<ServiceRequest>('ServiceRequest', fhir.id, 'system'))?.status).toBe('revoked');

    // In progress: the cancellation is asked for (business status), and the clinic confirms it by PUT.
    const { id, taskId } = await referral();
    await put({ ...(await taskNow(taskId)), status: 'accepted' });
    await put({ ...(await taskNow(taskId)), status: 'in-progress' });
    const asked = await patch(taskId, [{ op: 'replace', path: '/status', value: 'cancelled' }, { op: 'add', path: '/statusReason', value: { text: 'Changed our mind' } }], 'st-olaf');
    expect(asked.status, JSON.stringify(asked.body)).toBe(200);
    expect(asked.body).toMatchObject({ status: 'in-progress', businessStatus: { coding: [{ code: 'cancellation-requested' }], text: 'Changed our mind' } });
    const confirmed = await put({ ...asked.body, status: 'cancelled' });
    expect(confirmed.status, JSON.stringify(confirmed.body)).toBe(200);
    expect(confirmed.body).toMatchObject({ status: 'cancelled', statusReason: { text: "Cancelled at the referrer's request" } });
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('revoked');
  });
});
