import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Binary, Bundle, DocumentReference, OperationOutcome, ServiceRequest, Task } from '@medplum/fhirtypes';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE, QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { intakeRequests, recordSetAssemblies } from '../src/store/schema.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { makePdf, sha1Base64 } from './support/sandbox-ehr/documents.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { generateClientKey, getAccessToken } from './support/tokens.ts';
import { INTEGRITY_FETCHES } from '../src/records/store-record.ts';

const ROOT = path.join(import.meta.dirname, '..');
const OTHER_REFERRER = { participant: 'harbor-hospital', clientId: 'harbor-ehr' };

/**
 * Adding records to a referral: `POST /second-opinions/{id}/records` over real
 * HTTP, the assembly job re-run against the sandbox EHR, and a new record-set Bundle version
 * each time, the earlier ones left untouched and readable.
 */
describe('adding records (flow)', () => {
  let ehr: SandboxEhr;
  /** The ids this sandbox gave a seeded document (`op-note-2024`, ...) and its Binary. */
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;
  const binId = (key: string): string => seededDocument(ehr.seeded, key).binaryId!;
  let service: TestService;
  let store: ResourceStore;
  let referrerToken: string;
  let otherReferrerToken: string;
  let consultantToken: string;
  const validator = createValidator();

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 300_000 } });
    const network = JSON.parse(readFileSync(path.join(ROOT, 'examples', 'network.json'), 'utf8')) as { participants: { id: string; fhir?: unknown }[] };
    const stOlaf = network.participants.find((p) => p.id === 'st-olaf');
    if (!stOlaf) throw new Error('example network lacks st-olaf');
    stOlaf.fhir = { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: 5_000 };
    // A second referrer, to show that one referrer cannot add records to another's referral.
    const otherKey = await generateClientKey();
    network.participants.push({
      id: OTHER_REFERRER.participant,
      name: 'Harbor Hospital (test)',
      roles: ['referrer'],
      organization: { reference: 'Organization/harbor' },
      clients: [{ clientId: OTHER_REFERRER.clientId, jwks: { keys: [otherKey.publicJwk] }, scope: 'system/*.rs system/ServiceRequest.c' }],
      // The same sandbox EHR (as if both hospitals shared a vendor's hosted FHIR server).
      fhir: { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: 5_000 },
    } as (typeof network.participants)[number]);
    const dir = await mkdtemp(path.join(tmpdir(), 'so-network-'));
    const networkFile = path.join(dir, 'network.json');
    await writeFile(networkFile, JSON.stringify(network));
    service = await startTestService({ NETWORK_FILE: networkFile, BODY_LIMIT_BYTES: '65536' }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 2 })),
      jobPollingIntervalSeconds: 0.5,
    });
    store = new ResourceStore(service.database.db, validator);
    referrerToken = await getAccessToken(service.url, clientIdOf('st-olaf'));
    otherReferrerToken = await getAccessToken(service.url, OTHER_REFERRER.clientId, { privateJwk: otherKey.privateJwk });
    consultantToken = await getAccessToken(service.url, clientIdOf('lakeside-consults'));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  const auth = (token: string) => ({ authorization: `Bearer ${token}` });

  async function refer(overrides: Parameters<typeof makeSecondOpinionRequest>[0] = {}, token = referrerToken): Promise<{ id: string; tasks: Task[] }> {
    const res = await fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { ...auth(token), 'content-type': 'application/json' },
      body: JSON.stringify(makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] }, ...overrides }, ehr.seeded)),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { id: string; tasks: Task[] };
  }

  function addRecords(id: string, body: unknown, token = referrerToken, contentType = 'application/json'): Promise<Response> {
    return fetch(`${service.url}/second-opinions/${id}/records`, {
      method: 'POST',
      headers: { ...auth(token), 'content-type': contentType },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  }

  async function summaryOf(id: string, token = referrerToken): Promise<ReferralSummary> {
    const res = await fetch(`${service.url}/second-opinions/${id}`, { headers: auth(token) });
    expect(res.status).toBe(200);
    return (await res.json()) as ReferralSummary;
  }

  /**
   * Polls the summary until an assembly has produced a record set other than `previousBundleId`
   * (generous timeout, no timing assertion).
   */
  async function assembled(id: string, previousBundleId?: string, timeoutMs = 45_000, token = referrerToken): Promise<ReferralSummary> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const summary = await summaryOf(id, token);
      if (summary.recordSet.status !== 'records-pending' && summary.recordSet.bundleId !== previousBundleId) return summary;
      if (Date.now() > deadline) throw new Error(`record set of ${id} not (re)assembled in time`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function readBundleOverHttp(id: string, token = referrerToken): Promise<{ status: number; body: Bundle | OperationOutcome }> {
    const res = await fetch(`${service.url}/fhir/Bundle/${id}`, { headers: auth(token) });
    return { status: res.status, body: (await res.json()) as Bundle | OperationOutcome };
  }

  const taskOf = async (id: string) => (await store.readMany<Task>('Task', [id], 'system'))[0] as Task;
  /** The EHR records a Bundle holds copies of (`meta.source`, relative to the EHR base). */
  const docIds = (bundle: Bundle) => (bundle.entry ?? []).map((e) => (e.resource?.meta?.source ?? '').replace(`${ehr.baseUrl}/`, '')).sort();
  const intakeRow = async (id: string) => (await service.database.db.select().from(intakeRequests).where(eq(intakeRequests.serviceRequestId, id)))[0];
  const assemblyRow = async (id: string) => (await service.database.db.select().from(recordSetAssemblies).where(eq(recordSetAssemblies.serviceRequestId, id)))[0];
  async function assemblyJobs(id: string): Promise<{ recordsRevision: string; serviceRequestVersion: string }[]> {
    const result = await service.database.db.execute(
      sql`SELECT data FROM ${sql.identifier(service.jobs.schema)}.job WHERE name = ${QUEUE.assembleRecordSet} AND data->>'serviceRequestId' = ${id} ORDER BY created_on`,
    );
    return (result as unknown as { rows: { data: { recordsRevision: string; serviceRequestVersion: string } }[] }).rows.map((r) => r.data);
  }

  it('(a) a required record missing: awaiting-records names it; adding it makes a new Bundle and the Tasks records-ready', async () => {
    const { id, tasks } = await refer({ kind: 'revision', records: { documents: [{ reference: `DocumentReference/${docId('discharge-2024')}` }] } });
    const taskId = tasks[0]?.id as string;
    const before = await assembled(id);
    expect(before.recordSet).toMatchObject({
      status: 'awaiting-records',
      missing: { required: [{ code: '11504-8', display: 'Surgical operation note' }], documents: [] },
      integrityFailures: [],
      tooLarge: [],
    });
    expect(before.consultants.map((c) => c.task.businessStatus)).toEqual(['awaiting-records']);
    const waiting = await taskOf(taskId);
    expect(waiting.businessStatus?.text).toBe('Missing required records: Surgical operation note');
    expect(waiting.input).toBeUndefined();
    const oldBundleId = before.recordSet.bundleId as string;

    const res = await addRecords(id, { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}`, display: 'Operative note' }] });
    expect(res.status).toBe(202);
    expect(res.headers.get('location')).toBe(`${service.config.publicUrl}/second-opinions/${id}`);
    expect(await res.json()).toEqual({ id, recordsRevision: 1, added: [{ reference: `DocumentReference/${docId('op-note-2024')}`, display: 'Operative note' }] });
    expect(await intakeRow(id)).toMatchObject({ recordsRevision: 1, addedDocuments: [{ reference: `DocumentReference/${docId('op-note-2024')}`, display: 'Operative note' }] });
    expect(await assemblyJobs(id)).toEqual([
      { serviceRequestId: id, taskIds: [taskId], serviceRequestVersion: '1', recordsRevision: '0' },
      { serviceRequestId: id, taskIds: [taskId], serviceRequestVersion: '2', recordsRevision: '1' },
    ]);

    // Until the job has run for revision 1 the summary says so, and still shows the previous assembly.
    const meanwhile = await summaryOf(id);
    expect(meanwhile.recordSet.recordsRevision).toBe(1);
    if (meanwhile.recordSet.assembledRevision === 0) expect(meanwhile.recordSet).toMatchObject({ status: 'records-pending', bundleId: oldBundleId });

    const after = await assembled(id, oldBundleId);
    expect(after.recordSet).toMatchObject({ recordsRevision: 1, assembledRevision: 1 });
    expect(after.recordSet).toMatchObject({ status: 'records-ready', missing: { required: [], documents: [] }, consent: [{ participant: 'lakeside-consults', permitted: true }] });
    expect((await assemblyRow(id))?.recordsRevision).toBe(1);
    const newBundleId = after.recordSet.bundleId as string;
    expect(newBundleId).not.toBe(oldBundleId);
    expect(after.recordSet.versions).toEqual([newBundleId, oldBundleId]);
    const ready = await taskOf(taskId);
    expect(ready.businessStatus?.coding?.[0]?.code).toBe('records-ready');
    expect(ready.input).toEqual([{ type: { text: 'record-set' }, valueReference: { reference: `Bundle/${newBundleId}` } }]);

    // The new version holds the operative note; the old one is unchanged and still readable by the referrer.
    const current = await readBundleOverHttp(newBundleId);
    expect(current.status).toBe(200);
    expect(validator.validate(current.body as Bundle)).toEqual([]);
    expect(docIds(current.body as Bundle)).toEqual([`DocumentReference/${docId('discharge-2024')}`, `DocumentReference/${docId('op-note-2024')}`].sort());
    const old = await readBundleOverHttp(oldBundleId);
    expect(old.status).toBe(200);
    expect(docIds(old.body as Bundle)).toEqual([`DocumentReference/${docId('discharge-2024')}`]);
    expect((old.body as Bundle).meta?.versionId).toBe('1');
    // Only the complete record set was made available to the consultant.
    expect((await readBundleOverHttp(newBundleId, consultantToken)).status).toBe(200);
    expect((await readBundleOverHttp(oldBundleId, consultantToken)).status).toBe(404);
  });

  it('(b) adding to a records-ready referral makes another Bundle version each time; earlier versions never change', async () => {
    const { id, tasks } = await refer({ kind: 'revision', records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }] } });
    const taskId = tasks[0]?.id as string;
    const first = await assembled(id);
    expect(first.recordSet.status).toBe('records-ready');
    const v1 = first.recordSet.bundleId as string;
    const v1Before = await readBundleOverHttp(v1);
    expect(v1Before.status).toBe(200);
    expect(docIds(v1Before.body as Bundle)).toEqual([`DocumentReference/${docId('op-note-2024')}`]);

    // An absolute reference on the referrer's EHR is accepted as well as a relative one.
    const res = await addRecords(id, { documents: [{ reference: `${ehr.baseUrl}/DocumentReference/${docId('progress-2024')}` }] });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ id, recordsRevision: 1, added: [{ reference: `${ehr.baseUrl}/DocumentReference/${docId('progress-2024')}` }] });
    const second = await assembled(id, v1);
    expect(second.recordSet.status).toBe('records-ready');
    const v2 = second.recordSet.bundleId as string;
    expect(docIds((await readBundleOverHttp(v2)).body as Bundle)).toEqual([`DocumentReference/${docId('op-note-2024')}`, `DocumentReference/${docId('progress-2024')}`].sort());
    expect((await taskOf(taskId)).input).toEqual([{ type: { text: 'record-set' }, valueReference: { reference: `Bundle/${v2}` } }]);

    const res2 = await addRecords(id, { documents: [{ reference: `DocumentReference/${docId('preop-photo-2024')}` }] });
    expect(res2.status).toBe(202);
    expect(((await res2.json()) as { recordsRevision: number }).recordsRevision).toBe(2);
    const third = await assembled(id, v2);
    const v3 = third.recordSet.bundleId as string;
    expect(docIds((await readBundleOverHttp(v3)).body as Bundle)).toEqual([`DocumentReference/${docId('op-note-2024')}`, `DocumentReference/${docId('preop-photo-2024')}`, `DocumentReference/${docId('progress-2024')}`].sort());
    expect((await taskOf(taskId)).input).toEqual([{ type: { text: 'record-set' }, valueReference: { reference: `Bundle/${v3}` } }]);
    expect((await assemblyRow(id))?.recordsRevision).toBe(2);

    // Every version stays readable, by the referrer and by the consultant it was made available to, byte for byte as first served.
    const v1After = await readBundleOverHttp(v1);
    expect(v1After).toEqual(v1Before);
    expect((await readBundleOverHttp(v1, consultantToken)).body).toEqual(v1Before.body);
    expect((await readBundleOverHttp(v2, consultantToken)).status).toBe(200);
    const history = await fetch(`${service.url}/fhir/Bundle/${v1}/_history`, { headers: auth(referrerToken) });
    expect(history.status).toBe(200);
    expect(((await history.json()) as Bundle).entry).toHaveLength(1);
    // The referral lists every version.
    const sr = (await store.read<ServiceRequest>('ServiceRequest', id, 'system')) as ServiceRequest;
    expect(sr.supportingInfo?.filter((s) => s.reference?.startsWith('Bundle/')).map((s) => s.reference)).toEqual([`Bundle/${v1}`, `Bundle/${v2}`, `Bundle/${v3}`]);
  });

  it('(c) adding documents that are already named is idempotent: 200, no new revision, no job', async () => {
    const { id } = await refer({ kind: 'revision', records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }] } });
    const first = await assembled(id);
    const added = await addRecords(id, { documents: [{ reference: `DocumentReference/${docId('progress-2024')}` }, { reference: `DocumentReference/${docId('progress-2024')}` }] });
    expect(added.status).toBe(202);
    expect(await added.json()).toEqual({ id, recordsRevision: 1, added: [{ reference: `DocumentReference/${docId('progress-2024')}` }] });
    const second = await assembled(id, first.recordSet.bundleId);
    expect(await assemblyJobs(id)).toHaveLength(2);

    // The same document again, named in the original request, or named absolutely or with a version: nothing new.
    for (const documents of [
      [{ reference: `DocumentReference/${docId('progress-2024')}` }],
      [{ reference: `DocumentReference/${docId('op-note-2024')}` }],
      [{ reference: `${ehr.baseUrl}/DocumentReference/${docId('progress-2024')}` }, { reference: `DocumentReference/${docId('op-note-2024')}/_history/1` }],
    ]) {
      const res = await addRecords(id, { documents });
      expect(res.status).toBe(200);
      expect(res.headers.get('location')).toBe(`${service.config.publicUrl}/second-opinions/${id}`);
      expect(await res.json()).toEqual({ id, recordsRevision: 1, added: [] });
    }
    expect(await intakeRow(id)).toMatchObject({ recordsRevision: 1, addedDocuments: [{ reference: `DocumentReference/${docId('progress-2024')}` }] });
    expect(await assemblyJobs(id)).toHaveLength(2);
    expect((await summaryOf(id)).recordSet.bundleId).toBe(second.recordSet.bundleId);
  });

  it('(c1) a record the last assembly left out (its bytes failed their check, or it was not found) is fetched again when posted again: 202, a new revision', async () => {
    // An operative note of its own (bytes no earlier test stored), whose downloads in the first
    // assembly (INTEGRITY_FETCHES of them) are all cut to half its declared size.
    const bytes = makePdf({ title: 'Operative note', lines: ['Synthetic record (not a real person)', 'Posted again after a bad download.'] });
    const binary = await ehr.repo.createResource<Binary>({ resourceType: 'Binary', contentType: 'application/pdf' });
    ehr.blobs.set(binary.id as string, { bytes, contentType: 'application/pdf' });
    const note = await ehr.repo.createResource<DocumentReference>({
      resourceType: 'DocumentReference',
      status: 'current',
      type: { coding: [{ system: 'http://loinc.org', code: '11504-8', display: 'Surgical operation note' }] },
      subject: { reference: `Patient/${ehr.seeded.patientId}` },
      date: '2022-11-03T10:00:00Z',
      content: [{ attachment: { contentType: 'application/pdf', size: bytes.length, hash: sha1Base64(bytes), url: `Binary/${binary.id}` } }],
    });
    const reference = `DocumentReference/${note.id}`;
    const fault = ehr.faults.add({ path: `/Binary/${binary.id}`, wrongLength: true, times: INTEGRITY_FETCHES });
    const { id } = await refer({ kind: 'revision', records: { documents: [{ reference: `DocumentReference/${docId('discharge-2024')}` }] } });
    const first = await assembled(id);
    expect(first.recordSet.status).toBe('awaiting-records');
    expect((await addRecords(id, { documents: [{ reference }] })).status).toBe(202);
    const failed = await assembled(id, first.recordSet.bundleId);
    expect(fault.hits).toBe(INTEGRITY_FETCHES);
    expect(failed.recordSet).toMatchObject({ status: 'awaiting-records', recordsRevision: 1, integrityFailures: [{ reference: `${ehr.baseUrl}/${reference}`, kind: 'size', expected: bytes.length }] });

    // Posted again (relative or absolute): fetched again, as a new revision.
    const again = await addRecords(id, { documents: [{ reference: `${ehr.baseUrl}/${reference}` }] });
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ id, recordsRevision: 2, added: [] });
    const after = await assembled(id, failed.recordSet.bundleId);
    expect(after.recordSet).toMatchObject({ status: 'records-ready', recordsRevision: 2, assembledRevision: 2, integrityFailures: [], missing: { required: [], documents: [] } });
    const bundle = await readBundleOverHttp(after.recordSet.bundleId as string);
    expect(docIds(bundle.body as Bundle)).toEqual([`DocumentReference/${docId('discharge-2024')}`, reference].sort());
    // Nothing left out now: posting it once more changes nothing.
    const once = await addRecords(id, { documents: [{ reference }] });
    expect(once.status).toBe(200);
    expect(await once.json()).toEqual({ id, recordsRevision: 2, added: [] });
  });

  it('(c2) concurrent additions, even before the first assembly ran, each get their own revision and none is lost', async () => {
    const { id, tasks } = await refer({ kind: 'revision', records: { documents: [{ reference: `DocumentReference/${docId('discharge-2024')}` }] } });
    const [one, two] = await Promise.all([
      addRecords(id, { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }] }),
      addRecords(id, { documents: [{ reference: `DocumentReference/${docId('progress-2024')}` }] }),
    ]);
    expect([one?.status, two?.status]).toEqual([202, 202]);
    const revisions = [((await one?.json()) as { recordsRevision: number }).recordsRevision, ((await two?.json()) as { recordsRevision: number }).recordsRevision];
    expect(revisions.sort()).toEqual([1, 2]);
    const row = await intakeRow(id);
    expect(row?.recordsRevision).toBe(2);
    expect((row?.addedDocuments as { reference: string }[]).map((d) => d.reference).sort()).toEqual([`DocumentReference/${docId('op-note-2024')}`, `DocumentReference/${docId('progress-2024')}`].sort());
    expect((await assemblyJobs(id)).map((j) => j.recordsRevision).sort()).toEqual(['0', '1', '2']);

    // Whatever order the jobs run in, the record set ends up assembled from revision 2 with every document.
    const deadline = Date.now() + 45_000;
    while ((await assemblyRow(id))?.recordsRevision !== 2) {
      if (Date.now() > deadline) throw new Error('revision 2 not assembled in time');
      await new Promise((r) => setTimeout(r, 200));
    }
    const summary = await summaryOf(id);
    expect(summary.recordSet.status).toBe('records-ready');
    expect(docIds((await readBundleOverHttp(summary.recordSet.bundleId as string)).body as Bundle)).toEqual([
      `DocumentReference/${docId('discharge-2024')}`,
      `DocumentReference/${docId('op-note-2024')}`,
      `DocumentReference/${docId('progress-2024')}`,
    ].sort());
    expect((await taskOf(tasks[0]?.id as string)).input).toEqual([{ type: { text: 'record-set' }, valueReference: { reference: `Bundle/${summary.recordSet.bundleId}` } }]);
  });

  it('(d) only the referrer that placed the referral may add records; bad requests are refused and change nothing', async () => {
    const { id } = await refer({ kind: 'revision', records: { documents: [{ reference: `DocumentReference/${docId('discharge-2024')}` }] } });
    await assembled(id);
    const body = { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }] };
    const notFound = { resourceType: 'OperationOutcome', id: 'not-found', issue: [{ severity: 'error', code: 'not-found', details: { text: 'Not found' } }] };

    // Another referrer, and an unknown id: the same 404, so ids reveal nothing.
    for (const [target, token] of [
      [id, otherReferrerToken],
      ['00000000-0000-4000-8000-000000000000', referrerToken],
    ] as const) {
      const res = await addRecords(target, body, token);
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual(notFound);
    }
    // A consultant lacks the referrer role: 403 whatever the id (the refusal does not depend on the referral).
    const refusals = [];
    for (const target of [id, '00000000-0000-4000-8000-000000000000']) {
      const res = await addRecords(target, body, consultantToken);
      expect(res.status).toBe(403);
      refusals.push(await res.json());
    }
    expect(refusals[0]).toEqual(refusals[1]);
    expect(refusals[0]).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'forbidden', details: { text: expect.stringMatching(/^This operation requires the referrer role; participant lakeside-consults has consultant/) } }] });

    const bad = async (payload: unknown, expected: OperationOutcome['issue']) => {
      const res = await addRecords(id, payload);
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ resourceType: 'OperationOutcome', issue: expected });
    };
    await bad({}, [{ severity: 'error', code: 'required', details: { text: 'documents is required' }, expression: ['documents'] }]);
    await bad({ documents: [] }, [{ severity: 'error', code: 'value', details: { text: 'documents: name at least one document' }, expression: ['documents'] }]);
    await bad({ documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }, { reference: `Patient/${ehr.seeded.patientId}` }] }, [
      {
        severity: 'error',
        code: 'value',
        details: { text: "documents[1].reference: must be a reference to DocumentReference or DiagnosticReport or ImagingStudy (e.g. DocumentReference/123, relative to the referrer's FHIR base, or an absolute URL)" },
        expression: ['documents[1].reference'],
      },
    ]);
    await bad({ documents: [{ reference: `DocumentReference/${docId('op-note-2024')}`, url: 'x' }], note: 'typo' }, [
      { severity: 'error', code: 'structure', details: { text: "Unknown field 'url'" }, expression: ['documents[0].url'] },
      { severity: 'error', code: 'structure', details: { text: "Unknown field 'note'" }, expression: ['note'] },
    ]);
    await bad({ documents: Array.from({ length: 101 }, (_, i) => ({ reference: `DocumentReference/d${i}` })) }, [
      { severity: 'error', code: 'value', details: { text: 'documents: at most 100 documents per call' }, expression: ['documents'] },
    ]);

    const malformed = await addRecords(id, '{"documents": [');
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toEqual({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', details: { text: 'The request body is not valid JSON' } }] });
    const wrongType = await addRecords(id, JSON.stringify(body), referrerToken, 'text/plain');
    expect(wrongType.status).toBe(415);
    expect(((await wrongType.json()) as OperationOutcome).issue?.[0]?.code).toBe('not-supported');
    const tooLarge = await addRecords(id, { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}`, display: 'x'.repeat(70_000) }] });
    expect(tooLarge.status).toBe(413);
    expect(await tooLarge.json()).toEqual({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'too-long', details: { text: 'The request body is larger than the service accepts' } }] });

    // Nothing was written by any refusal.
    expect(await intakeRow(id)).toMatchObject({ recordsRevision: 0, addedDocuments: [] });
    expect(await assemblyJobs(id)).toHaveLength(1);
  });

  it('(e) a closed referral, or one whose Tasks are all closed, answers 409', async () => {
    const { id, tasks } = await refer({ kind: 'revision', records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }] } });
    await assembled(id);
    const body = { documents: [{ reference: `DocumentReference/${docId('progress-2024')}` }] };

    const task = await taskOf(tasks[0]?.id as string);
    await store.update<Task>({ ...task, status: 'cancelled', statusReason: { text: 'Patient withdrew the request' } });
    const allClosed = await addRecords(id, body);
    expect(allClosed.status).toBe(409);
    expect(await allClosed.json()).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'conflict', details: { text: 'Every consultant Task of this referral is closed: records can no longer be added' } }],
    });

    const sr = (await store.read<ServiceRequest>('ServiceRequest', id, 'system')) as ServiceRequest;
    await store.update<ServiceRequest>({ ...sr, status: 'revoked' });
    const revoked = await addRecords(id, body);
    expect(revoked.status).toBe(409);
    expect(await revoked.json()).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'conflict', details: { text: 'The referral is revoked: records can only be added to an active referral' } }],
    });
    expect(await intakeRow(id)).toMatchObject({ recordsRevision: 0, addedDocuments: [] });
    expect(await assemblyJobs(id)).toHaveLength(1);
  });

  it('(f) bytes are reused on a declared hash only when the same referrer supplied them: another referrer\'s copy is fetched from its own EHR', async () => {
    const fetches = (from: number) => ehr.requests.slice(from).filter((r) => r.path.endsWith(`/Binary/${binId('op-note-2024')}`)).length;
    // st-olaf's EHR gave the operative note earlier in this file; its next referral does not fetch it again.
    let from = ehr.requests.length;
    const again = await refer({ kind: 'revision', records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }] } });
    expect((await assembled(again.id)).recordSet.status).toBe('records-ready');
    expect(fetches(from)).toBe(0);
    // Another referrer declaring the same SHA-1 and size does not get those stored bytes linked: they are fetched from its EHR.
    from = ehr.requests.length;
    const other = await refer({ kind: 'revision', records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }] } }, otherReferrerToken);
    const summary = await assembled(other.id, undefined, 45_000, otherReferrerToken);
    expect(summary.recordSet.status).toBe('records-ready');
    expect(fetches(from)).toBe(1);
  });
});
