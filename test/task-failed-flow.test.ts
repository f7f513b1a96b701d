import type { OperationOutcome, Provenance, ServiceRequest, Task } from '@medplum/fhirtypes';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Worklist } from '../src/consults/worklist.ts';
import { PROFILE, SERVICE_DEVICE_DISPLAY } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE, QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/** The assembly's retry budget in this file: 2 retries, so the third attempt is the last. */
const RETRIES = 2;

/**
 * The Task status `failed` over real HTTP against the sandbox EHR: the referring
 * EHR stays down through the assembly's whole retry budget, so every Task whose clinic has no
 * record set yet fails, with the reason, and the referral settles; the referrer asks the clinic
 * again and its new Task goes on. A clinic that already holds a record set keeps working.
 */
describe('Task failed: the record set could not be assembled (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let store: ResourceStore;
  const validator = createValidator();
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 50_000 } });
    const networkFile = await writeSandboxNetwork({ baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl }, { timeoutMs: 5_000 });
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 1, ...(q.name === QUEUE.assembleRecordSet ? { retryLimit: RETRIES } : {}) })),
      jobPollingIntervalSeconds: 0.5,
    });
    store = new ResourceStore(service.database.db, validator);
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterEach(() => ehr?.faults.clear());
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  const summary = async (id: string) => (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
  const readTask = async (id: string) => (await store.read<Task>('Task', id, 'system')) as Task;
  const businessCode = (t: Task | undefined) => t?.businessStatus?.coding?.[0]?.code;
  const worklistIds = async (who: string) => (await call<Worklist>('GET', '/consults?_count=100', who)).body.items.map((i) => i.task.id);
  const docRef = (key: string) => ({ reference: `DocumentReference/${seededDocument(ehr.seeded, key).id}` });
  const unreachable = `The record set could not be assembled: the referring EHR could not be reached after ${RETRIES + 1} attempts`;

  it('the EHR stays down through the retry budget: the Task fails with its reason, the referral settles; asked again, the clinic gets a new Task that goes on', async () => {
    ehr.faults.add({ path: '/fhir/R4/DocumentReference?', status: 503 });
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants: ['lakeside-consults'] }, ehr.seeded));
    expect(created.status).toBe(201);
    const id = created.body.id;
    const taskId = created.body.tasks[0]?.id as string;

    const failed = await until(async () => ((await summary(id)).recordSet.status === 'records-failed' ? summary(id) : undefined), 'the failed assembly', 60_000);
    expect(failed.recordSet).toMatchObject({ status: 'records-failed', attempts: RETRIES + 1, failureReason: expect.stringMatching(/^The referring EHR could not be reached after 3 attempts: /) });
    expect(failed.status).toBe('revoked');
    expect(failed.consultants).toEqual([
      expect.objectContaining({
        participant: 'lakeside-consults',
        task: expect.objectContaining({ id: taskId, status: 'failed', statusReason: unreachable, businessStatus: 'records-failed', businessStatusText: 'Record set could not be assembled', overdue: false }),
      }),
    ]);

    // The Task as stored: failed, the reason in statusReason, valid against our Task profile; a Provenance names the service.
    const task = await readTask(taskId);
    expect(task).toMatchObject({ status: 'failed', statusReason: { text: unreachable }, businessStatus: { coding: [{ code: 'records-failed' }] } });
    expect(task.businessStatus?.text).toBe(`The referring EHR could not be reached after 3 attempts: GET ${ehr.baseUrl}/DocumentReference HTTP 503 (exception)`);
    expect(task.input).toBeUndefined();
    expect(task.meta?.profile).toContain(PROFILE.task);
    expect(validator.validate(task)).toEqual([]);
    const provenance = await store.search<Provenance>({ resourceType: 'Provenance', contains: [[{ target: [{ reference: `Task/${taskId}/_history/${task.meta?.versionId}` }] }]], count: 10 }, 'system');
    expect(provenance.resources).toHaveLength(1);
    expect(provenance.resources[0]).toMatchObject({ reason: [{ text: expect.stringMatching(/^fail: /) }], agent: [{ who: { display: SERVICE_DEVICE_DISPLAY } }] });
    expect(validator.validate(provenance.resources[0] as Provenance)).toEqual([]);
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('revoked');

    // Nothing of the case reached the clinic (no record set, no consent decision): not in its worklist, 404 on the Task.
    expect(await worklistIds('lakeside-consults')).not.toContain(taskId);
    expect((await call<OperationOutcome>('GET', `/fhir/Task/${taskId}`, 'lakeside-consults')).status).toBe(404);
    // A clinic cannot act on it, nor can the referrer cancel what has ended.
    expect((await call<OperationOutcome>('POST', `/second-opinions/${id}/cancel`, 'st-olaf', { reason: 'too late' })).status).toBe(409);

    // The EHR is back: the referrer asks the same clinic again; the referral is active again and the new Task goes on.
    ehr.faults.clear();
    const added = await call<{ id: string; serviceRequest: ServiceRequest; tasks: Task[] }>('POST', `/second-opinions/${id}/consultants`, 'st-olaf', { consultants: ['lakeside-consults'] });
    expect(added.status).toBe(201);
    expect(added.body.serviceRequest.status).toBe('active');
    const newTaskId = added.body.tasks[0]?.id as string;
    expect(newTaskId).not.toBe(taskId);
    await until(async () => (businessCode(await readTask(newTaskId)) === 'records-ready' ? true : undefined), 'the new Task records-ready', 60_000);
    expect(await worklistIds('lakeside-consults')).toContain(newTaskId);
    expect(await worklistIds('lakeside-consults')).not.toContain(taskId);
    const accepted = await call<Task>('POST', `/consults/${newTaskId}/accept`, 'lakeside-consults');
    expect(accepted.status).toBe(200);
    expect(accepted.body.status).toBe('accepted');

    const after = await summary(id);
    expect(after.status).toBe('active');
    expect(after.recordSet).toMatchObject({ status: 'records-ready', recordsRevision: 1, assembledRevision: 1 });
    expect(after.consultants.map((c) => [c.task.id, c.task.status, c.task.statusReason])).toEqual([
      [taskId, 'failed', unreachable],
      [newTaskId, 'accepted', undefined],
    ]);
  });

  it('a clinic already holding a record set keeps working when a later assembly fails; only the clinic without one fails, and the referral stays active', async () => {
    // The Consent covers Lakeside only: Northfield waits for consent, with no record set.
    const consent = await ehr.addConsent(['lakeside']);
    const created = await call<{ id: string; tasks: Task[] }>(
      'POST',
      '/second-opinions',
      'st-olaf',
      makeSecondOpinionRequest({ consultants: ['lakeside-consults', 'northfield-pathology'], consent: { reference: `Consent/${consent}` } }, ehr.seeded),
    );
    expect(created.status).toBe(201);
    const id = created.body.id;
    const [lakeside, northfield] = created.body.tasks.map((t) => t.id as string) as [string, string];
    const ready = await until(async () => ((await summary(id)).recordSet.status === 'records-ready' ? summary(id) : undefined), 'the record set', 60_000);
    expect(businessCode(await readTask(northfield))).toBe('awaiting-consent');
    expect((await call('POST', `/consults/${lakeside}/accept`, 'lakeside-consults')).status).toBe(200);

    // Records added while the EHR is down: that assembly fails after its budget.
    ehr.faults.add({ path: '/fhir/R4/DocumentReference', status: 503 });
    const posted = await call<{ recordsRevision: number }>('POST', `/second-opinions/${id}/records`, 'st-olaf', { documents: [docRef('progress-2024')] });
    expect(posted.status).toBe(202);
    const failed = await until(async () => {
      const s = await summary(id);
      return s.recordSet.status === 'records-failed' && s.recordSet.assembledRevision === 1 ? s : undefined;
    }, 'the failed re-assembly', 60_000);
    expect(failed.status).toBe('active');
    const stillWorking = await readTask(lakeside);
    expect(stillWorking).toMatchObject({ status: 'accepted', businessStatus: { coding: [{ code: 'records-ready' }] }, input: [{ valueReference: { reference: `Bundle/${ready.recordSet.bundleId}` } }] });
    expect(stillWorking.statusReason).toBeUndefined();
    const gone = await readTask(northfield);
    expect(gone).toMatchObject({ status: 'failed', statusReason: { text: unreachable }, businessStatus: { coding: [{ code: 'records-failed' }] } });
    expect(validator.validate(gone)).toEqual([]);
    expect(failed.consultants.map((c) => [c.participant, c.task.status, c.task.statusReason])).toEqual([
      ['lakeside-consults', 'accepted', undefined],
      ['northfield-pathology', 'failed', unreachable],
    ]);
    // Lakeside's worklist still shows its Task with the record set it has.
    const item = (await call<Worklist>('GET', '/consults?_count=100', 'lakeside-consults')).body.items.find((i) => i.task.id === lakeside);
    expect(item).toMatchObject({ task: { status: 'accepted' }, recordSet: `${service.config.publicUrl}/fhir/Bundle/${ready.recordSet.bundleId}` });

    // The EHR is back: posting the records again assembles them for the Task still open.
    ehr.faults.clear();
    const retry = await call<{ id: string; recordsRevision: number; added: unknown[] }>('POST', `/second-opinions/${id}/records`, 'st-olaf', { documents: [docRef('progress-2024')] });
    expect(retry.status).toBe(202);
    expect(retry.body).toEqual({ id, recordsRevision: 2, added: [] });
    const recovered = await until(async () => ((await summary(id)).recordSet.status === 'records-ready' ? summary(id) : undefined), 'the new record set', 60_000);
    expect(recovered.recordSet.assembledRevision).toBe(2);
    expect((await readTask(lakeside)).input).toEqual([{ type: { text: 'record-set' }, valueReference: { reference: `Bundle/${recovered.recordSet.bundleId}` } }]);
    expect((await readTask(northfield)).status).toBe('failed');
  });
});
