/**
 * The sandbox EHR over real HTTP: SMART token endpoint, FHIR read/search/paging, Binary bytes
 * and their declared size/hash, the storage origin, auth refusals, conditional create and
 * every fault kind of the fault switch.
 */
import { createHash } from 'node:crypto';
import type { Bundle, DocumentReference, Patient } from '@medplum/fhirtypes';
import type { JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SERVICE_OUTBOUND_CLIENT_ID } from './support/sandbox-ehr/clients.ts';
import { makePatient } from './support/sandbox-ehr/seed-resources.ts';
import { startSandboxEhr, type SandboxEhr } from './support/sandbox-ehr/server.ts';
import { CLIENT_ASSERTION_TYPE, loadExamplePrivateJwk, signClientAssertion } from './support/tokens.ts';

let ehr: SandboxEhr;
let privateJwk: JWK;
let token: string;

async function tokenRequest(assertion: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(ehr.tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion, scope: 'system/*.rs' }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const assertion = (extra: Partial<Parameters<typeof signClientAssertion>[0]> = {}): Promise<string> =>
  signClientAssertion({ clientId: SERVICE_OUTBOUND_CLIENT_ID, privateJwk, tokenUrl: ehr.tokenUrl, ...extra });

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

beforeAll(async () => {
  privateJwk = await loadExamplePrivateJwk('service-outbound');
  ehr = await startSandboxEhr({ port: 0 });
  const { status, body } = await tokenRequest(await assertion());
  expect(status).toBe(200);
  expect(body).toEqual({ access_token: expect.any(String), token_type: 'bearer', expires_in: 300, scope: 'system/*.rs' });
  token = body.access_token as string;
  console.log(`sandbox start-up ${ehr.startupMs.toFixed(0)} ms; ${ehr.seeded.documents.length} documents, ${[...ehr.blobs.values()].reduce((n, b) => n + b.bytes.length, 0)} bytes of attachments`);
});
afterAll(() => ehr?.stop());
afterEach(() => ehr.faults.clear());

describe('FHIR API', () => {
  it('reads the seeded patient', async () => {
    const { meta, ...patient } = await getJson<Patient>('Patient/pat-1');
    expect(patient).toEqual(makePatient());
    expect(meta).toEqual({ versionId: expect.any(String), lastUpdated: expect.any(String) });
  });

  it('searches DocumentReference by bare patient id and LOINC type', async () => {
    const bundle = await getJson<Bundle<DocumentReference>>('DocumentReference?patient=pat-1&type=http://loinc.org|11504-8');
    expect(bundle.total).toBe(1);
    expect(bundle.entry?.map((e) => e.resource?.id)).toEqual(['op-note-2024']);
    expect(bundle.entry?.[0]?.resource?.type?.coding?.[0]).toEqual({ system: 'http://loinc.org', code: '11504-8', display: 'Surgical operation note' });
  });

  it('pages a search with _count and next links until every document is found', async () => {
    const pages: string[][] = [];
    let next: string | undefined = 'DocumentReference?patient=Patient/pat-1&_count=3';
    while (next) {
      const bundle: Bundle<DocumentReference> = await getJson<Bundle<DocumentReference>>(next);
      expect(bundle.total).toBe(9);
      pages.push(bundle.entry?.map((e) => e.resource?.id ?? '') ?? []);
      next = bundle.link?.find((l) => l.relation === 'next')?.url;
    }
    expect(pages).toEqual([
      ['op-note-2024', 'pathology-2024', 'imaging-2024'],
      ['preop-photo-2024', 'discharge-2024', 'progress-2024'],
      ['hp-2024', 'referral-2024', 'first-opinion-note'],
    ]);
    expect(pages.flat().sort()).toEqual(ehr.seeded.documents.map((d) => d.id).sort());
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
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' };
    const org = await getJson<{ resourceType: 'Organization'; id: string; name: string; meta: { versionId: string } }>('Organization/harbor-clinic');
    const put = (version: string): Promise<Response> =>
      fetch(`${ehr.baseUrl}/Organization/harbor-clinic`, { method: 'PUT', headers: { ...headers, 'if-match': `W/"${version}"` }, body: JSON.stringify({ ...org, name: 'Harbor Clinic (renamed)' }) });
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
    expect(binaries.find((d) => d.id === 'imaging-2024')!.size).toBeGreaterThan(5 * 1024 * 1024);
  });

  it('returns the Binary resource for Accept: application/fhir+json, and inline data as declared', async () => {
    const binary = await getJson<{ resourceType: string; contentType: string; data: string }>('Binary/bin-op-note-2024');
    const declared = ehr.seeded.documents.find((d) => d.id === 'op-note-2024')!;
    expect(binary).toMatchObject({ resourceType: 'Binary', id: 'bin-op-note-2024', contentType: 'application/pdf' });
    expect(sha1(Buffer.from(binary.data, 'base64'))).toBe(declared.sha1Base64);
    const inline = (await getJson<DocumentReference>('DocumentReference/discharge-2024')).content[0]!.attachment;
    const bytes = Buffer.from(inline.data!, 'base64');
    expect([bytes.length, sha1(bytes), bytes.subarray(0, 5).toString()]).toEqual([inline.size, inline.hash, '%PDF-']);
  });

  it('serves storage links without Authorization, records that, and refuses a bad signature', async () => {
    const { attachment } = (await getJson<DocumentReference>('DocumentReference/preop-photo-2024')).content[0]!;
    expect(attachment.url!.startsWith(`${ehr.storageUrl}/objects/bin-preop-photo-2024?sig=`)).toBe(true);
    const res = await fetch(attachment.url!);
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect([res.status, res.headers.get('content-type'), bytes.length, sha1(bytes)]).toEqual([200, 'image/png', attachment.size, attachment.hash]);
    const recorded = ehr.requests.filter((r) => r.origin === 'storage');
    expect(recorded.at(-1)).toMatchObject({ method: 'GET', path: new URL(attachment.url!).pathname + new URL(attachment.url!).search, authorization: false, status: 200 });
    const bad = await fetch(attachment.url!.replace(/sig=.*/, 'sig=forged'));
    expect([bad.status, await bad.text()]).toEqual([403, '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code></Error>']);
  });
});

describe('auth', () => {
  it('answers 401 without a valid bearer token', async () => {
    for (const headers of [{}, { authorization: 'Bearer not-a-token' }]) {
      const res = await fetch(`${ehr.baseUrl}/Patient/pat-1`, { headers });
      expect([res.status, res.headers.get('www-authenticate'), await res.json()]).toEqual([
        401,
        'Bearer realm="sandbox-ehr", error="invalid_token"',
        { resourceType: 'OperationOutcome', id: 'unauthorized', issue: [{ severity: 'error', code: 'login', details: { text: 'Unauthorized' } }] },
      ]);
    }
    expect(ehr.requests.at(-2)).toMatchObject({ origin: 'ehr', path: '/fhir/R4/Patient/pat-1', authorization: false, status: 401 });
  });

  it('refuses a replayed assertion, a wrong audience and an unknown client', async () => {
    const once = await assertion();
    expect((await tokenRequest(once)).status).toBe(200);
    expect(await tokenRequest(once)).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'client assertion jti already used' } });
    expect(await tokenRequest(await assertion({ tokenUrl: 'https://elsewhere.example/token' }))).toEqual({
      status: 401,
      body: { error: 'invalid_client', error_description: 'client assertion rejected (ERR_JWT_CLAIM_VALIDATION_FAILED)' },
    });
    expect(await tokenRequest(await assertion({ expiresInSeconds: 3600 }))).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'client assertion exp is more than 5 minutes ahead' } });
    expect(await tokenRequest(await assertion({ clientId: 'intruder' }))).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'unknown client' } });
  });
});

