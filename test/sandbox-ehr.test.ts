/**
 * The sandbox EHR over real HTTP: SMART token endpoint, FHIR read/search/paging, Binary bytes
 * and their declared size/hash, the storage origin, auth refusals, conditional create, every
 * fault kind of the fault switch, and each strictness switch: what a real server refuses is
 * refused with its status and OperationOutcome, and switching it off restores leniency.
 */
import { createHash } from 'node:crypto';
import type { Bundle, DocumentReference, Patient } from '@medplum/fhirtypes';
import type { JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defaultSandboxClients, SERVICE_OUTBOUND_CLIENT_ID } from './support/sandbox-ehr/clients.ts';
import { DEFAULT_REGISTERED_SCOPE } from './support/sandbox-ehr/scopes.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { makePatient } from './support/sandbox-ehr/seed-resources.ts';
import { startSandboxEhr, type SandboxEhr } from './support/sandbox-ehr/server.ts';
import { resolveStrict } from './support/sandbox-ehr/strict.ts';
import { CLIENT_ASSERTION_TYPE, loadExamplePrivateJwk, signClientAssertion } from './support/tokens.ts';

let ehr: SandboxEhr;
let privateJwk: JWK;
/** Granted the default registration (requested no scope). */
let token: string;
/** A client registered with every interaction on every type, for the write tests. */
const WIDE_CLIENT = 'wide-test-client';
let wideToken: string;

async function tokenRequest(assertion: string, scope: string | null = 'system/*.rs', on: SandboxEhr = ehr): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(on.tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion, ...(scope !== null ? { scope } : {}) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const assertion = (extra: Partial<Parameters<typeof signClientAssertion>[0]> = {}, on: SandboxEhr = ehr): Promise<string> =>
  signClientAssertion({ clientId: SERVICE_OUTBOUND_CLIENT_ID, privateJwk, tokenUrl: on.tokenUrl, ...extra });

/** An access token from `on` for `scope` (undefined: ask for none, get the registration). */
async function tokenFor(on: SandboxEhr, scope: string | undefined, clientId = SERVICE_OUTBOUND_CLIENT_ID): Promise<string> {
  const { status, body } = await tokenRequest(await assertion({ clientId }, on), scope ?? null, on);
  expect(status).toBe(200);
  return body.access_token as string;
}

/** The default registration plus {@link WIDE_CLIENT}. */
const clients = () => [...defaultSandboxClients(), { ...defaultSandboxClients()[0]!, clientId: WIDE_CLIENT, scope: 'system/*.cruds' }];

const docId = (key: string, on: SandboxEhr = ehr): string => seededDocument(on.seeded, key).id;

function get(path: string, headers: Record<string, string> = {}): Promise<Response> {
  const url = path.startsWith('http') ? path : `${ehr.baseUrl}/${path}`;
  return fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'application/fhir+json', ...headers } });
}

async function getJson<T>(path: string): Promise<T> {
  const res = await get(path);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/fhir+json; charset=utf-8');
  return (await res.json()) as T;
}

