import type { OperationOutcome, Provenance, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorklistItem } from '../src/consults/worklist.ts';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { clientIdOf, startPushClinic } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * The Task status `received`, over real HTTP: a clinic's system acknowledges its
 * Task (JSON and FHIR doors), or a clinic's FHIR server accepts the pushed record set; it shows
 * in the summary and the worklist, the Task valid against our profile.
 */
describe('Task received (flow)', () => {
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
    // Northfield's record sets are pushed to its own server; Lakeside pulls from its worklist.
    let networkFile: string;
    ({ clinic, networkFile } = await startPushClinic(ehr, 'northfield-pathology'));
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, {
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

  /** A referral to `consultants` on a Consent naming them; waits until its assembly has ended. */
  async function refer(consultants: string[]): Promise<{ id: string; tasks: string[] }> {
    const consentId = await ehr.addConsent(['lakeside', 'northfield-pathology']);
    const body = makeSecondOpinionRequest(
      { consultants, blinded: false, firstOpinion: { documents: [] }, consent: { reference: `Consent/${consentId}` }, records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }] } },
      ehr.seeded,
    );
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', body);
    expect(created.status).toBe(201);
    const { id } = created.body;
    await until(async () => ((await summaryOf(id)).recordSet.status === 'records-pending' ? undefined : true), 'the assembly');
    return { id, tasks: created.body.tasks.map((t) => t.id as string) };
  }
  const summaryOf = async (id: string) => (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
  const taskIn = async (id: string, participant: string) => (await summaryOf(id)).consultants.find((c) => c.participant === participant)?.task;
  const worklistItem = async (participant: string, taskId: string) => (await call<{ items: WorklistItem[] }>('GET', '/consults', participant)).body.items.find((i) => i.task.id === taskId);

  it('received by acknowledgement: POST /consults/{taskId}/receive, once; then accept from received', async () => {
    const { id, tasks } = await refer(['lakeside-consults']);
    const taskId = tasks[0] as string;
    const acknowledged = await call<Task>('POST', `/consults/${taskId}/receive`, 'lakeside-consults');
    expect(acknowledged.status).toBe(200);
    expect(acknowledged.body.status).toBe('received');
    validator.validate(acknowledged.body);
    const provenance = await store.search<Provenance>({ resourceType: 'Provenance', count: 5, contains: [[{ target: [{ reference: `Task/${taskId}/_history/${acknowledged.body.meta?.versionId}` }] }]] }, 'system');
    expect(provenance.resources[0]).toMatchObject({ reason: [{ text: 'receive: the Task reached the consultant (its system acknowledged it, or accepted the pushed record set)' }], agent: [{ who: { reference: 'Organization/lakeside' } }] });
    expect((await taskIn(id, 'lakeside-consults'))?.status).toBe('received');
    expect(await worklistItem('lakeside-consults', taskId)).toMatchObject({ task: { status: 'received' }, actions: ['accept', 'decline'] });

    const again = await call<OperationOutcome>('POST', `/consults/${taskId}/receive`, 'lakeside-consults');
    expect(again.status).toBe(409);
    expect(again.body.issue?.[0]).toMatchObject({ code: 'business-rule', details: { text: "'receive' is not allowed on a Task that is received (records-ready); allowed now: accept, decline" }, expression: ['Task.status'] });
    expect((await call('POST', `/consults/${taskId}/receive`, 'st-olaf')).status).toBe(403);
    expect((await call('POST', `/consults/${taskId}/accept`, 'lakeside-consults')).status).toBe(200);
  });

  it('received over FHIR: the owner updates its Task to received', async () => {
    const { id, tasks } = await refer(['lakeside-consults']);
    const taskId = tasks[0] as string;
    const read = await call<Task>('GET', `/fhir/Task/${taskId}`, 'lakeside-consults');
    const put = await call<Task>('PUT', `/fhir/Task/${taskId}`, 'lakeside-consults', { ...read.body, status: 'received' }, { 'content-type': 'application/fhir+json', 'If-Match': `W/"${read.body.meta?.versionId}"` });
    expect(put.status).toBe(200);
    expect(put.body.status).toBe('received');
    expect((await taskIn(id, 'lakeside-consults'))?.status).toBe('received');
  });

  it('received when the clinic FHIR server accepted the pushed record set', async () => {
    const { id, tasks } = await refer(['northfield-pathology']);
    const taskId = tasks[0] as string;
    const task = await until(async () => {
      const t = await store.read<Task>('Task', taskId, 'system');
      return t?.status === 'received' ? t : undefined;
    }, 'received after the push');
    validator.validate(task);
    const provenance = await store.search<Provenance>({ resourceType: 'Provenance', count: 5, contains: [[{ target: [{ reference: `Task/${taskId}/_history/${task.meta?.versionId}` }] }]] }, 'system');
    expect(provenance.resources[0]?.agent?.[0]?.who?.reference).toBe('Organization/northfield-pathology');
    expect((await taskIn(id, 'northfield-pathology'))?.status).toBe('received');
    expect(await worklistItem('northfield-pathology', taskId)).toMatchObject({ task: { status: 'received', businessStatus: 'records-ready' } });
  });
});
