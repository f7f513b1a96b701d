import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { JWK } from 'jose';
import type { Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { createLogger } from '../src/log/logger.ts';
import { PRIVATE_JWK_MEMBERS } from '../src/network/network-schema.ts';
import { CLIENT_JWKS_PATH } from '../src/outbound/routes.ts';
import { type RunningService, startService } from '../src/service.ts';
import { openTestDatabase } from './support/database.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, serviceClientByJwksUri } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { testConfig } from './support/service.ts';
import { CLIENT_ASSERTION_TYPE, getAccessToken, loadExamplePrivateJwk, signClientAssertion } from './support/tokens.ts';

const KEYS = path.join(import.meta.dirname, '..', 'examples', 'keys');
const CURRENT = path.join(KEYS, 'service-outbound.private.jwk.json');
const NEXT = path.join(KEYS, 'service-outbound-next.private.jwk.json');
const publicHalf = (file: string): JWK => {
  const drop = new Set<string>(['_comment', ...PRIVATE_JWK_MEMBERS]);
  return Object.fromEntries(Object.entries(JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>).filter(([k]) => !drop.has(k))) as JWK;
};
const CURRENT_PUBLIC = publicHalf(CURRENT);
const NEXT_PUBLIC = publicHalf(NEXT);

const DAY_MS = 24 * 3600_000;
const isoIn = (ms: number) => new Date(Date.now() + ms).toISOString();

/**
 * The referring EHR knows the service only by its client JWK Set URL (a sandbox
 * that accepts no other registration, as Medplum and EHR vendors do). The service pulls a record
 * set and posts an opinion back; then its outbound key is rotated the way docs/onboarding-an-ehr.md tells an
 * administrator to, one network-file edit and restart at a time: the next key is published
 * before it signs, signing switches to it (the EHR still accepts), and after its retireAfter
 * the old key is no longer published.
 */
describe('an EHR that knows the service only by its JWK Set URL (flow)', () => {
  let ehr: SandboxEhr;
  let config: Config;
  let networkFile: string;
  let service: RunningService | undefined;
  let serviceUrl = '';
  const tokens: Record<string, string> = {};
  const call = callerFor(() => serviceUrl, tokens);

  /** Writes the network file with these keys for the referrer's EHR (as an administrator edits it). */
  const writeNetwork = (keys: Record<string, unknown>[]) =>
    writeSandboxNetwork(ehr, {
      ...(networkFile ? { dir: path.dirname(networkFile) } : {}),
      edit: (byId) => {
        const fhir = byId('st-olaf').fhir as Record<string, unknown>;
        delete fhir.privateKeyFile;
        fhir.keys = keys;
      },
    });

  /** (Re)starts the service on the same URL, reading the network file again (stop closes its store: a fresh one each time). */
  async function restart(): Promise<void> {
    // Idle keep-alive connections (this test's, the EHR's key set fetches) would hold the drain until their timeout.
    service?.server.closeIdleConnections();
    await service?.stop();
    service = await startService(config, createLogger({ level: 'silent' }), {
      database: await openTestDatabase(),
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 1 })),
      jobPollingIntervalSeconds: 0.5,
    });
    for (const p of ['st-olaf', 'lakeside-consults']) tokens[p] = await getAccessToken(serviceUrl, clientIdOf(p));
  }

  async function clientJwks(): Promise<{ status: number; cacheControl: string | null; body: { keys: JWK[] } }> {
    const res = await fetch(`${serviceUrl}${CLIENT_JWKS_PATH}`);
    return { status: res.status, cacheControl: res.headers.get('cache-control'), body: (await res.json()) as { keys: JWK[] } };
  }

  /** A referral to Lakeside, its record set pulled from the EHR: returns its id and Task id. */
  async function referralWithRecords(): Promise<{ id: string; taskId: string }> {
    const opNote = ehr.seeded.documents.find((d) => d.loincCode === '11504-8');
    const created = await call<{ id: string; tasks: Task[] }>(
      'POST',
      '/second-opinions',
      'st-olaf',
      makeSecondOpinionRequest({
        patient: { reference: `Patient/${ehr.seeded.patientId}`, identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }], display: 'Alex Example' },
        requester: { reference: `Practitioner/${ehr.seeded.practitionerId}`, display: 'Dr Ingrid Nilsen' },
        consultants: ['lakeside-consults'],
        blinded: false,
        firstOpinion: { documents: [] },
        records: { documents: [{ reference: `DocumentReference/${opNote?.id}` }] },
        consent: { reference: `Consent/${ehr.seeded.consentId}` },
      }),
    );
    expect(created.status).toBe(201);
    const id = created.body.id;
    const summary = await until(async () => {
      const s = (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
      return s.recordSet.status === 'records-ready' || s.recordSet.status === 'failed' ? s : undefined;
    }, 'the record set');
    expect(summary.recordSet.status).toBe('records-ready');
    return { id, taskId: created.body.tasks[0]?.id as string };
  }

  /** The kids of the client assertions the EHR accepted since `from` tokens were issued. */
  const acceptedKids = (from: number) => [...ehr.tokens.issued.values()].slice(from).map((t) => ({ clientId: t.clientId, kid: t.kid }));

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 }, strict: { jwksUriOnly: true }, clients: [serviceClientByJwksUri(() => serviceUrl)] });
    networkFile = await writeNetwork([{ file: CURRENT }]);
    config = await testConfig({ NETWORK_FILE: networkFile });
    serviceUrl = config.publicUrl;
    await restart();
  });
  afterAll(async () => {
    service?.server.closeIdleConnections();
    await service?.stop();
    await ehr?.stop();
  });

  it('publishes the public half of its outbound key at the client JWK Set URL, without a token', async () => {
    expect(await clientJwks()).toEqual({ status: 200, cacheControl: 'public, max-age=300', body: { keys: [CURRENT_PUBLIC] } });
    expect(CURRENT_PUBLIC).toEqual({ kty: 'EC', crv: 'P-384', x: expect.any(String), y: expect.any(String), kid: expect.any(String), alg: 'ES384', use: 'sig' });
    // The token-signing set is another set: none of its keys is an outbound key.
    const tokenKeys = (await (await fetch(`${serviceUrl}/.well-known/jwks.json`)).json()) as { keys: JWK[] };
    expect(tokenKeys.keys.map((k) => k.kid)).not.toContain(CURRENT_PUBLIC.kid);
  });

  it('the EHR refuses a key registered by value, and an assertion whose aud is not its token URL exactly', async () => {
    const byValue = await startSandboxEhr({ port: 0, storagePort: 0, strict: { jwksUriOnly: true }, clients: [{ clientId: SERVICE_OUTBOUND_CLIENT_ID, jwks: { keys: [CURRENT_PUBLIC] } }] });
    try {
      const privateJwk = await loadExamplePrivateJwk('service-outbound');
      const tokenRequest = async (url: string, aud: string) => {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await signClientAssertion({ clientId: SERVICE_OUTBOUND_CLIENT_ID, privateJwk, tokenUrl: aud }) }),
        });
        return { status: res.status, body: (await res.json()) as unknown };
      };
      expect(await tokenRequest(byValue.tokenUrl, byValue.tokenUrl)).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'client keys must be registered by JWK Set URL' } });
      const rejected = { status: 401, body: { error: 'invalid_client', error_description: 'Invalid client assertion audience' } };
      expect(await tokenRequest(ehr.tokenUrl, `${ehr.tokenUrl}/`)).toEqual(rejected);
      expect(await tokenRequest(ehr.tokenUrl, ehr.baseUrl)).toEqual(rejected);
      expect((await tokenRequest(ehr.tokenUrl, ehr.tokenUrl)).status).toBe(200);
    } finally {
      await byValue.stop();
    }
  });

  it('pulls a record set and posts the opinion back, the EHR verifying its assertions by the JWK Set URL', async () => {
    const before = ehr.tokens.issued.size;
    const { id, taskId } = await referralWithRecords();
    for (const action of ['accept', 'start']) expect((await call('POST', `/consults/${taskId}/${action}`, 'lakeside-consults')).status).toBe(200);
    expect((await call<Task>('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', EXAMPLE_OPINION)).status).toBe(200);
    const delivery = await until(async () => {
      const d = (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.consultants[0]?.delivery;
      return d?.status === 'delivered' ? d : undefined;
    }, 'the post-back');
    expect(delivery).toMatchObject({ status: 'delivered', attempts: 1, remoteDocument: expect.stringMatching(new RegExp(`^${ehr.baseUrl}/DocumentReference/`)) });
    expect(acceptedKids(before).length).toBeGreaterThan(0);
    expect(new Set(acceptedKids(before).map((t) => JSON.stringify(t)))).toEqual(new Set([JSON.stringify({ clientId: SERVICE_OUTBOUND_CLIENT_ID, kid: CURRENT_PUBLIC.kid })]));
  });

  it('rotation, step 1: the next key is published a day before it signs; the current key still signs', async () => {
    await writeNetwork([{ file: CURRENT }, { file: NEXT, signFrom: isoIn(DAY_MS) }]);
    await restart();
    expect((await clientJwks()).body).toEqual({ keys: [CURRENT_PUBLIC, NEXT_PUBLIC] });
    const before = ehr.tokens.issued.size;
    await referralWithRecords();
    expect(acceptedKids(before)).toEqual([{ clientId: SERVICE_OUTBOUND_CLIENT_ID, kid: CURRENT_PUBLIC.kid }]);
  });

  it('rotation, step 2: the next key signs (the EHR accepts it); the old one stays published until its retireAfter', async () => {
    await writeNetwork([{ file: CURRENT, retireAfter: isoIn(DAY_MS) }, { file: NEXT, signFrom: isoIn(-60_000) }]);
    await restart();
    expect((await clientJwks()).body).toEqual({ keys: [CURRENT_PUBLIC, NEXT_PUBLIC] });
    const before = ehr.tokens.issued.size;
    await referralWithRecords();
    expect(acceptedKids(before)).toEqual([{ clientId: SERVICE_OUTBOUND_CLIENT_ID, kid: NEXT_PUBLIC.kid }]);
  });

  it('rotation, step 3: after its retireAfter the old key is no longer published; the next key signs on', async () => {
    await writeNetwork([{ file: CURRENT, retireAfter: isoIn(-60_000) }, { file: NEXT, signFrom: isoIn(-120_000) }]);
    await restart();
    expect((await clientJwks()).body).toEqual({ keys: [NEXT_PUBLIC] });
    const before = ehr.tokens.issued.size;
    await referralWithRecords();
    expect(acceptedKids(before)).toEqual([{ clientId: SERVICE_OUTBOUND_CLIENT_ID, kid: NEXT_PUBLIC.kid }]);
  });
});