const sha1 = (bytes: Uint8Array): string => createHash('sha1').update(bytes).digest('base64');
const s3Error = (code: string, message: string): string => `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
const SIGNATURE_MISMATCH = s3Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');

beforeAll(async () => {
  privateJwk = await loadExamplePrivateJwk('service-outbound');
  ehr = await startSandboxEhr({ port: 0, clients: clients() });
  const { status, body } = await tokenRequest(await assertion(), null);
  expect(status).toBe(200);
  expect(body).toEqual({ access_token: expect.any(String), token_type: 'bearer', expires_in: 300, scope: DEFAULT_REGISTERED_SCOPE });
  token = body.access_token as string;
  wideToken = await tokenFor(ehr, 'system/*.cruds', WIDE_CLIENT);
  console.log(`sandbox start-up ${ehr.startupMs.toFixed(0)} ms; ${ehr.seeded.documents.length} documents, ${[...ehr.blobs.values()].reduce((n, b) => n + b.bytes.length, 0)} bytes of attachments`);
});
afterAll(() => ehr?.stop());
afterEach(() => ehr.faults.clear());

describe('FHIR API', () => {
  it('reads the seeded patient', async () => {
    const { meta, ...patient } = await getJson<Patient>(`Patient/${ehr.seeded.patientId}`);
    expect(patient).toEqual({ ...makePatient(`Organization/${ehr.seeded.organizationId}`), id: ehr.seeded.patientId });
    expect(meta).toEqual({ versionId: expect.any(String), lastUpdated: expect.any(String) });
  });

  it('searches DocumentReference by bare patient id and LOINC type', async () => {
    const bundle = await getJson<Bundle<DocumentReference>>(`DocumentReference?patient=${ehr.seeded.patientId}&type=http://loinc.org|11504-8`);
    expect(bundle.total).toBe(1);
    expect(bundle.entry?.map((e) => e.resource?.id)).toEqual([docId('op-note-2024')]);
    expect(bundle.entry?.[0]?.resource?.type?.coding?.[0]).toEqual({ system: 'http://loinc.org', code: '11504-8', display: 'Surgical operation note' });
  });

  it('pages a search with _count and next links until every document is found', async () => {
    const pages: string[][] = [];
    let next: string | undefined = `DocumentReference?patient=Patient/${ehr.seeded.patientId}&_count=3`;
    const keyOf = new Map(ehr.seeded.documents.map((d) => [d.id, d.key]));
    while (next) {
      const bundle: Bundle<DocumentReference> = await getJson<Bundle<DocumentReference>>(next);
      expect(bundle.total).toBe(9);
      pages.push(bundle.entry?.map((e) => keyOf.get(e.resource?.id ?? '') ?? '') ?? []);
      next = bundle.link?.find((l) => l.relation === 'next')?.url;
    }
    expect(pages).toEqual([
      ['op-note-2024', 'pathology-2024', 'imaging-2024'],
      ['preop-photo-2024', 'discharge-2024', 'progress-2024'],
      ['hp-2024', 'referral-2024', 'first-opinion-note'],
    ]);
    expect(pages.flat().sort()).toEqual(ehr.seeded.documents.map((d) => d.key).sort());
  });

  it('serves a CapabilityStatement and the SMART configuration without a token', async () => {
    const meta = await fetch(`${ehr.baseUrl}/metadata`);
    expect(meta.status).toBe(200);
    const cs = (await meta.json()) as Record<string, any>;
    expect(cs).toMatchObject({ resourceType: 'CapabilityStatement', fhirVersion: '4.0.1', kind: 'instance' });
    expect(cs.rest[0].security.extension[0].extension).toEqual([{ url: 'token', valueUri: ehr.tokenUrl }]);
    const smart = await fetch(`${ehr.baseUrl}/.well-known/smart-configuration`);
    expect(await smart.json()).toMatchObject({ token_endpoint: ehr.tokenUrl, token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'] });
  });

  it('creates once under If-None-Exist, however often it is sent', async () => {
    const body = JSON.stringify({ resourceType: 'DocumentReference', status: 'current', identifier: [{ system: 'urn:test', value: 'opinion-1' }], content: [{ attachment: { contentType: 'text/plain', data: 'b2s=' } }] });
    const post = (): Promise<Response> =>
      fetch(`${ehr.baseUrl}/DocumentReference`, { method: 'POST', body, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', 'if-none-exist': 'identifier=urn:test|opinion-1' } });
    const first = await post();
    const second = await post();
    expect([first.status, second.status]).toEqual([201, 200]);
    const [a, b] = [(await first.json()) as DocumentReference, (await second.json()) as DocumentReference];
    expect(b.id).toBe(a.id);
    expect(first.headers.get('location')).toBe(`${ehr.baseUrl}/DocumentReference/${a.id}/_history/${a.meta?.versionId}`);
    const found = await getJson<Bundle>('DocumentReference?identifier=urn:test|opinion-1');
    expect(found.total).toBe(1);
  });

  it('updates with If-Match (stale version -> 412) and runs a transaction', async () => {
    const headers = { authorization: `Bearer ${wideToken}`, 'content-type': 'application/fhir+json' };
    const harbor = ehr.seeded.organizations['harbor-clinic']!;
    const org = await getJson<{ resourceType: 'Organization'; id: string; name: string; meta: { versionId: string } }>(`Organization/${harbor}`);
    const put = (version: string): Promise<Response> =>
      fetch(`${ehr.baseUrl}/Organization/${harbor}`, { method: 'PUT', headers: { ...headers, 'if-match': `W/"${version}"` }, body: JSON.stringify({ ...org, name: 'Harbor Clinic (renamed)' }) });
    expect((await put(org.meta.versionId)).status).toBe(200);
    expect((await put(org.meta.versionId)).status).toBe(412);
    const tx = await fetch(ehr.baseUrl, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:0b7c7b1e-1f7a-4d7e-9c39-3d1f3b0e0a01', resource: { resourceType: 'Organization', name: 'Tx Org' }, request: { method: 'POST', url: 'Organization' } },
          { resource: { resourceType: 'Practitioner', name: [{ family: 'Tx' }], qualification: [{ code: { text: 'x' }, issuer: { reference: 'urn:uuid:0b7c7b1e-1f7a-4d7e-9c39-3d1f3b0e0a01' } }] }, request: { method: 'POST', url: 'Practitioner' } },
        ],
      }),
    });
    const result = (await tx.json()) as Bundle;
    expect([tx.status, result.type, result.entry?.map((e) => e.response?.status)]).toEqual([200, 'transaction-response', ['201', '201']]);
    const practitioner = result.entry?.[1]?.resource as { qualification: { issuer: { reference: string } }[] };
    expect(practitioner.qualification[0]!.issuer.reference).toBe(`Organization/${result.entry?.[0]?.resource?.id}`);
  });
});

