import type { AuditEvent, Communication, DocumentReference, OperationOutcome } from '@medplum/fhirtypes';
import { parseSearchRequest } from '@medplum/core';
import { sql } from 'drizzle-orm';
import type { JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EhrChecklist } from '../src/outbound/check-ehr.ts';
import { CONNECTION_CHECK_IDENTIFIER } from '../src/outbound/check-ehr-data.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { generateClientKey, getAccessToken } from './support/tokens.ts';

/**
 * The connection check through `GET /admin/participants/{id}/check`, against the
 * sandbox EHR over real HTTP, on the store the suite runs on (PGlite, or PostgreSQL with
 * DATABASE_URL): every line passes, the write creates one Communication however often it runs,
 * the reads are audited, and only an admin may run it.
 */
const ADMIN_CLIENT = 'network-admin-console';

describe('the connection check against the sandbox EHR (admin route)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let adminKey: JWK;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0 });
    const key = await generateClientKey('ES384', 'admin-1');
    adminKey = key.privateJwk;
    const networkFile = await writeSandboxNetwork(ehr, {
      timeoutMs: 10_000,
      add: () => [
        { id: 'network-admin', name: 'Network administrators', roles: ['admin'], organization: { reference: 'Organization/network-admin' }, clients: [{ clientId: ADMIN_CLIENT, jwks: { keys: [key.publicJwk] }, scope: 'system/*.rs' }] },
      ],
    });
    service = await startTestService({ NETWORK_FILE: networkFile });
    tokens.admin = await getAccessToken(service.url, ADMIN_CLIENT, { privateJwk: adminKey });
    tokens.referrer = await getAccessToken(service.url, clientIdOf('st-olaf'));
    tokens.auditor = await getAccessToken(service.url, clientIdOf('audit-office'));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });
  afterEach(() => ehr.faults.clear());

  async function get<T>(path: string, who?: string): Promise<{ status: number; body: T }> {
    const res = await fetch(`${service.url}${path}`, { headers: who ? { authorization: `Bearer ${tokens[who]}` } : {} });
    return { status: res.status, body: (await res.json()) as T };
  }

  const patient = () => `Patient/${ehr.seeded.patientId}`;
  const communicationsOnEhr = async () =>
    (await ehr.repo.searchResources(parseSearchRequest(`Communication?identifier=${encodeURIComponent(`${CONNECTION_CHECK_IDENTIFIER.system}|${CONNECTION_CHECK_IDENTIFIER.value}`)}`))) as Communication[];

  it('everything passes, --write included; run twice, the EHR holds one Communication; the reads are audited', async () => {
    const query = `?patient=${patient()}&consent=Consent/${ehr.seeded.consentId}&write=true`;
    const first = await get<EhrChecklist>(`/admin/participants/st-olaf/check${query}`, 'admin');
    expect(first.status).toBe(200);
    expect(first.body.checks.filter((c) => c.status !== 'ok')).toEqual([]);
    expect(first.body).toMatchObject({ participantId: 'st-olaf', baseUrl: ehr.baseUrl, ok: true });
    const documents = (await ehr.repo.searchResources(parseSearchRequest(`DocumentReference?patient=${patient()}`))) as DocumentReference[];
    expect(first.body.checks.map((c) => c.id)).toEqual(['capability-statement', 'smart-configuration', 'token', 'scopes', 'document-search', 'attachment', 'consent', 'write']);
    expect(first.body.checks.find((c) => c.id === 'document-search')?.observed).toBe(`${documents.length} DocumentReferences for ${patient()}`);
    expect(first.body.checks.find((c) => c.id === 'consent')?.observed).toMatch(new RegExp(`^Consent/${ehr.seeded.consentId} read: status active`));

    const [communication] = await communicationsOnEhr();
    expect(communication).toMatchObject({ status: 'completed', payload: [{ contentString: 'Connection check from the second-opinion service' }], category: [{ coding: [{ code: 'notification' }] }] });
    expect(communication?.subject).toBeUndefined();
    expect(first.body.checks.find((c) => c.id === 'write')?.observed).toContain(`Communication/${communication?.id} `);

    const second = await get<EhrChecklist>(`/admin/participants/st-olaf/check${query}`, 'admin');
    expect(second.body.ok).toBe(true);
    expect(second.body.checks.find((c) => c.id === 'write')?.observed).toContain(`Communication/${communication?.id} `);
    expect(await communicationsOnEhr()).toHaveLength(1);

    // No token, no PHI: the seeded patient's name is nowhere in the checklist.
    const name = ((await ehr.repo.readResource('Patient', ehr.seeded.patientId)) as { name?: { family?: string }[] }).name?.[0]?.family;
    expect(name).toBeTruthy();
    expect(JSON.stringify(first.body)).not.toContain(name);
    for (const token of ehr.tokens.issued.keys()) expect(JSON.stringify(first.body)).not.toContain(token);

    const rows = await service.database.db.execute(sql`SELECT content FROM resource WHERE resource_type = 'AuditEvent' ORDER BY last_updated, id`);
    const events = (rows as unknown as { rows: { content: AuditEvent }[] }).rows.map((r) => r.content).filter((e) => e.outcomeDesc?.startsWith('Connection check'));
    // Per run: the document search, the attachment read, the Consent read.
    expect(events.map((e) => [e.subtype?.[0]?.code, e.outcome])).toEqual([
      ['search-type', '0'],
      ['read', '0'],
      ['read', '0'],
      ['search-type', '0'],
      ['read', '0'],
      ['read', '0'],
    ]);
    expect(events[0]?.agent?.[0]?.who?.identifier?.value).toBe(ADMIN_CLIENT);
    expect(events[0]?.entity?.[0]?.what?.reference).toBe(`${ehr.baseUrl}/${patient()}`);
  });

  it('an EHR refusal is a failed line with the EHR\'s answer and what to change, in a 200 checklist', async () => {
    ehr.faults.add({ path: '/fhir/R4/DocumentReference?', method: 'GET', status: 403 });
    const res = await get<EhrChecklist>(`/admin/participants/st-olaf/check?patient=${patient()}`, 'admin');
    expect(res.status).toBe(200);
    expect(res.body.ok).toBe(false);
    expect(res.body.checks.find((c) => c.id === 'document-search')).toEqual({
      id: 'document-search',
      title: "Search a patient's DocumentReferences",
      status: 'failed',
      observed: `GET [base]/DocumentReference?patient=${patient()}: HTTP 403 (processing: Injected fault: HTTP 403)`,
      fix: 'The EHR refused to let client second-opinion-service search DocumentReferences: ask its administrators to grant system/DocumentReference.rs (see line 4), and include it in fhir.scope if the network file sets one.',
    });
  });

  it('only an admin may run it: other roles 403, no token 401', async () => {
    for (const who of ['referrer', 'auditor']) {
      const res = await get<OperationOutcome>('/admin/participants/st-olaf/check', who);
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'forbidden' }] });
    }
    expect((await get<OperationOutcome>('/admin/participants/st-olaf/check')).status).toBe(401);
  });

  it('404 for an unknown participant or one without an EHR; 400 naming a bad parameter', async () => {
    const unknown = await get<OperationOutcome>('/admin/participants/nobody/check', 'admin');
    expect(unknown).toMatchObject({ status: 404, body: { resourceType: 'OperationOutcome', issue: [{ code: 'not-found' }] } });
    const noEhr = await get<OperationOutcome>('/admin/participants/lakeside-consults/check', 'admin');
    expect(noEhr).toMatchObject({ status: 404, body: { issue: [{ code: 'not-found', details: { text: 'This participant has no fhir block in the network file: there is no EHR to check' } }] } });
    const badPatient = await get<OperationOutcome>('/admin/participants/st-olaf/check?patient=pat%201', 'admin');
    expect(badPatient).toMatchObject({ status: 400, body: { issue: [{ code: 'invalid', expression: ['patient'] }] } });
    const badWrite = await get<OperationOutcome>('/admin/participants/st-olaf/check?write=yes', 'admin');
    expect(badWrite).toMatchObject({ status: 400, body: { issue: [{ code: 'invalid', expression: ['write'], details: { text: 'write must be true or false' } }] } });
    const unknownParameter = await get<OperationOutcome>('/admin/participants/st-olaf/check?patients=x', 'admin');
    expect(unknownParameter).toMatchObject({ status: 400, body: { issue: [{ code: 'not-supported', expression: ['patients'] }] } });
  });
});
