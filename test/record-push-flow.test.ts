import type { AuditEvent, DocumentReference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYSTEM } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { QUEUE, QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { recordSetPushes } from '../src/store/schema.ts';
import { clientIdOf, startPushClinic } from './support/example-network.ts';
import { until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * Record sets pushed to a consulting clinic's own FHIR server, over real HTTP:
 * the referring EHR and the clinic's server are two strict sandbox EHRs (server ids, scopes
 * enforced, references checked on write). The clinic registered the service with exactly the
 * scope a push needs there.
 */
describe('record-set push to a clinic FHIR server (flow)', () => {
  let ehr: SandboxEhr;
  let clinic: SandboxEhr;
  let service: TestService;
  let store: ResourceStore;
  let referrerToken: string;
  const validator = createValidator();
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0 });
    let networkFile: string;
    ({ clinic, networkFile } = await startPushClinic(ehr, 'lakeside-consults'));
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 2 })),
      jobPollingIntervalSeconds: 0.5,
    });
    store = new ResourceStore(service.database.db, validator);
    referrerToken = await getAccessToken(service.url, clientIdOf('st-olaf'));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
    await clinic?.stop();
  });

  async function refer(): Promise<{ id: string; taskId: string }> {
    const body = makeSecondOpinionRequest(
      { consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] }, records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }] } },
      ehr.seeded,
    );
    const res = await fetch(`${service.url}/second-opinions`, { method: 'POST', headers: { authorization: `Bearer ${referrerToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(res.status).toBe(201);
    const created = (await res.json()) as { id: string; tasks: Task[] };
    return { id: created.id, taskId: created.tasks[0]?.id as string };
  }

  const pushesOf = (taskId: string) => service.database.db.select().from(recordSetPushes).where(eq(recordSetPushes.taskId, taskId));
  const pushed = (taskId: string, count = 1) =>
    until(async () => {
      const rows = (await pushesOf(taskId)).filter((r) => r.status === 'pushed' || r.status === 'failed');
      return rows.length >= count ? rows : undefined;
    }, `push of Task/${taskId}`);
  /** What the clinic's server holds with one of our identifiers. */
  async function onClinic<T extends DocumentReference | ServiceRequest | Task>(type: T['resourceType'], system: string, value: string): Promise<T[]> {
    return (await clinic.repo.searchResources<T>({ resourceType: type, filters: [{ code: 'identifier', operator: 'eq' as never, value: `${system}|${value}` }] })) as T[];
  }
  async function disclosures(bundleId: string): Promise<AuditEvent[]> {
    const page = await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 50, contains: [[{ entity: [{ what: { reference: `Bundle/${bundleId}` } }] }], [{ subtype: [{ code: 'disclose' }] }]] }, 'system');
    return page.resources.filter((e) => e.entity?.some((x) => x.what?.reference === `Bundle/${bundleId}`) && /pushed to the consultant's FHIR server|push attempt/.test(e.outcomeDesc ?? ''));
  }

  it('records-ready: the record set, the referral and the Task arrive on the clinic server as one transaction, audited', async () => {
    const { id, taskId } = await refer();
    const [push] = await pushed(taskId);
    expect(push).toMatchObject({ status: 'pushed', attempts: 1, participantId: 'lakeside-consults', serviceRequestId: id, lastError: null });
    const task = (await store.read<Task>('Task', taskId, 'system')) as Task;
    expect(task.businessStatus?.coding?.[0]?.code).toBe('records-ready');
    expect(task.input?.[0]?.valueReference?.reference).toBe(`Bundle/${push!.bundleId}`);

    const [remoteTask, ...moreTasks] = await onClinic<Task>('Task', SYSTEM.taskId, taskId);
    expect(moreTasks).toEqual([]);
    const [remoteRequest] = await onClinic<ServiceRequest>('ServiceRequest', SYSTEM.serviceRequestId, id);
    expect(push!.remote).toEqual({ serviceRequest: `ServiceRequest/${remoteRequest!.id}`, task: `Task/${remoteTask!.id}`, taskVersion: remoteTask!.meta?.versionId, records: expect.any(Object) });
    // The Task copy points at the ServiceRequest copy and the records on the clinic's server; the clinic by identifier.
    expect(remoteTask!.focus).toEqual({ reference: `ServiceRequest/${remoteRequest!.id}`, type: 'ServiceRequest' });
    expect(remoteTask!.owner).toEqual({ type: 'Organization', identifier: { system: 'https://registry.example.org/organizations', value: 'ORG-2001' }, display: 'Lakeside Clinic (example)' });
    expect(remoteTask!.for).toMatchObject({ identifier: { system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' } });
    expect(remoteTask!.for?.reference).toBeUndefined();

    const bundle = await store.read('Bundle', push!.bundleId, 'system');
    const copies = ((bundle as { entry?: { resource: DocumentReference }[] }).entry ?? []).map((e) => e.resource);
    expect(copies.length).toBeGreaterThan(0);
    const remoteDocs = await Promise.all(copies.map(async (c) => (await onClinic<DocumentReference>('DocumentReference', SYSTEM.recordCopyId, c.id as string))));
    expect(remoteDocs.map((d) => d.length)).toEqual(copies.map(() => 1));
    expect(remoteTask!.input?.map((i) => i.valueReference?.reference)).toEqual(remoteDocs.map((d) => `DocumentReference/${d[0]!.id}`));
    for (const [i, [doc]] of remoteDocs.entries()) {
      // Attachments are links to this service's Binary URLs, with the size and hash measured here.
      expect(doc!.content.map((c) => c.attachment)).toEqual(copies[i]!.content.map((c) => c.attachment));
      expect(doc!.content[0]?.attachment.url).toMatch(new RegExp(`^${service.config.publicUrl}/fhir/Binary/[0-9a-f]{64}$`));
      expect(doc!.subject).toEqual({ type: 'Patient', identifier: { system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }, display: 'Alex Example' });
      validator.validate(doc!);
    }
    validator.validate(remoteTask!);
    validator.validate(remoteRequest!);

    const audit = await disclosures(push!.bundleId);
    expect(audit.map((e) => [e.outcome, e.outcomeDesc])).toEqual([['0', `Record set Bundle/${push!.bundleId} of ServiceRequest/${id} pushed to the consultant's FHIR server (attempt 1)`]]);
    expect(audit[0]!.entity?.map((e) => e.what?.reference)).toEqual([`${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`, `Bundle/${push!.bundleId}`, ...copies.map((c) => `DocumentReference/${c.id}`)]);

    // A replayed job (the same push run again, as after a lost response): the conditional creates find what exists.
    await service.database.db.update(recordSetPushes).set({ status: 'pending' }).where(eq(recordSetPushes.id, push!.id));
    await service.jobs.enqueue(service.database.db, QUEUE.pushRecordSet, { pushId: push!.id }, { singletonKey: push!.id });
    const [again] = await pushed(taskId);
    expect(again).toMatchObject({ status: 'pushed', attempts: 2 });
    expect(again!.remote).toEqual(push!.remote);
    expect(await onClinic<Task>('Task', SYSTEM.taskId, taskId)).toHaveLength(1);
    expect(await onClinic<ServiceRequest>('ServiceRequest', SYSTEM.serviceRequestId, id)).toHaveLength(1);
    for (const c of copies) expect(await onClinic<DocumentReference>('DocumentReference', SYSTEM.recordCopyId, c.id as string)).toHaveLength(1);
  });

  it('a 503 from the clinic server is retried, then the push succeeds; both attempts are audited', async () => {
    const fault = clinic.faults.add({ path: /^\/fhir\/R4\/?$/, method: 'POST', status: 503, times: 1 });
    try {
      const { taskId } = await refer();
      const [push] = await pushed(taskId);
      expect(fault.hits).toBe(1);
      expect(push).toMatchObject({ status: 'pushed', attempts: 2, lastError: null, lastOutcome: null });
      expect(await onClinic<Task>('Task', SYSTEM.taskId, taskId)).toHaveLength(1);
      const audit = await disclosures(push!.bundleId);
      expect(audit.map((e) => [e.outcome, e.outcomeDesc?.replace(/^Record set Bundle\/\S+ of ServiceRequest\/\S+ /, '')]).sort()).toEqual([
        ['0', "pushed to the consultant's FHIR server (attempt 2)"],
        ['8', 'Record set push attempt 1 failed'],
      ]);
    } finally {
      clinic.faults.remove(fault);
    }
  });

  it('a refusal by the clinic server stops at once (dead letter) with its OperationOutcome kept; an auditor re-drives it', async () => {
    const fault = clinic.faults.add({ path: /^\/fhir\/R4\/?$/, method: 'POST', status: 403, times: 1 });
    const auditorToken = await getAccessToken(service.url, clientIdOf('audit-office'));
    const admin = async <T>(method: string, pathname: string, token = auditorToken) => {
      const res = await fetch(`${service.url}${pathname}`, { method, headers: { authorization: `Bearer ${token}` } });
      return { status: res.status, body: (await res.json()) as T };
    };
    try {
      const { taskId } = await refer();
      const [push] = await pushed(taskId);
      expect(push).toMatchObject({ status: 'failed', attempts: 1, lastError: expect.stringContaining('403') });
      expect(push!.lastOutcome).toEqual({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'processing', details: { text: 'Injected fault: HTTP 403' } }] });
      expect(await onClinic<Task>('Task', SYSTEM.taskId, taskId)).toEqual([]);

      const list = await admin<{ items: { id: string; status: string; lastOutcome?: unknown }[] }>('GET', '/admin/record-pushes?status=failed');
      expect(list.status).toBe(200);
      expect(list.body.items.find((i) => i.id === push!.id)).toMatchObject({ status: 'failed', lastOutcome: push!.lastOutcome });
      expect((await admin('GET', '/admin/record-pushes', referrerToken)).status).toBe(403);
      const bad = await admin<{ issue: unknown[] }>('GET', '/admin/record-pushes?status=lost');
      expect(bad).toEqual({ status: 400, body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'value', details: { text: 'status must be one of pending, pushed, failed, superseded, refused' }, expression: ['status'] }] } });

      const redrive = await admin<{ status: string }>('POST', `/admin/record-pushes/${push!.id}/retry`);
      expect(redrive).toMatchObject({ status: 202, body: { id: push!.id, status: 'pending' } });
      const done = await until(async () => (await pushesOf(taskId)).find((r) => r.status === 'pushed'), 're-driven push');
      expect(done).toMatchObject({ id: push!.id, attempts: 2, lastError: null });
      expect(await onClinic<Task>('Task', SYSTEM.taskId, taskId)).toHaveLength(1);
      expect((await admin<unknown>('POST', `/admin/record-pushes/${push!.id}/retry`)).status).toBe(409);
      expect((await admin<unknown>('POST', '/admin/record-pushes/no-such-push/retry')).status).toBe(404);
    } finally {
      clinic.faults.remove(fault);
    }
  });

  it('a new version of the record set (records added) is pushed as new resources; the Task is updated, its history kept', async () => {
    const { id, taskId } = await refer();
    const [first] = await pushed(taskId);
    const res = await fetch(`${service.url}/second-opinions/${id}/records`, {
      method: 'POST',
      headers: { authorization: `Bearer ${referrerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ documents: [{ reference: `DocumentReference/${docId('discharge-2024')}` }] }),
    });
    expect(res.status).toBe(202);
    const rows = await pushed(taskId, 2);
    const second = rows.find((r) => r.id !== first!.id)!;
    expect(second).toMatchObject({ status: 'pushed', attempts: 1 });
    expect(second.bundleId).not.toBe(first!.bundleId);
    expect(second.remote!.task).toBe(first!.remote!.task);
    expect(second.remote!.serviceRequest).toBe(first!.remote!.serviceRequest);

    const remoteTasks = await onClinic<Task>('Task', SYSTEM.taskId, taskId);
    expect(remoteTasks).toHaveLength(1);
    expect(remoteTasks[0]!.meta?.versionId).toBe(second.remote!.taskVersion);
    expect(second.remote!.taskVersion).not.toBe(first!.remote!.taskVersion);
    // The earlier version of the Task on the clinic's server still names the first record set's copies.
    const history = await clinic.repo.readHistory<Task>('Task', remoteTasks[0]!.id as string);
    expect(history.entry?.length).toBe(2);

    // Every record of the new version is a new resource; the op note (in both) names the copy it replaces.
    const opNoteSource = `${ehr.baseUrl}/DocumentReference/${docId('op-note-2024')}`;
    const oldRemote = first!.remote!.records[opNoteSource]!;
    const newRemote = second.remote!.records[opNoteSource]!;
    expect(newRemote).not.toBe(oldRemote);
    const replacing = await clinic.repo.readResource<DocumentReference>('DocumentReference', newRemote.split('/')[1]!);
    expect(replacing.relatesTo).toEqual([{ code: 'replaces', target: { reference: oldRemote } }]);
    expect(Object.keys(second.remote!.records)).toContain(`${ehr.baseUrl}/DocumentReference/${docId('discharge-2024')}`);
    expect(remoteTasks[0]!.input?.map((i) => i.valueReference?.reference).sort()).toEqual(Object.values(second.remote!.records).sort());
    // The first version's copies are still there, untouched.
    const old = await clinic.repo.readResource<DocumentReference>('DocumentReference', oldRemote.split('/')[1]!);
    expect(old.relatesTo).toBeUndefined();
  });
});