describe('attachments', () => {
  it('streams every Binary with the size and SHA-1 its DocumentReference declares', async () => {
    const binaries = ehr.seeded.documents.filter((d) => d.location === 'binary');
    expect(binaries.map((d) => d.loincCode).sort()).toEqual(['11488-4', '11504-8', '11506-3', '11526-1', '18748-4', '34117-2', '57133-1']);
    for (const doc of binaries) {
      const { attachment } = (await getJson<DocumentReference>(`DocumentReference/${doc.id}`)).content[0]!;
      const res = await get(attachment.url!, { accept: '*/*' });
      const bytes = new Uint8Array(await res.arrayBuffer());
      expect({ status: res.status, type: res.headers.get('content-type'), length: Number(res.headers.get('content-length')), size: bytes.length, hash: sha1(bytes) })
        .toEqual({ status: 200, type: attachment.contentType, length: attachment.size, size: attachment.size, hash: attachment.hash });
    }
    expect(seededDocument(ehr.seeded, 'imaging-2024').size).toBeGreaterThan(5 * 1024 * 1024);
  });

  it('returns the Binary resource for Accept: application/fhir+json, and inline data as declared', async () => {
    const declared = seededDocument(ehr.seeded, 'op-note-2024');
    const binary = await getJson<{ resourceType: string; contentType: string; data: string }>(`Binary/${declared.binaryId}`);
    expect(binary).toMatchObject({ resourceType: 'Binary', id: declared.binaryId, contentType: 'application/pdf' });
    expect(sha1(Buffer.from(binary.data, 'base64'))).toBe(declared.sha1Base64);
    const inline = (await getJson<DocumentReference>(`DocumentReference/${docId('discharge-2024')}`)).content[0]!.attachment;
    const bytes = Buffer.from(inline.data!, 'base64');
    expect([bytes.length, sha1(bytes), bytes.subarray(0, 5).toString()]).toEqual([inline.size, inline.hash, '%PDF-']);
  });

  it('serves storage links without Authorization, records that, and refuses a bad signature', async () => {
    const photo = seededDocument(ehr.seeded, 'preop-photo-2024');
    const { attachment } = (await getJson<DocumentReference>(`DocumentReference/${photo.id}`)).content[0]!;
    expect(attachment.url).toMatch(new RegExp(`^${ehr.storageUrl}/objects/${photo.binaryId}\\?expires=\\d+&sig=[\\w-]+$`));
    const res = await fetch(attachment.url!);
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect([res.status, res.headers.get('content-type'), bytes.length, sha1(bytes)]).toEqual([200, 'image/png', attachment.size, attachment.hash]);
    const recorded = ehr.requests.filter((r) => r.origin === 'storage');
    expect(recorded.at(-1)).toMatchObject({ method: 'GET', path: new URL(attachment.url!).pathname + new URL(attachment.url!).search, authorization: false, status: 200 });
    const bad = await fetch(attachment.url!.replace(/sig=.*/, 'sig=forged'));
    expect([bad.status, await bad.text()]).toEqual([403, SIGNATURE_MISMATCH]);
  });
});

describe('auth', () => {
  it('answers 401 without a valid bearer token', async () => {
    for (const headers of [{}, { authorization: 'Bearer not-a-token' }]) {
      const res = await fetch(`${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`, { headers });
      expect([res.status, res.headers.get('www-authenticate'), await res.json()]).toEqual([
        401,
        'Bearer realm="sandbox-ehr", error="invalid_token"',
        { resourceType: 'OperationOutcome', id: 'unauthorized', issue: [{ severity: 'error', code: 'login', details: { text: 'Unauthorized' } }] },
      ]);
    }
    expect(ehr.requests.at(-2)).toMatchObject({ origin: 'ehr', path: `/fhir/R4/Patient/${ehr.seeded.patientId}`, authorization: false, status: 401 });
  });

  it('refuses a replayed assertion, a wrong audience and an unknown client', async () => {
    const once = await assertion();
    expect((await tokenRequest(once)).status).toBe(200);
    expect(await tokenRequest(once)).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'client assertion jti already used' } });
    expect(await tokenRequest(await assertion({ tokenUrl: 'https://elsewhere.example/token' }))).toEqual({
      status: 401,
      body: { error: 'invalid_client', error_description: 'Invalid client assertion audience' },
    });
    expect(await tokenRequest(await assertion({ expiresInSeconds: 3600 }))).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'client assertion exp is more than 5 minutes ahead' } });
    expect(await tokenRequest(await assertion({ clientId: 'intruder' }))).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'unknown client' } });
  });

  it('takes its token URL under any loopback name as the audience (localhost and 127.0.0.1 alike), and no other port or path', async () => {
    const port = new URL(ehr.tokenUrl).port;
    for (const host of ['127.0.0.1', 'localhost', '[::1]']) {
      const res = await tokenRequest(await assertion({ tokenUrl: `http://${host}:${port}/auth/token` }));
      expect([host, res.status]).toEqual([host, 200]);
    }
    for (const tokenUrl of [`http://localhost:${Number(port) + 1}/auth/token`, `http://localhost:${port}/auth/other`, `https://localhost:${port}/auth/token`]) {
      expect(await tokenRequest(await assertion({ tokenUrl }))).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'Invalid client assertion audience' } });
    }
    // What it advertises is the token URL itself.
    const smart = (await (await fetch(`${ehr.baseUrl}/.well-known/smart-configuration`)).json()) as { token_endpoint: string };
    expect(smart.token_endpoint).toBe(ehr.tokenUrl);
  });
});

