import { createHash } from 'node:crypto';
import path from 'node:path';
import { OperationOutcomeError } from '@medplum/core';
import type { Bundle, CapabilityStatement, DocumentReference } from '@medplum/fhirtypes';
import { http, HttpResponse } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecordInput } from '../audit/audit-log.ts';
import { parseNetwork } from '../network/network.ts';
import { checkEhrConnection, type CheckEhrInput, type CheckLine, type EhrChecklist } from './check-ehr.ts';

const ORIGIN = 'https://ehr.test';
const BASE = `${ORIGIN}/fhir/R4`;
const TOKEN_URL = `${ORIGIN}/oauth2/token`;
const ROOT = path.join(import.meta.dirname, '..', '..');
const DEFAULT_SCOPE = 'system/DocumentReference.crs system/DiagnosticReport.rs system/ImagingStudy.rs system/Consent.r system/Patient.r system/Organization.r system/Binary.r system/Communication.cs';

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledFrame: 'error' }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const network = parseNetwork(
  {
    participants: [
      {
        id: 'st-olaf',
        name: 'St Olaf',
        roles: ['referrer'],
        organization: { reference: 'Organization/st-olaf' },
        clients: [],
        fhir: { baseUrl: BASE, tokenUrl: TOKEN_URL, clientId: 'second-opinion-service', privateKeyFile: 'examples/keys/service-outbound.private.jwk.json', timeoutMs: 2000 },
      },
      { id: 'lakeside', name: 'Lakeside', roles: ['consultant'], organization: { reference: 'Organization/lakeside', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-2001' }] }, clients: [] },
    ],
  },
  'inline',
);

const capability = (fhirVersion = '4.0.1', types = ['DocumentReference', 'DiagnosticReport', 'ImagingStudy', 'Consent', 'Patient', 'Organization', 'Binary', 'Communication']): CapabilityStatement => ({
  resourceType: 'CapabilityStatement',
  status: 'active',
  date: '2024-01-01',
  kind: 'instance',
  fhirVersion: fhirVersion as CapabilityStatement['fhirVersion'],
  format: ['json'],
  rest: [{ mode: 'server', resource: types.map((type) => ({ type, interaction: [{ code: 'read' }, { code: 'search-type' }, { code: 'create' }] })) as NonNullable<CapabilityStatement['rest']>[number]['resource'] }],
});

const BYTES = Buffer.from('%PDF-1.4 synthetic operative note');
const documents: DocumentReference[] = [
  { resourceType: 'DocumentReference', id: 'doc-1', status: 'current', subject: { reference: 'Patient/p-42' }, content: [{ attachment: { contentType: 'application/pdf', url: `${BASE}/Binary/bin-1`, size: BYTES.length, hash: '' } }] },
];

/** A healthy EHR; tests replace one handler each with `server.use`. */
function healthyEhr(options: { grantedScope?: string; hash?: string } = {}) {
  const doc = structuredClone(documents[0]!);
  doc.content[0]!.attachment.hash = options.hash ?? sha1(BYTES);
  return [
    http.get(`${BASE}/metadata`, () => HttpResponse.json(capability())),
    http.get(`${BASE}/.well-known/smart-configuration`, () =>
      HttpResponse.json({ token_endpoint: TOKEN_URL, grant_types_supported: ['client_credentials'], token_endpoint_auth_methods_supported: ['private_key_jwt'], token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'] }),
    ),
    http.post(TOKEN_URL, () => HttpResponse.json({ access_token: 'secret-token', token_type: 'bearer', expires_in: 300, scope: options.grantedScope ?? DEFAULT_SCOPE })),
    http.get(`${BASE}/DocumentReference`, () => HttpResponse.json<Bundle>({ resourceType: 'Bundle', type: 'searchset', total: 1, entry: [{ resource: doc, search: { mode: 'match' } }] })),
    http.get(`${BASE}/Binary/bin-1`, () => new HttpResponse(BYTES, { headers: { 'content-type': 'application/pdf' } })),
    http.get(`${BASE}/Consent`, () => HttpResponse.json<Bundle>({ resourceType: 'Bundle', type: 'searchset', total: 2 })),
  ];
}

/** The healthy EHR with `overrides` in front (msw uses the handler added last first). */
function useEhr(options: Parameters<typeof healthyEhr>[0], ...overrides: Parameters<typeof server.use>): void {
  server.use(...healthyEhr(options));
  if (overrides.length) server.use(...overrides);
}

function sha1(bytes: Buffer): string {
  return createHash('sha1').update(bytes).digest('base64');
}

async function check(input: Partial<CheckEhrInput> = {}): Promise<{ list: EhrChecklist; audits: AuditRecordInput[]; line: (id: CheckLine['id']) => CheckLine }> {
  const audits: AuditRecordInput[] = [];
  const list = await checkEhrConnection({ participantId: 'audit-office', clientId: 'admin-console' }, { participantId: 'st-olaf', ...input }, {
    network,
    keyBaseDir: ROOT,
    audit: { record: async (i) => (audits.push(i), { resourceType: 'AuditEvent' } as never) },
    maxAttachmentBytes: 1_000_000,
    door: 'unit test',
  });
  return { list, audits, line: (id) => list.checks.find((c) => c.id === id) as CheckLine };
}

describe('checkEhrConnection', () => {
  it('a healthy EHR: every line ok in order, counts and sizes only, the reads audited', async () => {
    server.use(...healthyEhr());
    const { list, audits } = await check({ patient: 'Patient/p-42' });
    expect(list.ok).toBe(true);
    expect(list.checks.map((c) => [c.id, c.status])).toEqual([
      ['capability-statement', 'ok'],
      ['smart-configuration', 'ok'],
      ['token', 'ok'],
      ['scopes', 'ok'],
      ['document-search', 'ok'],
      ['attachment', 'ok'],
      ['consent', 'ok'],
      ['write', 'skipped'],
    ]);
    expect(list.checks.map((c) => c.observed)).toEqual([
      'fhirVersion 4.0.1; lists every interaction the service uses',
      `token_endpoint ${TOKEN_URL} matches fhir.tokenUrl; grant types client_credentials; auth methods private_key_jwt; algorithms RS384, ES384`,
      expect.stringMatching(/^token issued to client second-opinion-service \(key ES384, kid \S+\), expires in 300 s$/),
      `granted: ${DEFAULT_SCOPE}`,
      '1 DocumentReference for Patient/p-42',
      `attachment of DocumentReference/doc-1 from the EHR's origin (bearer sent): ${BYTES.length} bytes (declared ${BYTES.length}); SHA-1 matches the declared hash`,
      '2 Consents for Patient/p-42 (give one with --consent, ?consent=, to read it)',
      'not tried: add --write (?write=true on the admin route) to create one Communication on the EHR, once however often it runs',
    ]);
    expect(JSON.stringify(list)).not.toContain('secret-token');
    expect(audits.map((a) => [a.action, a.outcome, a.patientReference, a.entities.map((e) => e.reference), a.query])).toEqual([
      ['search', 'success', `${BASE}/Patient/p-42`, [`${BASE}/DocumentReference/doc-1`], 'patient=Patient/p-42'],
      ['read', 'success', `${BASE}/Patient/p-42`, [`${BASE}/DocumentReference/doc-1`], undefined],
      ['search', 'success', `${BASE}/Patient/p-42`, [], 'patient=Patient/p-42'],
    ]);
    expect(audits[0]?.agent).toEqual({ participantId: 'audit-office', clientId: 'admin-console' });
  });

  it('without a patient, the data lines are skipped and say how to give one; nothing is audited', async () => {
    server.use(...healthyEhr());
    const { list, audits, line } = await check();
    expect(list.ok).toBe(true);
    expect(line('document-search')).toEqual({ id: 'document-search', title: "Search a patient's DocumentReferences", status: 'skipped', observed: 'not tried: give a patient (Patient/<id> on the EHR): --patient with npm run check-ehr, ?patient= on the admin route' });
    expect(line('attachment')).toMatchObject({ status: 'skipped', observed: 'no document to take one from (line 5)' });
    expect(line('consent')).toMatchObject({ status: 'skipped' });
    expect(audits).toEqual([]);
  });

  it('an unreachable server: line 1 fails naming fhir.baseUrl, the token fails, the data lines are skipped', async () => {
    server.use(http.all(`${ORIGIN}/*`, () => HttpResponse.error()));
    const { list, line } = await check({ patient: 'Patient/p-42', write: true });
    expect(list.ok).toBe(false);
    expect(line('capability-statement')).toMatchObject({ status: 'failed', observed: `${BASE}/metadata: connection failed` });
    expect(line('capability-statement').fix).toContain('Check fhir.baseUrl in the network file');
    expect(line('smart-configuration')).toMatchObject({ status: 'warning', observed: "none (connection failed): fhir.tokenUrl cannot be compared with the EHR's own" });
    expect(line('token')).toMatchObject({ status: 'failed', observed: 'token request failed: connection failed', fix: `Check that this host can reach fhir.tokenUrl ${TOKEN_URL}.` });
    expect(line('scopes')).toMatchObject({ status: 'skipped', observed: 'no token to compare (line 3)' });
    for (const id of ['document-search', 'attachment', 'consent', 'write'] as const) {
      expect(line(id)).toMatchObject({ status: 'skipped', observed: 'not tried: the FHIR server did not answer (line 1)' });
    }
  });

  it('a server that is not FHIR R4 fails line 1 with the version it speaks', async () => {
    useEhr({}, http.get(`${BASE}/metadata`, () => HttpResponse.json(capability('3.0.2'))));
    const { list, line } = await check();
    expect(list.ok).toBe(false);
    expect(line('capability-statement')).toEqual({
      id: 'capability-statement',
      title: 'CapabilityStatement (GET [base]/metadata)',
      status: 'failed',
      observed: 'fhirVersion 3.0.2',
      fix: "The service speaks FHIR R4 (4.0.x): point fhir.baseUrl at the EHR's R4 endpoint.",
    });
  });

  it('a CapabilityStatement that does not list an interaction warns, naming it', async () => {
    useEhr({}, http.get(`${BASE}/metadata`, () => HttpResponse.json(capability('4.0.1', ['DocumentReference', 'DiagnosticReport', 'ImagingStudy', 'Consent', 'Patient', 'Organization', 'Binary']))));
    const { list, line } = await check();
    expect(list.ok).toBe(true);
    expect(line('capability-statement')).toMatchObject({ status: 'warning', observed: 'fhirVersion 4.0.1; does not list: Communication create, Communication search-type' });
  });

  it('a SMART token endpoint other than fhir.tokenUrl fails line 2 and says which URL to set', async () => {
    useEhr({}, http.get(`${BASE}/.well-known/smart-configuration`, () => HttpResponse.json({ token_endpoint: `${ORIGIN}/auth/token`, token_endpoint_auth_signing_alg_values_supported: ['RS384'] })));
    const { line } = await check();
    expect(line('smart-configuration')).toEqual({
      id: 'smart-configuration',
      title: 'SMART configuration (GET [base]/.well-known/smart-configuration)',
      status: 'failed',
      observed: `token_endpoint ${ORIGIN}/auth/token is not fhir.tokenUrl ${TOKEN_URL}; our key signs ES384; the EHR lists RS384`,
      fix: `Set fhir.tokenUrl to "${ORIGIN}/auth/token": the client assertion's audience must be the EHR's token URL exactly. Use a key for an algorithm the EHR lists (RS384: RSA, ES384: EC P-384) in fhir.privateKeyFile, and register its public half at the EHR.`,
    });
  });

  it('a refused token shows the OAuth error and error_description (printable, capped) and what to change', async () => {
    const description = `Invalid client assertion audience\u0007\n${'x'.repeat(400)}`;
    useEhr({}, http.post(TOKEN_URL, () => HttpResponse.json({ error: 'invalid_client', error_description: description }, { status: 401 })));
    const { list, line } = await check({ patient: 'Patient/p-42' });
    expect(list.ok).toBe(false);
    const token = line('token');
    expect(token.status).toBe('failed');
    expect(token.observed).toBe(`token request failed: HTTP 401: invalid_client "Invalid client assertion audience ${'x'.repeat(165)}…"`);
    expect(token.fix).toMatch(/^The EHR does not accept our client assertion: check that client second-opinion-service is registered there with our JWK Set URL \(\{PUBLIC_URL\}\/\.well-known\/client-jwks\.json, which publishes kid \S+, ES384\), and that fhir.tokenUrl is exactly the EHR's token URL \(it is the assertion's audience\)\.$/);
    expect(line('document-search')).toMatchObject({ status: 'skipped', observed: 'not tried: no access token (line 3)' });
  });

  it('a token granting less than the service needs fails line 4, listing what is missing', async () => {
    server.use(...healthyEhr({ grantedScope: 'system/DocumentReference.rs system/Consent.r' }));
    const { list, line } = await check();
    expect(list.ok).toBe(false);
    const missing = 'system/DocumentReference.c system/DiagnosticReport.r system/DiagnosticReport.s system/ImagingStudy.r system/ImagingStudy.s system/Patient.r system/Organization.r system/Binary.r system/Communication.c system/Communication.s';
    expect(line('scopes')).toEqual({
      id: 'scopes',
      title: 'Scopes granted vs needed',
      status: 'failed',
      observed: `granted: system/DocumentReference.rs system/Consent.r; missing: ${missing}`,
      fix: `Ask the EHR's administrators to grant ${missing} to client second-opinion-service.`,
    });
  });

  it('a 403 on the document search fails line 5 with the EHR\'s OperationOutcome and the scope to grant; the refusal is audited', async () => {
    useEhr(
      {},
      http.get(`${BASE}/DocumentReference`, () => HttpResponse.json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'forbidden', details: { text: 'Forbidden' } }] }, { status: 403, headers: { 'content-type': 'application/fhir+json' } })),
    );
    const { list, audits, line } = await check({ patient: 'Patient/p-42' });
    expect(list.ok).toBe(false);
    expect(line('document-search')).toEqual({
      id: 'document-search',
      title: "Search a patient's DocumentReferences",
      status: 'failed',
      observed: 'GET [base]/DocumentReference?patient=Patient/p-42: HTTP 403 (forbidden: Forbidden)',
      fix: 'The EHR refused to let client second-opinion-service search DocumentReferences: ask its administrators to grant system/DocumentReference.rs (see line 4), and include it in fhir.scope if the network file sets one.',
    });
    expect(line('attachment')).toMatchObject({ status: 'skipped', observed: 'no document to take one from (line 5)' });
    expect(audits[0]).toMatchObject({ action: 'search', outcome: 'refused', description: "Connection check of st-olaf's EHR (unit test): the EHR answered 403", query: 'patient=Patient/p-42' });
  });

  it('bytes that do not match the declared hash fail line 6', async () => {
    server.use(...healthyEhr({ hash: sha1(Buffer.from('other bytes')) }));
    const { line } = await check({ patient: 'Patient/p-42' });
    expect(line('attachment')).toMatchObject({ status: 'failed', observed: `attachment of DocumentReference/doc-1 from the EHR's origin (bearer sent): ${BYTES.length} bytes (declared ${BYTES.length}); the SHA-1 does not match the declared hash` });
  });

  it('refuses a malformed patient or consent (400 naming the field) and an unknown participant or one without an EHR (404)', async () => {
    const outcomeOf = async (input: Partial<CheckEhrInput>) => {
      try {
        await check(input);
      } catch (err) {
        return (err as OperationOutcomeError).outcome;
      }
      throw new Error('no error');
    };
    expect(await outcomeOf({ patient: 'p-42' })).toMatchObject({ issue: [{ code: 'invalid', expression: ['patient'], details: { text: 'patient must be Patient/<id> (the id on the EHR)' } }] });
    expect(await outcomeOf({ consent: 'Consent/a b' })).toMatchObject({ issue: [{ code: 'invalid', expression: ['consent'] }] });
    expect(await outcomeOf({ participantId: 'nobody' })).toMatchObject({ issue: [{ code: 'not-found' }] });
    expect(await outcomeOf({ participantId: 'lakeside' })).toMatchObject({ issue: [{ code: 'not-found', details: { text: 'This participant has no fhir block in the network file: there is no EHR to check' } }] });
  });
});
