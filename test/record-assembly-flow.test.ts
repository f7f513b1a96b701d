import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AuditEvent, Binary, Bundle, DocumentReference, Provenance, Task } from '@medplum/fhirtypes';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/audit/audit-log.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { loadNetwork } from '../src/network/network.ts';
import { createParticipantFhirClients } from '../src/outbound/endpoints.ts';
import { assembleRecordSet } from '../src/records/assemble-record-set.ts';
import { INTEGRITY_FETCHES } from '../src/records/store-record.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { openBlobBackend } from '../src/store/blob-backend.ts';
import { BlobStore } from '../src/store/blob-store.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { makePdf, sha1Base64 } from './support/sandbox-ehr/documents.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const ROOT = path.join(import.meta.dirname, '..');

/**
 * Record assembly end to end: intake over HTTP enqueues the job, the worker
 * pulls the records from the sandbox EHR over real HTTP (SMART token, Binary, storage origin,
 * inline data), and the Tasks, Bundles and summary say what came of it.
 */
describe('record-set assembly (flow)', () => {
  let ehr: SandboxEhr;
  /** The ids this sandbox gave a seeded document (`op-note-2024`, ...) and its Binary. */
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;
  const binId = (key: string): string => seededDocument(ehr.seeded, key).binaryId!;
  let service: TestService;
  let store: ResourceStore;
  let blobs: BlobStore;
  let referrerToken: string;
  let networkFile: string;
  const validator = createValidator();

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 300_000 } });
    const network = JSON.parse(readFileSync(path.join(ROOT, 'examples', 'network.json'), 'utf8')) as { participants: { id: string; fhir?: unknown }[] };
    const stOlaf = network.participants.find((p) => p.id === 'st-olaf');
    if (!stOlaf) throw new Error('example network lacks st-olaf');
    stOlaf.fhir = { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: 5_000 };
    const dir = await mkdtemp(path.join(tmpdir(), 'so-network-'));
    networkFile = path.join(dir, 'network.json');
    await writeFile(networkFile, JSON.stringify(network));
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 2 })),
      jobPollingIntervalSeconds: 0.5,
    });
    store = new ResourceStore(service.database.db, validator);
    blobs = new BlobStore(service.database.db, await openBlobBackend(service.config.blobStore));
    referrerToken = await getAccessToken(service.url, clientIdOf('st-olaf'));
  });
  afterEach(() => ehr?.faults.clear());
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  async function refer(overrides: Parameters<typeof makeSecondOpinionRequest>[0] = {}): Promise<{ id: string; tasks: Task[] }> {
    const res = await fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${referrerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(makeSecondOpinionRequest(overrides, ehr.seeded)),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { id: string; tasks: Task[] };
  }

  /** Polls the summary until the assembly has run (generous timeout, no timing assertion). */
  async function assembled(id: string, timeoutMs = 45_000): Promise<ReferralSummary> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await fetch(`${service.url}/second-opinions/${id}`, { headers: { authorization: `Bearer ${referrerToken}` } });
      expect(res.status).toBe(200);
      const summary = (await res.json()) as ReferralSummary;
      if (summary.recordSet.status !== 'records-pending') return summary;
      if (Date.now() > deadline) throw new Error(`record set of ${id} not assembled in time`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const tasksOf = (ids: string[]) => store.readMany<Task>('Task', ids, 'system');
  const readBundle = async (id: string) => (await store.read<Bundle>('Bundle', id, 'system')) as Bundle;
  /** The EHR records a Bundle holds copies of (`DocumentReference/op-note-2024`), from each copy's `meta.source`. */
  const docIds = (bundle: Bundle | undefined) => (bundle?.entry ?? []).map((e) => (e.resource?.meta?.source ?? '').replace(`${ehr.baseUrl}/`, '')).sort();

  it('(a) complete record set: Tasks records-ready, the Bundle validates, every attachment verified and stored', async () => {
    const { id, tasks } = await refer({
      consultants: ['lakeside-consults'],
      blinded: false,
      firstOpinion: { documents: [] },
      records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }, { reference: `DocumentReference/${docId('discharge-2024')}` }, { reference: `DocumentReference/${docId('preop-photo-2024')}` }] },
    });
    const summary = await assembled(id);
    expect(summary.recordSet).toMatchObject({ status: 'records-ready', missing: { required: [], documents: [] }, integrityFailures: [], tooLarge: [], consent: [{ participant: 'lakeside-consults', permitted: true }] });
    const [task] = await tasksOf(tasks.map((t) => t.id as string));
    expect(task?.businessStatus?.coding?.[0]?.code).toBe('records-ready');
    expect(task?.input).toEqual([{ type: { text: 'record-set' }, valueReference: { reference: `Bundle/${summary.recordSet.bundleId}` } }]);

    const bundle = await readBundle(summary.recordSet.bundleId as string);
    expect(validator.validate(bundle)).toEqual([]);
    // binary, inline data and the storage origin
    expect(docIds(bundle)).toEqual([`DocumentReference/${docId('discharge-2024')}`, `DocumentReference/${docId('op-note-2024')}`, `DocumentReference/${docId('preop-photo-2024')}`].sort());
    for (const entry of bundle.entry ?? []) {
      const doc = entry.resource as DocumentReference;
      const sourceId = doc.meta?.source?.split('/').pop();
      const seeded = ehr.seeded.documents.find((d) => d.id === sourceId);
      const attachment = doc.content[0]?.attachment;
      // This service's copy: its own id, served on its own, references absolute on the EHR.
      expect(doc.id).not.toBe(sourceId);
      expect(entry.fullUrl).toBe(`${service.config.publicUrl}/fhir/DocumentReference/${doc.id}`);
      expect(doc.meta).toEqual({ source: `${ehr.baseUrl}/DocumentReference/${sourceId}` });
      expect(doc.subject?.reference).toBe(`${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`);
      expect(await store.read('DocumentReference', doc.id as string, { participantId: 'lakeside-consults' })).toMatchObject({ id: doc.id, content: doc.content });
      expect(await store.read('DocumentReference', doc.id as string, { participantId: 'northfield-pathology' })).toBeUndefined();
      expect({ size: attachment?.size, hash: attachment?.hash, contentType: attachment?.contentType }).toEqual({ size: seeded?.size, hash: seeded?.sha1Base64, contentType: seeded?.contentType });
      const sha256 = attachment?.url?.split('/').pop() as string;
      expect(attachment?.url).toBe(`${service.config.publicUrl}/fhir/Binary/${sha256}`);
      expect(attachment?.data).toBeUndefined();
      expect(await blobs.head(sha256)).toMatchObject({ size: seeded?.size, sha1: seeded?.sha1Base64 });
    }
    const sr = await store.read('ServiceRequest', id, 'system');
    expect((sr as { supportingInfo?: { reference?: string }[] }).supportingInfo?.map((s) => s.reference)).toContain(`Bundle/${summary.recordSet.bundleId}`);
    const provenance = await store.search<Provenance>({ resourceType: 'Provenance', count: 10, contains: [[{ target: [{ reference: `Bundle/${summary.recordSet.bundleId}` }] }]] }, 'system');
    expect(provenance.resources).toHaveLength(1);
    expect(provenance.resources[0]?.entity?.map((e) => e.what.reference).sort()).toEqual(docIds(bundle).map((r) => `${ehr.baseUrl}/${r}`));
    expect(provenance.resources[0]?.target.map((t) => t.reference).sort()).toEqual([`Bundle/${bundle.id}`, ...(bundle.entry ?? []).map((e) => `DocumentReference/${e.resource?.id}`)].sort());
    expect(validator.validate(provenance.resources[0] as Provenance)).toEqual([]);
    // Disclosure to the consultant is audited with the assembly.
    const disclosures = await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 10, contains: [[{ entity: [{ what: { reference: `Bundle/${bundle.id}` } }] }]] }, 'system');
    expect(disclosures.resources).toHaveLength(1);
    const disclosure = disclosures.resources[0] as AuditEvent;
    expect(validator.validate(disclosure)).toEqual([]);
    expect(disclosure).toMatchObject({ subtype: [{ code: 'disclose' }], outcome: '0', agent: [{ who: { reference: 'Organization/lakeside', identifier: { value: 'lakeside-consults' } }, requestor: true }, {}] });
    // The first disclosure admits the clinic to the case itself: the referral and its Task (the first opinion too, when not blinded).
    const firstOpinion = (sr as { supportingInfo?: { reference?: string }[] }).supportingInfo?.find((s) => s.reference?.startsWith('ClinicalImpression/'))?.reference;
    expect(disclosure.entity?.map((e) => e.what?.reference)).toEqual([
      `${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`,
      `ServiceRequest/${id}`,
      `Task/${task?.id}`,
      ...(firstOpinion ? [firstOpinion] : []),
      `Bundle/${bundle.id}`,
      ...(bundle.entry ?? []).map((e) => `DocumentReference/${e.resource?.id}`),
    ]);
    expect(await store.read('Bundle', summary.recordSet.bundleId as string, { participantId: 'lakeside-consults' })).toBeDefined();
    // The pre-operative photo lives on the storage origin: fetched, and never with the EHR's bearer token.
    const storageRequests = ehr.requests.filter((r) => r.origin === 'storage');
    expect(storageRequests.length).toBeGreaterThanOrEqual(1);
    expect(storageRequests.every((r) => r.authorization === false)).toBe(true);
    expect(ehr.requests.some((r) => r.origin === 'ehr' && r.authorization === true)).toBe(true);
  });

  it('(b) a required record absent: awaiting-records, and the summary names what is missing', async () => {
    const { id, tasks } = await refer({ kind: 'pathology-review', consultants: ['lakeside-consults'], records: { search: { type: ['http://loinc.org|11504-8'] } } });
    const summary = await assembled(id);
    expect(summary.recordSet.status).toBe('awaiting-records');
    expect(summary.recordSet.missing.required).toEqual([{ code: '11526-1', display: 'Pathology report', alternatives: [{ code: 'DiagnosticReport:pathology', display: 'Pathology DiagnosticReport' }] }]);
    const [task] = await tasksOf(tasks.map((t) => t.id as string));
    expect(task?.businessStatus).toEqual({
      coding: [{ system: 'https://second-opinion.org/fhir/CodeSystem/task-business-status', code: 'awaiting-records', display: 'Awaiting required records' }],
      text: 'Missing required records: Pathology report (or Pathology DiagnosticReport)',
    });
    expect(task?.input).toBeUndefined();
    expect(await store.read('Bundle', summary.recordSet.bundleId as string, { participantId: 'lakeside-consults' })).toBeUndefined();
  });

  it('(c) blinded: the consultants\' Bundle lacks the first-opinion note; the referrer-only Bundle holds it', async () => {
    const { id } = await refer({ consultants: ['lakeside-consults'], blinded: true });
    const summary = await assembled(id);
    expect(summary.recordSet.status).toBe('records-ready');
    const disclosed = await readBundle(summary.recordSet.bundleId as string);
    const withheld = await readBundle(summary.recordSet.withheldBundleId as string);
    expect(docIds(disclosed)).toEqual([`DocumentReference/${docId('op-note-2024')}`]);
    expect(docIds(withheld)).toEqual([`DocumentReference/${docId('first-opinion-note')}`]);
    expect(validator.validate(withheld)).toEqual([]);
    expect(await store.read('Bundle', withheld.id as string, { participantId: 'lakeside-consults' })).toBeUndefined();
    const withheldCopy = withheld.entry?.[0]?.resource as DocumentReference;
    expect(await store.read('DocumentReference', withheldCopy.id as string, { participantId: 'lakeside-consults' })).toBeUndefined();
    expect(await store.read('DocumentReference', withheldCopy.id as string, { participantId: 'st-olaf' })).toMatchObject({ id: withheldCopy.id });
    expect(await store.read('Bundle', withheld.id as string, { participantId: 'st-olaf' })).toBeDefined();
    expect(await store.read('Bundle', disclosed.id as string, { participantId: 'lakeside-consults' })).toBeDefined();
  });

  for (const [label, consentOf, code] of [
    ['expired', () => ({ reference: `Consent/${ehr.seeded.expiredConsentId}` }), 'expired'],
    ['for another organization', () => ({ reference: `Consent/${ehr.seeded.otherOrgConsentId}` }), 'not-a-recipient'],
    ['absent', () => undefined, 'missing'],
    ['not found on the EHR', () => ({ reference: 'Consent/no-such-consent' }), 'missing'],
  ] as const) {
    it(`(d) consent ${label}: awaiting-consent, no Task input, consultants cannot read the Bundle`, async () => {
      const { id, tasks } = await refer({ consultants: ['lakeside-consults'], consent: consentOf() });
      const summary = await assembled(id);
      expect(summary.recordSet.status).toBe('awaiting-consent');
      expect(summary.recordSet.consent).toEqual([{ participant: 'lakeside-consults', permitted: false, code, reason: expect.any(String) }]);
      const [task] = await tasksOf(tasks.map((t) => t.id as string));
      expect(task?.businessStatus?.coding?.[0]?.code).toBe('awaiting-consent');
      expect(task?.businessStatus?.text).toBe((summary.recordSet.consent[0] as { reason: string }).reason);
      expect(task?.input).toBeUndefined();
      expect(await store.read('Bundle', summary.recordSet.bundleId as string, { participantId: 'lakeside-consults' })).toBeUndefined();
      expect(await store.read('Bundle', summary.recordSet.bundleId as string, { participantId: 'st-olaf' })).toBeDefined();
    });
  }

  it('(d) consent absent but attested: still awaiting-consent, attestation is off by default (CONSENT_ATTESTATION_ALLOWED)', async () => {
    const { id } = await refer({ consultants: ['lakeside-consults'], consent: undefined, consentAttested: true });
    const summary = await assembled(id);
    expect(summary.recordSet.status).toBe('awaiting-consent');
    expect(summary.recordSet.consent).toEqual([{ participant: 'lakeside-consults', permitted: false, code: 'missing', reason: expect.any(String) }]);
  });

  it('(d) two consultants, consent names one: only that one gets the record set', async () => {
    const { id, tasks } = await refer({ consultants: ['lakeside-consults', 'northfield-pathology'] });
    const summary = await assembled(id);
    const [lakeside, northfield] = await tasksOf(tasks.map((t) => t.id as string));
    expect(lakeside?.businessStatus?.coding?.[0]?.code).toBe('records-ready');
    expect(northfield?.businessStatus?.coding?.[0]?.code).toBe('awaiting-consent');
    expect(northfield?.input).toBeUndefined();
    expect(await store.read('Bundle', summary.recordSet.bundleId as string, { participantId: 'lakeside-consults' })).toBeDefined();
    expect(await store.read('Bundle', summary.recordSet.bundleId as string, { participantId: 'northfield-pathology' })).toBeUndefined();
  });

  it('(e) corrupted bytes: integrity failure reported, the document left out', async () => {
    // A document no earlier test stored: verified bytes already held are not fetched again.
    ehr.faults.add({ path: `/Binary/${binId('hp-2024')}`, corruptBytes: true });
    const { id } = await refer({
      consultants: ['lakeside-consults'],
      blinded: false,
      firstOpinion: { documents: [] },
      records: { documents: [{ reference: `DocumentReference/${docId('hp-2024')}` }, { reference: `DocumentReference/${docId('progress-2024')}` }] },
      kind: 'complication',
    });
    const summary = await assembled(id);
    const hp = seededDocument(ehr.seeded, 'hp-2024');
    expect(summary.recordSet.integrityFailures).toEqual([{ reference: `${ehr.baseUrl}/DocumentReference/${docId('hp-2024')}`, kind: 'hash', expected: hp?.sha1Base64, actual: expect.any(String) }]);
    expect(summary.recordSet.status).toBe('records-ready');
    expect(docIds(await readBundle(summary.recordSet.bundleId as string))).toEqual([`DocumentReference/${docId('progress-2024')}`]);
  });

  it('(e) truncated bytes (size differs from the declared size) on every download: fetched three times, then an integrity failure reported, the document left out', async () => {
    const rule = ehr.faults.add({ path: `/Binary/${binId('referral-2024')}`, wrongLength: true });
    const { id } = await refer({
      consultants: ['lakeside-consults'],
      blinded: false,
      firstOpinion: { documents: [] },
      records: { documents: [{ reference: `DocumentReference/${docId('referral-2024')}` }, { reference: `DocumentReference/${docId('progress-2024')}` }] },
      kind: 'complication',
    });
    const summary = await assembled(id);
    const referral = seededDocument(ehr.seeded, 'referral-2024');
    expect(summary.recordSet.integrityFailures).toEqual([{ reference: `${ehr.baseUrl}/DocumentReference/${docId('referral-2024')}`, kind: 'size', expected: referral?.size, actual: expect.any(Number) }]);
    expect((summary.recordSet.integrityFailures[0] as { actual?: number } | undefined)?.actual).not.toBe(referral?.size);
    expect(docIds(await readBundle(summary.recordSet.bundleId as string))).toEqual([`DocumentReference/${docId('progress-2024')}`]);
    expect(rule.hits).toBe(INTEGRITY_FETCHES);
    expect(summary.recordSet.attempts).toBe(1);
  });

  it('(e) a download cut short once: fetched again in the same attempt, the record set is complete and nothing is reported', async () => {
    // A document of its own (no earlier test stored its bytes), so the download really happens.
    const bytes = makePdf({ title: 'Operative note (truncated once)', lines: ['Synthetic record - Alex Example (not a real person)'] });
    const binary = await ehr.repo.createResource<Binary>({ resourceType: 'Binary', contentType: 'application/pdf' });
    ehr.blobs.set(binary.id as string, { bytes, contentType: 'application/pdf' });
    const op = seededDocument(ehr.seeded, 'op-note-2024');
    const original = await ehr.repo.readResource<DocumentReference>('DocumentReference', op.id);
    const doc = await ehr.repo.createResource<DocumentReference>({
      ...original,
      id: undefined,
      meta: undefined,
      identifier: undefined,
      content: [{ attachment: { contentType: 'application/pdf', size: bytes.length, hash: sha1Base64(bytes), title: 'Operative note.pdf', url: `Binary/${binary.id}` } }],
    });
    const rule = ehr.faults.add({ path: `/Binary/${binary.id}`, wrongLength: true, times: 1 });
    const { id } = await refer({
      consultants: ['lakeside-consults'],
      blinded: false,
      firstOpinion: { documents: [] },
      records: { documents: [{ reference: `DocumentReference/${doc.id}` }, { reference: `DocumentReference/${docId('progress-2024')}` }] },
      kind: 'complication',
    });
    const summary = await assembled(id);
    expect(rule.hits).toBe(1);
    expect(ehr.requests.filter((r) => r.path.endsWith(`/Binary/${binary.id}`))).toHaveLength(2);
    expect(summary.recordSet).toMatchObject({ status: 'records-ready', attempts: 1, integrityFailures: [], missing: { documents: [] } });
    const bundle = await readBundle(summary.recordSet.bundleId as string);
    expect(docIds(bundle)).toEqual([`DocumentReference/${doc.id}`, `DocumentReference/${docId('progress-2024')}`].sort());
    const copy = bundle.entry?.map((e) => e.resource as DocumentReference).find((d) => d.meta?.source?.endsWith(`DocumentReference/${doc.id}`)) as DocumentReference;
    expect(copy.content[0]?.attachment).toMatchObject({ size: bytes.length, hash: sha1Base64(bytes) });
  });

  it('(f) an attachment times out on the first attempt: the job retries and the record set is complete', async () => {
    // Longer than the 5 s client timeout of the referrer's endpoint, once.
    const rule = ehr.faults.add({ path: `/Binary/${binId('pathology-2024')}`, delayMs: 6_000, times: 1 });
    const { id, tasks } = await refer({
      kind: 'pathology-review',
      consultants: ['lakeside-consults'],
      blinded: false,
      firstOpinion: { documents: [] },
      records: { documents: [{ reference: `DocumentReference/${docId('pathology-2024')}` }] },
    });
    const summary = await assembled(id, 60_000);
    expect(rule.hits).toBe(1);
    expect(summary.recordSet).toMatchObject({ status: 'records-ready', attempts: 2, integrityFailures: [], missing: { documents: [] } });
    expect(docIds(await readBundle(summary.recordSet.bundleId as string))).toContain(`DocumentReference/${docId('pathology-2024')}`);
    const [task] = await tasksOf(tasks.map((t) => t.id as string));
    expect(task?.businessStatus?.coding?.[0]?.code).toBe('records-ready');
  });

  it('(f) the EHR answers 500 twice on the search, then recovers: records-ready, one Bundle', async () => {
    const rule = ehr.faults.add({ path: '/fhir/R4/DocumentReference?', status: 500, times: 2 });
    const { id, tasks } = await refer({ consultants: ['lakeside-consults'] });
    const summary = await assembled(id, 60_000);
    expect(rule.hits).toBe(2);
    expect(summary.recordSet).toMatchObject({ status: 'records-ready', attempts: 3 });
    const [task] = await tasksOf(tasks.map((t) => t.id as string));
    expect(task?.businessStatus?.coding?.[0]?.code).toBe('records-ready');
    const sr = (await store.read('ServiceRequest', id, 'system')) as { supportingInfo?: { reference?: string }[] };
    expect(sr.supportingInfo?.filter((s) => s.reference?.startsWith('Bundle/'))).toEqual([{ reference: `Bundle/${summary.recordSet.bundleId}`, display: 'Record set' }]);
  });

  it('(f) an attempt that fails half-way: the retry does not fetch again the attachments already stored', async () => {
    // Two documents whose bytes no earlier test in this file stored (hp-2024 and referral-2024 failed their integrity checks above).
    const from = ehr.requests.length;
    const rule = ehr.faults.add({ path: `/Binary/${binId('referral-2024')}`, status: 500, times: 1 });
    const { id } = await refer({
      kind: 'diagnosis-confirmation',
      consultants: ['lakeside-consults'],
      blinded: false,
      firstOpinion: { documents: [] },
      records: { documents: [{ reference: `DocumentReference/${docId('hp-2024')}` }, { reference: `DocumentReference/${docId('referral-2024')}` }] },
    });
    const summary = await assembled(id, 60_000);
    expect(rule.hits).toBe(1);
    expect(summary.recordSet).toMatchObject({ status: 'records-ready', attempts: 2 });
    expect(docIds(await readBundle(summary.recordSet.bundleId as string))).toEqual([`DocumentReference/${docId('hp-2024')}`, `DocumentReference/${docId('referral-2024')}`].sort());
    const fetches = (binary: string) => ehr.requests.slice(from).filter((r) => r.path.endsWith(`/Binary/${binary}`)).length;
    expect(fetches(binId('hp-2024'))).toBe(1);
    expect(fetches(binId('referral-2024'))).toBe(2);
  });

  it('(g) the EHR stays down through the last attempt: the Task fails with the reason, nothing disclosed; records re-posted are kept and the clinic asked again gets them', async () => {
    // The use case called directly as the queue's last attempt would run it (the worker's own
    // attempts of this job keep failing on the same fault until afterEach clears it).
    ehr.faults.add({ path: '/fhir/R4/DocumentReference?', status: 503 });
    const { id, tasks } = await refer({ consultants: ['lakeside-consults'] });
    const network = await loadNetwork(networkFile);
    const deps = {
      store,
      blobs,
      clients: await createParticipantFhirClients(network, { keyBaseDir: path.dirname(networkFile) }),
      network,
      publicUrl: service.config.publicUrl,
      maxAttachmentBytes: service.config.maxAttachmentBytes,
      validator: createValidator(),
      audit: new AuditLog({ store, network, now: () => new Date(), publicUrl: service.config.publicUrl }),
      retryLimit: 3,
      now: () => new Date(),
    };
    const job = { id: 'last-attempt', name: 'assemble-record-set', data: { serviceRequestId: id, taskIds: tasks.map((t) => t.id as string), serviceRequestVersion: '1', recordsRevision: '0' } };
    await expect(assembleRecordSet({ ...job, attempt: 3 }, deps)).rejects.toMatchObject({ name: 'OutboundHttpError', status: 503, retryable: true });
    const result = await assembleRecordSet({ ...job, attempt: 4 }, deps);
    expect(result.outcome).toBe('failed');
    const summary = await assembled(id);
    expect(summary.recordSet).toMatchObject({ status: 'records-failed', attempts: 4 });
    // The referrer's summary quotes the EHR's OperationOutcome; the Task (read by admitted consultants too) only its codes.
    expect(summary.recordSet.failureReason).toBe(`The referring EHR could not be reached after 4 attempts: OutboundHttpError: GET ${ehr.baseUrl}/DocumentReference HTTP 503 (transient); the EHR said: exception: Injected fault: HTTP 503`);
    expect(summary.recordSet.failureOutcome).toEqual({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', details: { text: 'Injected fault: HTTP 503' } }] });
    const statusReason = 'The record set could not be assembled: the referring EHR could not be reached after 4 attempts';
    const [task] = await tasksOf(tasks.map((t) => t.id as string));
    expect(task?.status).toBe('failed');
    expect(task?.statusReason).toEqual({ text: statusReason });
    expect(task?.businessStatus?.coding?.[0]?.code).toBe('records-failed');
    expect(task?.businessStatus?.text).toBe(`The referring EHR could not be reached after 4 attempts: GET ${ehr.baseUrl}/DocumentReference HTTP 503 (exception)`);
    expect(task?.input).toBeUndefined();
    // Its only Task ended with no opinion: the referral settles as revoked, and says why per clinic.
    expect(summary.status).toBe('revoked');
    expect(summary.consultants.map((c) => c.task)).toEqual([expect.objectContaining({ status: 'failed', statusReason, businessStatus: 'records-failed' })]);

    // The EHR is back. Records posted now are kept (a new revision); no Task is open, so nothing is assembled yet.
    ehr.faults.clear();
    const posted = await fetch(`${service.url}/second-opinions/${id}/records`, {
      method: 'POST',
      headers: { authorization: `Bearer ${referrerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ documents: [{ reference: `DocumentReference/${docId('progress-2024')}` }] }),
    });
    expect(posted.status).toBe(202);
    expect(await posted.json()).toEqual({ id, recordsRevision: 1, added: [{ reference: `DocumentReference/${docId('progress-2024')}` }] });
    // The same records again add nothing (the failed Task needs its clinic asked again, not another try).
    const again = await fetch(`${service.url}/second-opinions/${id}/records`, {
      method: 'POST',
      headers: { authorization: `Bearer ${referrerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ documents: [{ reference: `DocumentReference/${docId('progress-2024')}` }] }),
    });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ id, recordsRevision: 1, added: [] });

    // The referrer asks the clinic again: a new Task, the referral active, the record set assembled with the added record.
    const readded = await fetch(`${service.url}/second-opinions/${id}/consultants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${referrerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ consultants: ['lakeside-consults'] }),
    });
    expect(readded.status).toBe(201);
    const added = (await readded.json()) as { serviceRequest: { status: string }; tasks: Task[] };
    expect(added.serviceRequest.status).toBe('active');
    const recovered = await assembled(id);
    expect(recovered.recordSet).toMatchObject({ status: 'records-ready', recordsRevision: 2, assembledRevision: 2, versions: [recovered.recordSet.bundleId] });
    expect(docIds(await readBundle(recovered.recordSet.bundleId as string))).toContain(`DocumentReference/${docId('progress-2024')}`);
    const [failed, ready] = await tasksOf([task?.id as string, added.tasks[0]?.id as string]);
    expect(failed?.status).toBe('failed');
    expect(ready).toMatchObject({ status: 'requested', businessStatus: { coding: [{ code: 'records-ready' }] }, input: [{ valueReference: { reference: `Bundle/${recovered.recordSet.bundleId}` } }] });
    expect(recovered.consultants.map((c) => c.task.status)).toEqual(['failed', 'requested']);
  });
});