describe('fault switch', () => {
  const opNoteBinary = (): string => seededDocument(ehr.seeded, 'op-note-2024').binaryId!;
  const opNote = (): DocumentReference['content'][number]['attachment'] => {
    const d = seededDocument(ehr.seeded, 'op-note-2024');
    return { size: d.size, hash: d.sha1Base64 };
  };

  it('fails N times with the given status, then recovers', async () => {
    const rule = ehr.faults.add({ path: /\/Binary\//, status: 500, times: 2 });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await get(`Binary/${opNoteBinary()}`, { accept: '*/*' })).status);
    expect(statuses).toEqual([500, 500, 200]);
    expect(rule.hits).toBe(2);
  });

  it('delays past a client timeout', async () => {
    ehr.faults.add({ path: `/Patient/${ehr.seeded.patientId}`, delayMs: 1_000, times: 1 });
    const started = performance.now();
    await expect(fetch(`${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(200) })).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(performance.now() - started).toBeLessThan(900);
  });

  it('resets the connection', async () => {
    ehr.faults.add({ path: `/Patient/${ehr.seeded.patientId}`, resetConnection: true, times: 1 });
    await expect(get(`Patient/${ehr.seeded.patientId}`)).rejects.toThrow('fetch failed');
    expect((await get(`Patient/${ehr.seeded.patientId}`)).status).toBe(200);
  });

  it('drops the answer after storing the request (a lost response); the same conditional create then finds it', async () => {
    ehr.faults.add({ path: /^\/fhir\/R4\/DocumentReference$/, method: 'POST', dropResponse: true, times: 1 });
    const body = JSON.stringify({ resourceType: 'DocumentReference', status: 'current', identifier: [{ system: 'urn:test', value: 'lost-answer-1' }], content: [{ attachment: { contentType: 'text/plain', data: 'b2s=' } }] });
    const post = (): Promise<Response> =>
      fetch(`${ehr.baseUrl}/DocumentReference`, { method: 'POST', body, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', 'if-none-exist': 'identifier=urn:test|lost-answer-1' } });
    await expect(post()).rejects.toThrow('fetch failed');
    const stored = await getJson<Bundle<DocumentReference>>('DocumentReference?identifier=urn:test|lost-answer-1');
    expect(stored.entry?.map((e) => e.resource?.identifier)).toEqual([[{ system: 'urn:test', value: 'lost-answer-1' }]]);
    const again = await post();
    expect(again.status).toBe(200);
    expect(((await again.json()) as DocumentReference).id).toBe(stored.entry?.[0]?.resource?.id);
    // Bodies are kept only with `recordBodies`.
    expect(ehr.requests.filter((r) => r.path === '/fhir/R4/DocumentReference' && r.method === 'POST').map((r) => r.body)).not.toContain(body);
  });

  it('corrupts bytes (same length, wrong hash) and truncates (wrong length)', async () => {
    const declared = opNote();
    ehr.faults.add({ path: `/Binary/${opNoteBinary()}`, corruptBytes: true, times: 1 });
    const corrupt = await get(`Binary/${opNoteBinary()}`, { accept: '*/*' });
    const corruptBytes = new Uint8Array(await corrupt.arrayBuffer());
    expect([corruptBytes.length, sha1(corruptBytes) === declared.hash]).toEqual([declared.size, false]);

    ehr.faults.add({ path: opNoteBinary(), wrongLength: true, times: 1 });
    const short = await get(`Binary/${opNoteBinary()}`, { accept: '*/*' });
    const shortBytes = new Uint8Array(await short.arrayBuffer());
    expect([Number(short.headers.get('content-length')), shortBytes.length]).toEqual([Math.floor(declared.size! / 2), Math.floor(declared.size! / 2)]);
  });

  it('applies faults on the storage origin as well', async () => {
    const url = ehr.seeded.documents.find((d) => d.location === 'storage')!.url!;
    ehr.faults.add({ path: '/objects/', status: 503, times: 1 });
    expect([(await fetch(url)).status, (await fetch(url)).status]).toEqual([503, 200]);
  });
});

describe('options', () => {
  it('seeds bulk documents of the requested size and can run without auth', async () => {
    const bulk = await startSandboxEhr({ requireAuth: false, seed: { largeBytes: 256 * 1024, bulk: { count: 3, bytesEach: 200_000 } } });
    try {
      console.log(`second sandbox start-up (definitions already loaded) ${bulk.startupMs.toFixed(0)} ms`);
      const docs = bulk.seeded.documents.filter((d) => d.key.startsWith('bulk-'));
      expect(docs.map((d) => [d.key, d.loincCode, d.contentType, Math.abs(d.size - 200_000) < 64])).toEqual([
        ['bulk-0', '11506-3', 'application/pdf', true],
        ['bulk-1', '11506-3', 'application/pdf', true],
        ['bulk-2', '11506-3', 'application/pdf', true],
      ]);
      expect(new Set(docs.map((d) => d.sha1Base64)).size).toBe(3);
      const res = await fetch(`${bulk.baseUrl}/${docs[2]!.url}`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      expect([res.status, bytes.length, sha1(bytes)]).toEqual([200, docs[2]!.size, docs[2]!.sha1Base64]);
      const search = (await (await fetch(`${bulk.baseUrl}/DocumentReference?patient=${bulk.seeded.patientId}&_summary=count`)).json()) as Bundle;
      expect(search.total).toBe(12);
      // Same seed, same bytes: hashes are stable between instances.
      expect(seededDocument(bulk.seeded, 'op-note-2024').sha1Base64).toBe(seededDocument(ehr.seeded, 'op-note-2024').sha1Base64);
    } finally {
      await bulk.stop();
    }
  });
});

describe('strictness switches', () => {
  /**
   * Every switch on but `jwksUriOnly` (these clients are registered by value; the JWK Set URL
   * flow test runs with it on), and every switch off (`strict: false`), small attachments.
   */
  let strictEhr: SandboxEhr;
  let lenientEhr: SandboxEhr;
  beforeAll(async () => {
    [strictEhr, lenientEhr] = await Promise.all([
      startSandboxEhr({ strict: { ...resolveStrict(true), jwksUriOnly: false }, clients: clients(), seed: { largeBytes: 10_000 } }),
      startSandboxEhr({ strict: false, clients: clients(), seed: { largeBytes: 10_000 } }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([strictEhr?.stop(), lenientEhr?.stop()]);
  });

  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

  async function send(on: SandboxEhr, bearer: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
    const res = await fetch(path.startsWith('http') ? path : `${on.baseUrl}/${path}`, {
      method,
      headers: { authorization: `Bearer ${bearer}`, accept: 'application/fhir+json', ...(body ? { 'content-type': 'application/fhir+json' } : {}), ...headers },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  const forbidden = (text: string) => ({ resourceType: 'OperationOutcome', id: 'forbidden', issue: [{ severity: 'error', code: 'forbidden', details: { text } }] });
  const missing = (scope: string) => forbidden(`Forbidden: the access token's scope does not include ${scope}`);
  const invalidReference = (expression: string) => ({
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code: 'invalid', details: { text: 'Invalid reference (Not found)' }, expression: [expression] }],
  });
  const note = (on: SandboxEhr, extra: Record<string, unknown> = {}) => ({
    resourceType: 'DocumentReference',
    status: 'current',
    subject: { reference: `Patient/${on.seeded.patientId}` },
    content: [{ attachment: { contentType: 'text/plain', data: 'b2s=' } }],
    ...extra,
  });

  describe('serverIds', () => {
    it('on: every seeded resource has a server-assigned UUID and the chart references those ids', async () => {
      const s = ehr.seeded;
      expect([s.organizationId, s.firstOpinionNoteId]).toEqual([s.organizations['st-olaf'], seededDocument(s, 'first-opinion-note').id]);
      const ids = [...Object.values(s.organizations), s.patientId, s.practitionerId, s.consentId, s.expiredConsentId, s.otherOrgConsentId, s.pathologyReportId, s.imagingReportId, s.imagingStudyId, s.endpointId,
        ...s.documents.flatMap((d) => [d.id, ...(d.location === 'binary' ? [d.binaryId!] : [])])];
      expect(ids.filter((id) => !UUID.test(id))).toEqual([]);
      expect(new Set(ids).size).toBe(ids.length);
      expect((await get('Patient/pat-1')).status).toBe(404);
      const found = (await send(ehr, wideToken, 'GET', 'Patient?identifier=urn:oid:2.16.840.1.113883.4.1|999-00-1234')).body as Bundle<Patient>;
      expect(found.entry?.map((e) => e.resource?.id)).toEqual([s.patientId]);
      const op = await getJson<DocumentReference>(`DocumentReference/${docId('op-note-2024')}`);
      expect([op.subject, op.author, op.custodian, op.content[0]!.attachment.url]).toEqual([
        { reference: `Patient/${s.patientId}`, display: 'Alex Example' },
        [{ reference: `Practitioner/${s.practitionerId}`, display: 'Dr Ingrid Nilsen' }],
        { reference: `Organization/${s.organizationId}` },
        `Binary/${seededDocument(s, 'op-note-2024').binaryId}`,
      ]);
      const report = await getJson<{ imagingStudy: { reference: string }[]; subject: { reference: string } }>(`DiagnosticReport/${s.imagingReportId}`);
      expect([report.subject.reference, report.imagingStudy[0]!.reference]).toEqual([`Patient/${s.patientId}`, `ImagingStudy/${s.imagingStudyId}`]);
    });

    it('off: the chart keeps its fixed ids', () => {
      const s = lenientEhr.seeded;
      expect([s.patientId, s.practitionerId, s.organizationId, s.consentId, s.firstOpinionNoteId, s.imagingStudyId, seededDocument(s, 'op-note-2024').id, seededDocument(s, 'op-note-2024').binaryId])
        .toEqual(['pat-1', 'dr-nilsen', 'st-olaf', 'consent-1', 'first-opinion-note', 'imaging-study-2024', 'op-note-2024', 'bin-op-note-2024']);
      expect(Object.entries(s.organizations).filter(([key, id]) => key !== id)).toEqual([]);
      expect(Object.keys(s.organizations)).toHaveLength(7);
    });
  });

  describe('ownOrganizations', () => {
    it('on: Organizations have their own ids and registry identifiers, and the chart names them by those ids', async () => {
      const bearer = await tokenFor(strictEhr, 'system/*.rs', WIDE_CLIENT);
      const s = strictEhr.seeded;
      expect(Object.keys(s.organizations).sort()).toEqual(['audit-office', 'harbor-clinic', 'lakeside', 'northfield-pathology', 'riverside-imaging', 'st-olaf', 'st-olaf-primary-care']);
      const lakeside = await send(strictEhr, bearer, 'GET', 'Organization?identifier=https://registry.example.org/organizations|ORG-2001');
      expect(lakeside.body.entry.map((e: any) => [e.resource.id, e.resource.name, e.resource.identifier])).toEqual([
        [s.organizations.lakeside, 'Lakeside Clinic (example)', [{ system: 'https://registry.example.org/organizations', value: 'ORG-2001' }]],
      ]);
      expect(Object.values(s.organizations).filter((id) => !UUID.test(id))).toEqual([]);
      const consent = (await send(strictEhr, bearer, 'GET', `Consent/${s.consentId}`)).body;
      expect([consent.provision.actor[0].reference, consent.organization]).toEqual([
        { reference: `Organization/${s.organizations.lakeside}`, display: 'Lakeside Clinic (example)' },
        [{ reference: `Organization/${s.organizationId}` }],
      ]);
      const other = (await send(strictEhr, bearer, 'GET', `Consent/${s.otherOrgConsentId}`)).body;
      expect(other.provision.actor[0].reference).toEqual({ reference: `Organization/${s.organizations['harbor-clinic']}`, display: 'Harbor Clinic (example, not in the network)' });
      const patient = (await send(strictEhr, bearer, 'GET', `Patient/${s.patientId}`)).body;
      const report = (await send(strictEhr, bearer, 'GET', `DiagnosticReport/${s.pathologyReportId}`)).body;
      const doc = (await send(strictEhr, bearer, 'GET', `DocumentReference/${seededDocument(s, 'op-note-2024').id}`)).body;
      expect([patient.managingOrganization, report.performer, doc.custodian]).toEqual([
        { reference: `Organization/${s.organizationId}` },
        [{ reference: `Organization/${s.organizationId}` }],
        { reference: `Organization/${s.organizationId}` },
      ]);
    });

    it('off: the network file\'s ids, with the identifiers; switching it on changes only the organizations and their references', async () => {
      const [shared, own] = await Promise.all([
        startSandboxEhr({ strict: { serverIds: false, ownOrganizations: false }, clients: clients(), seed: { largeBytes: 10_000 } }),
        startSandboxEhr({ strict: { serverIds: false, ownOrganizations: true }, clients: clients(), seed: { largeBytes: 10_000 } }),
      ]);
      try {
        const dump = async (on: SandboxEhr): Promise<string> => {
          const bearer = await tokenFor(on, 'system/*.rs', WIDE_CLIENT);
          const out: unknown[] = [];
          for (const type of ['Patient', 'Practitioner', 'Endpoint', 'DocumentReference', 'DiagnosticReport', 'ImagingStudy', 'Consent']) {
            const bundle = (await send(on, bearer, 'GET', `${type}?_count=100`)).body as Bundle;
            out.push(...(bundle.entry ?? []).map((e) => {
              const { meta: _meta, ...rest } = e.resource as unknown as Record<string, unknown>;
              return rest;
            }));
          }
          // Each sandbox has its own storage port and signs links afresh on each read; consent periods follow the clock.
          return JSON.stringify(out).replaceAll(on.storageUrl, 'STORAGE').replace(/\?expires=\d+&sig=[\w-]+/g, '').replace(/"(start|end|dateTime)":"[^"]+"/g, '"$1":"…"');
        };
        const bearer = await tokenFor(shared, 'system/*.rs', WIDE_CLIENT);
        const orgs = (await send(shared, bearer, 'GET', 'Organization')).body as Bundle;
        expect(orgs.entry?.map((e) => e.resource)).toEqual(expect.arrayContaining([
          expect.objectContaining({ id: 'st-olaf', name: 'St Olaf Hospital (example)', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-1001' }] }),
          expect.objectContaining({ id: 'lakeside', name: 'Lakeside Clinic (example)', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-2001' }] }),
          expect.objectContaining({ id: 'harbor-clinic', name: 'Harbor Clinic (example, not in the network)' }),
        ]));
        expect(orgs.entry?.filter((e) => !('identifier' in (e.resource ?? {})))).toEqual([]);
        const [before, after] = [await dump(shared), await dump(own)];
        expect(after).not.toBe(before);
        const renamed = Object.fromEntries(Object.entries(own.seeded.organizations).map(([key, id]) => [id, key]));
        expect(after.replace(/Organization\/(org-\d+)/g, (_m, id: string) => `Organization/${renamed[id]}`)).toBe(before);
      } finally {
        await Promise.all([shared.stop(), own.stop()]);
      }
    });
  });

  describe('enforceScopes', () => {
    it('grants what is requested and registered, and says so in the token response', async () => {
      const grant = async (scope: string) => (await tokenRequest(await assertion(), scope)).body;
      expect((await grant('system/*.rs')).scope).toBe(
        'system/DocumentReference.rs system/DiagnosticReport.rs system/ImagingStudy.rs system/Consent.r system/Patient.r system/Organization.r system/Binary.r system/Communication.s system/StructureDefinition.rs',
      );
      expect((await grant('system/DocumentReference.read system/Task.rs')).scope).toBe('system/DocumentReference.read');
      expect((await grant('system/*.write')).scope).toBe('system/DocumentReference.c system/Communication.c');
      expect((await grant('system/DocumentReference.crs system/Communication.c')).scope).toBe('system/DocumentReference.crs system/Communication.c');
      expect(await grant('system/Practitioner.rs')).toEqual({ error: 'invalid_scope', error_description: 'none of the requested scopes is registered for this client' });
    });

    it('on: refuses each interaction the scope lacks with 403, v1 and v2 alike, and allows what it grants', async () => {
      const v2 = await tokenFor(ehr, 'system/DocumentReference.rs system/Patient.r');
      expect((await send(ehr, v2, 'GET', `DocumentReference/${docId('op-note-2024')}`)).status).toBe(200);
      expect((await send(ehr, v2, 'GET', `DocumentReference?patient=${ehr.seeded.patientId}`)).status).toBe(200);
      expect(await send(ehr, v2, 'POST', 'DocumentReference', note(ehr))).toEqual({ status: 403, body: missing('system/DocumentReference.c') });
      expect(await send(ehr, v2, 'GET', 'Patient?identifier=urn:oid:2.16.840.1.113883.4.1|999-00-1234')).toEqual({ status: 403, body: missing('system/Patient.s') });
      expect(await send(ehr, v2, 'GET', `Consent/${ehr.seeded.consentId}`)).toEqual({ status: 403, body: missing('system/Consent.r') });
      const binary = await fetch(`${ehr.baseUrl}/Binary/${seededDocument(ehr.seeded, 'op-note-2024').binaryId}`, { headers: { authorization: `Bearer ${v2}` } });
      expect([binary.status, await binary.json()]).toEqual([403, missing('system/Binary.r')]);

      // Paging: following a `next` link is a search.
      const readOnly = await tokenFor(ehr, 'system/DocumentReference.r');
      const first = await send(ehr, v2, 'GET', `DocumentReference?patient=${ehr.seeded.patientId}&_count=2`);
      const next = (first.body as Bundle).link?.find((l) => l.relation === 'next')?.url;
      expect(next).toBeDefined();
      expect((await send(ehr, v2, 'GET', next!)).status).toBe(200);
      expect(await send(ehr, readOnly, 'GET', next!)).toEqual({ status: 403, body: missing('system/DocumentReference.s') });

      // v1: read = r+s; write = c+u+d; a conditional create needs c and s.
      const v1 = await tokenFor(ehr, 'system/DocumentReference.read');
      expect((await send(ehr, v1, 'GET', `DocumentReference?patient=${ehr.seeded.patientId}`)).status).toBe(200);
      expect(await send(ehr, v1, 'POST', 'DocumentReference', note(ehr))).toEqual({ status: 403, body: missing('system/DocumentReference.c') });
      const createOnly = await tokenFor(ehr, 'system/DocumentReference.c');
      expect(await send(ehr, createOnly, 'POST', 'DocumentReference', note(ehr), { 'if-none-exist': 'identifier=urn:test|scoped' })).toEqual({ status: 403, body: missing('system/DocumentReference.s') });
      expect((await send(ehr, createOnly, 'POST', 'DocumentReference', note(ehr))).status).toBe(201);
      const wide = await tokenFor(ehr, 'system/*.write system/*.read', WIDE_CLIENT);
      const created = await send(ehr, wide, 'POST', 'DocumentReference', note(ehr), { 'if-none-exist': 'identifier=urn:test|scoped' });
      expect(created.status).toBe(201);
      expect(await send(ehr, v2, 'PUT', `DocumentReference/${created.body.id}`, { ...created.body, status: 'superseded' })).toEqual({ status: 403, body: missing('system/DocumentReference.u') });
      expect(await send(ehr, v2, 'DELETE', `DocumentReference/${created.body.id}`)).toEqual({ status: 403, body: missing('system/DocumentReference.d') });
      expect((await send(ehr, wide, 'PUT', `DocumentReference/${created.body.id}`, { ...created.body, status: 'superseded' })).status).toBe(200);

      // A transaction is judged entry by entry.
      const tx = { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: note(ehr), request: { method: 'POST', url: 'DocumentReference' } }, { resource: { resourceType: 'Communication', status: 'completed' }, request: { method: 'POST', url: 'Communication' } }] };
      const noCommunication = await tokenFor(ehr, 'system/DocumentReference.crs');
      expect(await send(ehr, noCommunication, 'POST', '', tx)).toEqual({ status: 403, body: missing('system/Communication.c') });
      expect((await send(ehr, token, 'POST', '', tx)).status).toBe(200);

      // Discovery stays public.
      expect((await fetch(`${ehr.baseUrl}/metadata`)).status).toBe(200);
      expect((await fetch(`${ehr.baseUrl}/.well-known/smart-configuration`)).status).toBe(200);
    });

    it('off: a token grants what it asks and allows every interaction', async () => {
      const off = await startSandboxEhr({ strict: { enforceScopes: false }, seed: { largeBytes: 10_000 } });
      try {
        const { body } = await tokenRequest(await assertion({}, off), 'system/Patient.r', off);
        expect(body.scope).toBe('system/Patient.r');
        const bearer = body.access_token as string;
        expect((await send(off, bearer, 'POST', 'DocumentReference', note(off))).status).toBe(201);
        expect((await send(off, bearer, 'GET', `Consent/${off.seeded.consentId}`)).status).toBe(200);
        expect((await tokenRequest(await assertion({}, off), 'system/Practitioner.rs', off)).body.scope).toBe('system/Practitioner.rs');
      } finally {
        await off.stop();
      }
    });
  });

  describe('checkReferences', () => {
    it('on: refuses a write referencing what this server does not hold, with the element named', async () => {
      const bearer = await tokenFor(strictEhr, 'system/DocumentReference.cruds system/StructureDefinition.r', WIDE_CLIENT);
      const s = strictEhr.seeded;
      expect(await send(strictEhr, bearer, 'POST', 'DocumentReference', note(strictEhr, { author: [{ reference: 'Organization/lakeside' }] }))).toEqual({ status: 400, body: invalidReference('DocumentReference.author[0]') });
      expect(await send(strictEhr, bearer, 'POST', 'DocumentReference', note(strictEhr, { subject: { reference: 'https://other-ehr.example/fhir/R4/Patient/1' } }))).toEqual({ status: 400, body: invalidReference('DocumentReference.subject') });
      expect(await send(strictEhr, bearer, 'POST', 'DocumentReference', note(strictEhr, { context: { related: [{ reference: `Patient/${s.patientId}` }, { reference: 'Encounter/nowhere' }] } }))).toEqual({ status: 400, body: invalidReference('DocumentReference.context.related[1]') });
      const fine = note(strictEhr, {
        author: [
          { reference: `${strictEhr.baseUrl}/Practitioner/${s.practitionerId}` },
          { identifier: { system: 'https://registry.example.org/organizations', value: 'ORG-2001' }, display: 'Lakeside Clinic (example)' },
          { reference: '#author' },
        ],
        contained: [{ resourceType: 'Organization', id: 'author', name: 'Lakeside Clinic (example)' }],
        custodian: { reference: `Organization/${s.organizations.lakeside}` },
      });
      const created = await send(strictEhr, bearer, 'POST', 'DocumentReference', fine);
      expect(created.status).toBe(201);
      expect(await send(strictEhr, bearer, 'PUT', `DocumentReference/${created.body.id}`, { ...created.body, custodian: { reference: 'Organization/st-olaf' } })).toEqual({ status: 400, body: invalidReference('DocumentReference.custodian') });

      const tx = (ref: string) => ({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:6b1f2a8e-0c1d-4f7e-9a55-0d3c2b1a0e01', resource: note(strictEhr), request: { method: 'POST', url: 'DocumentReference' } },
          { resource: note(strictEhr, { relatesTo: [{ code: 'appends', target: { reference: ref } }] }), request: { method: 'POST', url: 'DocumentReference' } },
        ],
      });
      expect((await send(strictEhr, bearer, 'POST', '', tx('urn:uuid:6b1f2a8e-0c1d-4f7e-9a55-0d3c2b1a0e01'))).status).toBe(200);
      expect(await send(strictEhr, bearer, 'POST', '', tx('urn:uuid:00000000-0000-4000-8000-000000000000'))).toEqual({ status: 400, body: invalidReference('DocumentReference.relatesTo[0].target') });
    });

    it('off: stores references to anything', async () => {
      const bearer = await tokenFor(lenientEhr, 'system/*.cruds', WIDE_CLIENT);
      expect((await send(lenientEhr, bearer, 'POST', 'DocumentReference', note(lenientEhr, { author: [{ reference: 'Organization/nowhere' }] }))).status).toBe(201);
      // On by default: the same write to a default sandbox is refused.
      expect((await send(ehr, wideToken, 'POST', 'DocumentReference', note(ehr, { author: [{ reference: 'Organization/nowhere' }] }))).status).toBe(400);
    });
  });

  describe('profileNeedsScope', () => {
    const profiled = (on: SandboxEhr) => note(on, { meta: { profile: ['https://second-opinion.example.org/fhir/StructureDefinition/consult-note'] } });

    it('on: a write listing meta.profile needs StructureDefinition read; unknown profiles are otherwise accepted', async () => {
      const without = await tokenFor(strictEhr, 'system/DocumentReference.crs');
      expect(await send(strictEhr, without, 'POST', 'DocumentReference', profiled(strictEhr))).toEqual({
        status: 403,
        body: forbidden('Forbidden: resolving meta.profile https://second-opinion.example.org/fhir/StructureDefinition/consult-note needs system/StructureDefinition.r'),
      });
      expect((await send(strictEhr, without, 'POST', 'DocumentReference', note(strictEhr))).status).toBe(201);
      const withSd = await tokenFor(strictEhr, 'system/DocumentReference.crs system/StructureDefinition.rs');
      expect((await send(strictEhr, withSd, 'POST', 'DocumentReference', profiled(strictEhr))).status).toBe(201);
    });

    it('off: meta.profile needs no extra scope (on by default: a default sandbox refuses it)', async () => {
      const lenient = await tokenFor(lenientEhr, 'system/DocumentReference.crs');
      expect((await send(lenientEhr, lenient, 'POST', 'DocumentReference', profiled(lenientEhr))).status).toBe(201);
      const bearer = await tokenFor(ehr, 'system/DocumentReference.crs');
      expect((await send(ehr, bearer, 'POST', 'DocumentReference', profiled(ehr))).status).toBe(403);
    });
  });

  describe('signedLinks', () => {
    it('on: links expire, a tampered or expired signature is 403, and a bearer alongside the signature is 400', async () => {
      const photo = seededDocument(ehr.seeded, 'preop-photo-2024');
      const read = async (): Promise<string> => (await getJson<DocumentReference>(`DocumentReference/${photo.id}`)).content[0]!.attachment.url!;
      const link = await read();
      const expires = Number(new URL(link).searchParams.get('expires'));
      expect(expires * 1000).toBeGreaterThan(Date.now());
      expect((await fetch(link)).status).toBe(200);

      const withBearer = await fetch(link, { headers: { authorization: `Bearer ${token}` } });
      expect([withBearer.status, await withBearer.text()]).toEqual([
        400,
        s3Error('InvalidArgument', 'Only one auth mechanism allowed; only the signature query parameters or the Authorization header should be specified'),
      ]);
      const expired = await fetch(ehr.signedUrl(photo.binaryId!, -1));
      expect([expired.status, await expired.text()]).toEqual([403, s3Error('AccessDenied', 'Request has expired')]);
      const extended = link.replace(/expires=\d+/, `expires=${expires + 86_400}`);
      const tampered = await fetch(extended);
      expect([tampered.status, await tampered.text()]).toEqual([403, SIGNATURE_MISMATCH]);
      const unsigned = await fetch(link.split('?')[0]!);
      expect([unsigned.status, await unsigned.text()]).toEqual([403, SIGNATURE_MISMATCH]);
      expect(ehr.requests.filter((r) => r.origin === 'storage').slice(-5).map((r) => [r.authorization, r.status])).toEqual([[false, 200], [true, 400], [false, 403], [false, 403], [false, 403]]);
    });

    it('off: links never expire and an Authorization header is ignored', async () => {
      const photo = seededDocument(lenientEhr.seeded, 'preop-photo-2024');
      const bearer = await tokenFor(lenientEhr, 'system/*.rs');
      const link = ((await send(lenientEhr, bearer, 'GET', `DocumentReference/${photo.id}`)).body as DocumentReference).content[0]!.attachment.url!;
      expect(link).toMatch(/\?sig=[\w-]+$/);
      expect((await fetch(link, { headers: { authorization: `Bearer ${bearer}` } })).status).toBe(200);
      expect((await fetch(lenientEhr.signedUrl(photo.binaryId!, -1))).status).toBe(200);
    });
  });
});
