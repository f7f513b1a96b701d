import type { AuditEvent, Bundle, Consent, DocumentReference, OperationOutcome, Provenance, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSENT_WITHDRAWN_REFUSAL } from '../src/access/consent-withdrawal.ts';
import type { WorklistItem } from '../src/consults/worklist.ts';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE, QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { opinionDeliveries, recordSetPushes } from '../src/store/schema.ts';
import { clientIdOf, startPushClinic } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * Consent withdrawn over real HTTP: the referrer records the withdrawal for one
 * clinic, or the EHR's Consent becomes inactive; from then on that clinic gets nothing more of the
 * records at any door (Bundle, DocumentReference, Binary, the push to its own server), each refusal
 * audited with its reason, while its Task ends cancelled with the reason and what the other clinic
 * already delivered stays with the referrer.
 */
describe('consent withdrawal (flow)', () => {
  let ehr: SandboxEhr;
  let clinic: SandboxEhr;
  let service: TestService;
  let store: ResourceStore;
  const validator = createValidator();
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0 });
    // Lakeside has its record sets pushed to its own server: the push is a door too.
    let networkFile: string;
    ({ clinic, networkFile } = await startPushClinic(ehr, 'lakeside-consults'));
    // The EHR's Consent is read again before every disclosure (no grace period), so the test sees its change at once.
    service = await startTestService({ NETWORK_FILE: networkFile, CONSENT_RECHECK_SECONDS: '0' }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 1 })),
      jobPollingIntervalSeconds: 0.5,
    });
    store = new ResourceStore(service.database.db, validator);
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
    await clinic?.stop();
  });

  /** A referral to both clinics on a Consent naming both, assembled; Lakeside's push made. */
  async function referToBoth(): Promise<{ id: string; lakesideTask: string; northfieldTask: string; consentId: string; bundleId: string; sha256: string; docRef: string }> {
    const consentId = await ehr.addConsent(['lakeside', 'northfield-pathology']);
    const body = makeSecondOpinionRequest(
      { consultants: ['lakeside-consults', 'northfield-pathology'], blinded: false, firstOpinion: { documents: [] }, consent: { reference: `Consent/${consentId}` }, records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }] } },
      ehr.seeded,
    );
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', body);
    expect(created.status).toBe(201);
    const { id } = created.body;
    const [lakesideTask, northfieldTask] = created.body.tasks.map((t) => t.id as string) as [string, string];
    await until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');
    await until(async () => ((await pushesOf(lakesideTask)).some((p) => p.status === 'pushed') ? true : undefined), 'push to Lakeside');
    const task = await call<Task>('GET', `/fhir/Task/${lakesideTask}`, 'lakeside-consults');
    const bundleId = (task.body.input?.[0]?.valueReference?.reference as string).replace('Bundle/', '');
    const bundle = await call<Bundle>('GET', `/fhir/Bundle/${bundleId}`, 'lakeside-consults');
    expect(bundle.status).toBe(200);
    const doc = bundle.body.entry?.[0]?.resource as DocumentReference;
    const sha256 = doc.content[0]?.attachment.url?.split('/').pop() as string;
    return { id, lakesideTask, northfieldTask, consentId, bundleId, sha256, docRef: `DocumentReference/${doc.id}` };
  }

  const pushesOf = (taskId: string) => service.database.db.select().from(recordSetPushes).where(eq(recordSetPushes.taskId, taskId));
  const binary = (sha256: string, who: string) => fetch(`${service.url}/fhir/Binary/${sha256}`, { headers: { authorization: `Bearer ${tokens[who]}` } });

  /** The refused AuditEvents of `participant` naming `reference`. */
  async function refusals(participant: string, reference: string): Promise<AuditEvent[]> {
    const page = await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 200, contains: [[{ entity: [{ what: { reference } }] }]] }, 'system');
    return page.resources.filter((e) => e.outcome === '4' && e.agent?.some((a) => a.who?.identifier?.value === participant));
  }

  it('withdrawn for one of two clinics: its Task is cancelled with the reason, every door refuses it the records (audited), the other clinic is untouched', async () => {
    const { id, lakesideTask, northfieldTask, bundleId, sha256, docRef } = await referToBoth();
    expect((await call('POST', `/consults/${lakesideTask}/accept`, 'lakeside-consults')).status).toBe(200);
    expect((await call('POST', `/consults/${lakesideTask}/start`, 'lakeside-consults')).status).toBe(200);
    expect((await binary(sha256, 'lakeside-consults')).status).toBe(200);

    const unknown = await call<OperationOutcome>('POST', `/second-opinions/${id}/consent-withdrawal`, 'st-olaf', { consultants: ['riverside-imaging'] });
    expect(unknown.status).toBe(422);
    expect(unknown.body.issue?.[0]).toMatchObject({ code: 'value', expression: ['consultants[0]'] });
    expect((await call('POST', `/second-opinions/${id}/consent-withdrawal`, 'lakeside-consults', {})).status).toBe(403);

    const reason = 'The patient no longer wants Lakeside to see the records';
    const withdrawn = await call<{ status: string; consultants: { participant: string; task: { id: string; status: string; statusReason?: string }; revoked: string[] }[] }>(
      'POST',
      `/second-opinions/${id}/consent-withdrawal`,
      'st-olaf',
      { consultants: ['lakeside-consults'], reason },
    );
    expect(withdrawn.status).toBe(200);
    expect(withdrawn.body.status).toBe('active');
    expect(withdrawn.body.consultants).toEqual([{ participant: 'lakeside-consults', task: { id: lakesideTask, status: 'cancelled', statusReason: `Consent withdrawn: ${reason}` }, revoked: expect.arrayContaining([`Bundle/${bundleId}`, docRef]) }]);

    // The Task: cancelled, the reason in statusReason, a Provenance naming the referrer; valid against our profile.
    const task = (await store.read<Task>('Task', lakesideTask, 'system')) as Task;
    expect(task).toMatchObject({ status: 'cancelled', statusReason: { text: `Consent withdrawn: ${reason}` } });
    validator.validate(task);
    const provenance = await store.search<Provenance>({ resourceType: 'Provenance', count: 5, contains: [[{ target: [{ reference: `Task/${lakesideTask}/_history/${task.meta?.versionId}` }] }]] }, 'system');
    expect(provenance.resources[0]?.reason?.[0]?.text).toMatch(/^withdraw-consent: /);
    // The clinic still sees its Task, and why it ended; its worklist says so too.
    expect((await call<Task>('GET', `/fhir/Task/${lakesideTask}`, 'lakeside-consults')).body.status).toBe('cancelled');
    const worklist = await call<{ items: WorklistItem[] }>('GET', '/consults?status=cancelled', 'lakeside-consults');
    expect(worklist.body.items.find((i) => i.task.id === lakesideTask)?.task.statusReason).toBe(`Consent withdrawn: ${reason}`);
    const summary = await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf');
    expect(summary.body.consultants.map((c) => [c.participant, c.task.status, c.task.statusReason])).toEqual([
      ['lakeside-consults', 'cancelled', `Consent withdrawn: ${reason}`],
      ['northfield-pathology', 'requested', undefined],
    ]);

    // Every door refuses Lakeside the records, and each refusal is audited with the reason.
    expect((await call('GET', `/fhir/Bundle/${bundleId}`, 'lakeside-consults')).status).toBe(404);
    expect((await call('GET', `/fhir/${docRef}`, 'lakeside-consults')).status).toBe(404);
    expect((await binary(sha256, 'lakeside-consults')).status).toBe(404);
    const search = await call<Bundle>('GET', `/fhir/Bundle?_id=${bundleId}`, 'lakeside-consults');
    expect(search.body.entry ?? []).toEqual([]);
    for (const reference of [`Bundle/${bundleId}`, docRef, `Binary/${sha256}`]) {
      const refused = await refusals('lakeside-consults', reference);
      expect(refused.map((e) => e.outcomeDesc), reference).toContain(CONSENT_WITHDRAWN_REFUSAL);
    }
    // A push of the record set (the job run again, as a re-drive would) is refused and audited.
    const [push] = await pushesOf(lakesideTask);
    await service.database.db.update(recordSetPushes).set({ status: 'pending' }).where(eq(recordSetPushes.id, push!.id));
    await service.jobs.enqueue(service.database.db, QUEUE.pushRecordSet, { pushId: push!.id }, { singletonKey: `${push!.id}-again` });
    const refusedPush = await until(async () => (await pushesOf(lakesideTask)).find((p) => p.status === 'refused'), 'refused push');
    expect(refusedPush.lastError).toBe('Refused: the patient withdrew consent to disclose the records to this clinic');
    const pushAudit = await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 50, contains: [[{ entity: [{ what: { reference: `Bundle/${bundleId}` } }] }], [{ subtype: [{ code: 'disclose' }] }]] }, 'system');
    expect(pushAudit.resources.filter((e) => e.outcome === '4').map((e) => e.outcomeDesc)).toContain('Refused: the patient withdrew consent to disclose the records to this clinic');

    // Northfield is untouched: its Task open, its records readable.
    expect((await store.read<Task>('Task', northfieldTask, 'system'))?.status).toBe('requested');
    expect((await call('GET', `/fhir/Bundle/${bundleId}`, 'northfield-pathology')).status).toBe(200);
    expect((await binary(sha256, 'northfield-pathology')).status).toBe(200);
    // The referrer too.
    expect((await call('GET', `/fhir/Bundle/${bundleId}`, 'st-olaf')).status).toBe(200);

    // A replay changes nothing and answers the same.
    const again = await call<typeof withdrawn.body>('POST', `/second-opinions/${id}/consent-withdrawal`, 'st-olaf', { consultants: ['lakeside-consults'], reason });
    expect(again.status).toBe(200);
    expect(again.body.consultants).toEqual([{ ...withdrawn.body.consultants[0], revoked: [] }]);
    expect((await store.read<Task>('Task', lakesideTask, 'system'))?.meta?.versionId).toBe(task.meta?.versionId);
  });

  it('withdrawn for all after one opinion came back: what was delivered stays with the referrer, the clinic reads no more records', async () => {
    const { id, lakesideTask, northfieldTask, bundleId } = await referToBoth();
    for (const action of ['accept', 'start']) expect((await call('POST', `/consults/${northfieldTask}/${action}`, 'northfield-pathology')).status).toBe(200);
    const completed = await call<Task>('POST', `/consults/${northfieldTask}/opinion`, 'northfield-pathology', EXAMPLE_OPINION);
    expect(completed.status).toBe(200);
    const note = completed.body.output?.[0]?.valueReference?.reference as string;

    const withdrawn = await call<{ status: string; consultants: { participant: string; task: { status: string } }[] }>('POST', `/second-opinions/${id}/consent-withdrawal`, 'st-olaf', {});
    expect(withdrawn.status).toBe(200);
    // Lakeside's open Task is cancelled; Northfield's completed one stands; the referral completes (an opinion came back).
    expect(withdrawn.body).toMatchObject({ status: 'completed', consultants: [{ participant: 'lakeside-consults', task: { status: 'cancelled' } }, { participant: 'northfield-pathology', task: { status: 'completed' } }] });
    expect((await store.read<Task>('Task', lakesideTask, 'system'))?.status).toBe('cancelled');

    // Northfield reads no more records, but the referrer keeps the opinion, and its post-back still happens.
    expect((await call('GET', `/fhir/Bundle/${bundleId}`, 'northfield-pathology')).status).toBe(404);
    expect((await call('GET', `/fhir/${note}`, 'st-olaf')).status).toBe(200);
    const noteId = note.replace('DocumentReference/', '');
    const delivery = await until(async () => (await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, noteId))).find((d) => d.status === 'delivered'), 'post-back');
    expect(delivery.status).toBe('delivered');
    const summary = await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf');
    expect(summary.body.consultants.find((c) => c.participant === 'northfield-pathology')?.opinion?.documentReference).toBe(note);
  });

  it("the EHR's Consent becomes inactive: the next disclosure is refused and audited, and the clinics' Tasks are cancelled", async () => {
    const { id, lakesideTask, northfieldTask, consentId, bundleId, sha256 } = await referToBoth();
    expect((await binary(sha256, 'northfield-pathology')).status).toBe(200);
    const consent = (await ehr.repo.readResource<Consent>('Consent', consentId)) as Consent;
    await ehr.repo.updateResource<Consent>({ ...consent, status: 'inactive' });

    expect((await binary(sha256, 'northfield-pathology')).status).toBe(404);
    const refused = await refusals('northfield-pathology', `Binary/${sha256}`);
    expect(refused.map((e) => e.outcomeDesc)).toContain(CONSENT_WITHDRAWN_REFUSAL);
    for (const taskId of [lakesideTask, northfieldTask]) {
      const task = (await store.read<Task>('Task', taskId, 'system')) as Task;
      expect(task).toMatchObject({ status: 'cancelled', statusReason: { text: "Consent withdrawn: the patient's Consent on the referring EHR is now inactive" } });
      validator.validate(task);
    }
    expect((await call('GET', `/fhir/Bundle/${bundleId}`, 'lakeside-consults')).status).toBe(404);
    const summary = await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf');
    expect(summary.body.status).toBe('revoked');
  });
});
