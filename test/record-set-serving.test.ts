import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AuditEvent, Binary, Bundle, DocumentReference, OperationOutcome, Provenance, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const ROOT = path.join(import.meta.dirname, '..');

/**
 * Serving a record set: GET /fhir/Bundle, /fhir/DocumentReference and
 * /fhir/Binary for the consultant whose Task points at it and for the referrer, 404 for
 * everyone else, and an AuditEvent for every read, refused ones included.
 */
describe('record-set serving (flow)', () => {
  let ehr: SandboxEhr;
  /** The ids this sandbox gave a seeded document (`op-note-2024`, ...) and its Binary. */
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;
  const binId = (key: string): string => seededDocument(ehr.seeded, key).binaryId!;
  let service: TestService;
  let store: ResourceStore;
  const validator = createValidator();
  const tokens: Record<string, string> = {};
  let bundle: Bundle;
  let doc: DocumentReference;
  let sha256: string;
  let expectedBytes: { size: number; sha1: string; contentType: string };

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 300_000 } });
    const network = JSON.parse(readFileSync(path.join(ROOT, 'examples', 'network.json'), 'utf8')) as { participants: { id: string; fhir?: unknown }[] };
    const stOlaf = network.participants.find((p) => p.id === 'st-olaf');
    if (!stOlaf) throw new Error('example network lacks st-olaf');
    stOlaf.fhir = { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: 5_000 };
    const dir = await mkdtemp(path.join(tmpdir(), 'so-network-'));
    const networkFile = path.join(dir, 'network.json');
    await writeFile(networkFile, JSON.stringify(network));
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 2 })),
      jobPollingIntervalSeconds: 0.5,
    });
    store = new ResourceStore(service.database.db, validator);
    for (const participant of ['st-olaf', 'lakeside-consults', 'northfield-pathology']) tokens[participant] = await getAccessToken(service.url, clientIdOf(participant));

    // One referral to Lakeside with the imaging study (about 300 kB, served from the EHR's Binary endpoint).
    const res = await fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens['st-olaf']}`, 'content-type': 'application/json' },
      body: JSON.stringify(
        makeSecondOpinionRequest({
          consultants: ['lakeside-consults'],
          blinded: false,
          firstOpinion: { documents: [] },
          records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }, { reference: `DocumentReference/${docId('imaging-2024')}` }] },
        }, ehr.seeded),
      ),
    });
    expect(res.status).toBe(201);
    const { id, tasks } = (await res.json()) as { id: string; tasks: Task[] };
    const summary = await assembled(id);
    expect(summary.recordSet.status).toBe('records-ready');
    const task = await get<Task>(`/fhir/Task/${tasks[0]?.id}`, 'lakeside-consults');
    const bundleRef = task.body.input?.[0]?.valueReference?.reference as string;
    bundle = (await get<Bundle>(`/fhir/${bundleRef}`, 'lakeside-consults')).body;
    doc = bundle.entry?.map((e) => e.resource as DocumentReference).find((d) => d.meta?.source?.endsWith(`/DocumentReference/${docId('imaging-2024')}`)) as DocumentReference;
    sha256 = doc.content[0]?.attachment.url?.split('/').pop() as string;
    const seeded = seededDocument(ehr.seeded, 'imaging-2024');
    expectedBytes = { size: seeded?.size as number, sha1: seeded?.sha1Base64 as string, contentType: seeded?.contentType as string };
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  async function assembled(id: string): Promise<ReferralSummary> {
    const deadline = Date.now() + 45_000;
    for (;;) {
      const summary = (await get<ReferralSummary>(`/second-opinions/${id}`, 'st-olaf')).body;
      if (summary.recordSet.status !== 'records-pending') return summary;
      if (Date.now() > deadline) throw new Error('not assembled in time');
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function get<T>(pathAndQuery: string, participant: string, headers: Record<string, string> = {}): Promise<{ status: number; body: T; headers: Headers }> {
    const res = await fetch(`${service.url}${pathAndQuery}`, { headers: { authorization: `Bearer ${tokens[participant]}`, ...headers } });
    const text = await res.text();
    return { status: res.status, body: (text && /json/.test(res.headers.get('content-type') ?? '') ? JSON.parse(text) : text) as T, headers: res.headers };
  }

  async function getBytes(pathAndQuery: string, participant: string, headers: Record<string, string> = {}): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
    const res = await fetch(`${service.url}${pathAndQuery}`, { headers: { authorization: `Bearer ${tokens[participant]}`, ...headers } });
    return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), headers: res.headers };
  }

  /** AuditEvents naming `reference` among their entities, oldest first. */
  async function auditsOf(reference: string): Promise<AuditEvent[]> {
    const page = await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 100, contains: [[{ entity: [{ what: { reference } }] }]] }, 'system');
    return page.resources;
  }

  const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('base64');

  it('the consultant reads the Bundle and each DocumentReference; both validate', async () => {
    expect(validator.validate(bundle)).toEqual([]);
    const read = await get<DocumentReference>(`/fhir/DocumentReference/${doc.id}`, 'lakeside-consults');
    expect(read.status).toBe(200);
    expect(read.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
    expect(read.body).toMatchObject({ id: doc.id, content: doc.content, meta: { source: `${ehr.baseUrl}/DocumentReference/${docId('imaging-2024')}`, versionId: '1' } });
    expect(validator.validate(read.body)).toEqual([]);
    const search = await get<Bundle>(`/fhir/DocumentReference?_id=${doc.id}`, 'lakeside-consults');
    expect(search.body.entry?.map((e) => e.resource?.id)).toEqual([doc.id]);
  });

  it('Binary: the bytes with Content-Type, Content-Length and a strong ETag from the SHA-256; verified against the attachment', async () => {
    const res = await getBytes(`/fhir/Binary/${sha256}`, 'lakeside-consults');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(expectedBytes.contentType);
    expect(res.headers.get('content-length')).toBe(String(expectedBytes.size));
    expect(res.headers.get('etag')).toBe(`"${sha256}"`);
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.bytes.length).toBe(doc.content[0]?.attachment.size);
    expect(sha1(res.bytes)).toBe(doc.content[0]?.attachment.hash);
    expect(sha1(res.bytes)).toBe(expectedBytes.sha1);
    expect(createHash('sha256').update(res.bytes).digest('hex')).toBe(sha256);

    const notModified = await getBytes(`/fhir/Binary/${sha256}`, 'lakeside-consults', { 'if-none-match': `"${sha256}"` });
    expect(notModified.status).toBe(304);
    expect(notModified.bytes.length).toBe(0);
  });

  it('Binary: byte ranges (a-b, a-, suffix), If-Range, and 416 outside the body', async () => {
    const whole = (await getBytes(`/fhir/Binary/${sha256}`, 'st-olaf')).bytes;
    const size = whole.length;
    const cases: [string, number, number][] = [
      ['bytes=0-99', 0, 99],
      [`bytes=${size - 10}-`, size - 10, size - 1],
      ['bytes=-25', size - 25, size - 1],
      [`bytes=100-${size + 1000}`, 100, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const res = await getBytes(`/fhir/Binary/${sha256}`, 'lakeside-consults', { range });
      expect(res.status, range).toBe(206);
      expect(res.headers.get('content-range'), range).toBe(`bytes ${start}-${end}/${size}`);
      expect(res.headers.get('content-length'), range).toBe(String(end - start + 1));
      expect(res.bytes.equals(whole.subarray(start, end + 1)), range).toBe(true);
    }
    const staleIfRange = await getBytes(`/fhir/Binary/${sha256}`, 'lakeside-consults', { range: 'bytes=0-9', 'if-range': '"other"' });
    expect(staleIfRange.status).toBe(200);
    expect(staleIfRange.bytes.length).toBe(size);

    const outside = await get<OperationOutcome>(`/fhir/Binary/${sha256}`, 'lakeside-consults', { range: `bytes=${size}-` });
    expect(outside.status).toBe(416);
    expect(outside.headers.get('content-range')).toBe(`bytes */${size}`);
    expect(outside.body.issue?.[0]).toMatchObject({ severity: 'error', code: 'value', expression: ['Range'] });
  });

  it('Binary as a FHIR resource when asked for application/fhir+json; HEAD sends the headers only', async () => {
    const res = await get<Binary>(`/fhir/Binary/${sha256}`, 'lakeside-consults', { accept: 'application/fhir+json' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ resourceType: 'Binary', id: sha256, contentType: expectedBytes.contentType });
    expect(validator.validate(res.body)).toEqual([]);
    expect(sha1(Buffer.from(res.body.data as string, 'base64'))).toBe(expectedBytes.sha1);

    const head = await fetch(`${service.url}/fhir/Binary/${sha256}`, { method: 'HEAD', headers: { authorization: `Bearer ${tokens['lakeside-consults']}` } });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(expectedBytes.size));
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it('the referrer reads the record set too', async () => {
    expect((await get(`/fhir/Bundle/${bundle.id}`, 'st-olaf')).status).toBe(200);
    expect((await get(`/fhir/DocumentReference/${doc.id}`, 'st-olaf')).status).toBe(200);
    expect((await getBytes(`/fhir/Binary/${sha256}`, 'st-olaf')).status).toBe(200);
    const provenance = await get<Bundle>(`/fhir/Provenance?target=Bundle/${bundle.id}`, 'st-olaf');
    expect(provenance.status).toBe(200);
    expect(provenance.body.entry).toHaveLength(1);
    const record = provenance.body.entry?.[0]?.resource as Provenance;
    expect(record.target.map((t) => t.reference)).toContain(`DocumentReference/${doc.id}`);
    expect(record.entity?.map((e) => e.what.reference)).toContain(`${ehr.baseUrl}/DocumentReference/${docId('imaging-2024')}`);
    expect(validator.validate(record)).toEqual([]);
  });

  it('a consultant of another referral gets 404 on the Bundle, the DocumentReference and the Binary, and each refusal is audited', async () => {
    for (const pathname of [`/fhir/Bundle/${bundle.id}`, `/fhir/DocumentReference/${doc.id}`, `/fhir/Binary/${sha256}`]) {
      const res = await get<OperationOutcome>(pathname, 'northfield-pathology');
      expect(res.status, pathname).toBe(404);
      expect(res.body.resourceType, pathname).toBe('OperationOutcome');
    }
    const unknown = await get<OperationOutcome>(`/fhir/Binary/${'0'.repeat(64)}`, 'lakeside-consults');
    expect(unknown.status).toBe(404);
    for (const reference of [`Bundle/${bundle.id}`, `DocumentReference/${doc.id}`, `Binary/${sha256}`]) {
      const refused = (await auditsOf(reference)).filter((e) => e.outcome === '4');
      expect(refused.length, reference).toBeGreaterThanOrEqual(1);
      expect(refused[0]?.agent.some((a) => a.who?.identifier?.value === 'northfield-pathology'), reference).toBe(true);
    }
  });

  it('every successful read of the Bundle, a DocumentReference and a Binary left an AuditEvent naming the reader; each validates', async () => {
    for (const reference of [`Bundle/${bundle.id}`, `DocumentReference/${doc.id}`, `Binary/${sha256}`]) {
      const events = (await auditsOf(reference)).filter((e) => e.outcome === '0' && e.subtype?.[0]?.code === 'read');
      const readers = new Set(events.flatMap((e) => e.agent.map((a) => a.who?.identifier?.value)).filter(Boolean));
      expect(readers.has('lakeside-consults'), reference).toBe(true);
      expect(readers.has('st-olaf'), reference).toBe(true);
      for (const event of events) {
        expect(validator.validate(event)).toEqual([]);
        expect(event.entity?.some((e) => e.what?.reference === `${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`), reference).toBe(true);
      }
    }
  });
});