describe('fault switch', () => {
  const opNote = (): DocumentReference['content'][number]['attachment'] => {
    const d = ehr.seeded.documents.find((x) => x.id === 'op-note-2024')!;
    return { size: d.size, hash: d.sha1Base64 };
  };

  it('fails N times with the given status, then recovers', async () => {
    const rule = ehr.faults.add({ path: /\/Binary\//, status: 500, times: 2 });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await get('Binary/bin-op-note-2024', { accept: '*/*' })).status);
    expect(statuses).toEqual([500, 500, 200]);
    expect(rule.hits).toBe(2);
  });

  it('delays past a client timeout', async () => {
    ehr.faults.add({ path: '/Patient/pat-1', delayMs: 1_000, times: 1 });
    const started = performance.now();
    await expect(fetch(`${ehr.baseUrl}/Patient/pat-1`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(200) })).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(performance.now() - started).toBeLessThan(900);
  });

  it('resets the connection', async () => {
    ehr.faults.add({ path: '/Patient/pat-1', resetConnection: true, times: 1 });
    await expect(get('Patient/pat-1')).rejects.toThrow('fetch failed');
    expect((await get('Patient/pat-1')).status).toBe(200);
  });

  it('corrupts bytes (same length, wrong hash) and truncates (wrong length)', async () => {
    const declared = opNote();
    ehr.faults.add({ path: '/Binary/bin-op-note-2024', corruptBytes: true, times: 1 });
    const corrupt = await get('Binary/bin-op-note-2024', { accept: '*/*' });
    const corruptBytes = new Uint8Array(await corrupt.arrayBuffer());
    expect([corruptBytes.length, sha1(corruptBytes) === declared.hash]).toEqual([declared.size, false]);

    ehr.faults.add({ path: /bin-op-note-2024/, wrongLength: true, times: 1 });
    const short = await get('Binary/bin-op-note-2024', { accept: '*/*' });
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
      const docs = bulk.seeded.documents.filter((d) => d.id.startsWith('bulk-'));
      expect(docs.map((d) => [d.id, d.loincCode, d.contentType, Math.abs(d.size - 200_000) < 64])).toEqual([
        ['bulk-0', '11506-3', 'application/pdf', true],
        ['bulk-1', '11506-3', 'application/pdf', true],
        ['bulk-2', '11506-3', 'application/pdf', true],
      ]);
      expect(new Set(docs.map((d) => d.sha1Base64)).size).toBe(3);
      const res = await fetch(`${bulk.baseUrl}/${docs[2]!.url}`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      expect([res.status, bytes.length, sha1(bytes)]).toEqual([200, docs[2]!.size, docs[2]!.sha1Base64]);
      const search = (await (await fetch(`${bulk.baseUrl}/DocumentReference?patient=pat-1&_summary=count`)).json()) as Bundle;
      expect(search.total).toBe(12);
      // Same seed, same bytes: hashes are stable between instances.
      expect(bulk.seeded.documents.find((d) => d.id === 'op-note-2024')!.sha1Base64).toBe(ehr.seeded.documents.find((d) => d.id === 'op-note-2024')!.sha1Base64);
    } finally {
      await bulk.stop();
    }
  });
});
