import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const ROOT = path.join(import.meta.dirname, '..');

/**
 * CONSENT_ATTESTATION_ALLOWED (configuration may relax consent to an attestation flag, off
 * by default): with it on, a request without a consent reference that attests consent gets
 * its record set disclosed; an unattested one is still held; a named Consent still decides.
 */
describe('consent by attestation (CONSENT_ATTESTATION_ALLOWED=true)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let token: string;

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
    const network = JSON.parse(readFileSync(path.join(ROOT, 'examples', 'network.json'), 'utf8')) as { participants: { id: string; fhir?: unknown }[] };
    const stOlaf = network.participants.find((p) => p.id === 'st-olaf');
    if (!stOlaf) throw new Error('example network lacks st-olaf');
    stOlaf.fhir = { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: 5_000 };
    const networkFile = path.join(await mkdtemp(path.join(tmpdir(), 'so-network-')), 'network.json');
    await writeFile(networkFile, JSON.stringify(network));
    service = await startTestService({ NETWORK_FILE: networkFile, CONSENT_ATTESTATION_ALLOWED: 'true' }, undefined, { jobPollingIntervalSeconds: 0.5 });
    token = await getAccessToken(service.url, clientIdOf('st-olaf'));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  async function referAndWait(overrides: Parameters<typeof makeSecondOpinionRequest>[0]): Promise<ReferralSummary> {
    const res = await fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] }, ...overrides }, ehr.seeded)),
    });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string; tasks: Task[] };
    const deadline = Date.now() + 45_000;
    for (;;) {
      const summary = (await (await fetch(`${service.url}/second-opinions/${id}`, { headers: { authorization: `Bearer ${token}` } })).json()) as ReferralSummary;
      if (summary.recordSet.status !== 'records-pending') return summary;
      if (Date.now() > deadline) throw new Error('not assembled in time');
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('no consent reference, attested: records-ready on the attestation', async () => {
    const summary = await referAndWait({ consent: undefined, consentAttested: true });
    expect(summary.recordSet.status).toBe('records-ready');
    expect(summary.recordSet.consent).toEqual([{ participant: 'lakeside-consults', permitted: true, basis: 'attestation' }]);
  });

  it('no consent reference, not attested: held awaiting consent', async () => {
    const summary = await referAndWait({ consent: undefined });
    expect(summary.recordSet.status).toBe('awaiting-consent');
    expect(summary.recordSet.consent).toEqual([{ participant: 'lakeside-consults', permitted: false, code: 'missing', reason: expect.any(String) }]);
  });

  it('an expired Consent still refuses, attestation or not', async () => {
    const summary = await referAndWait({ consent: { reference: `Consent/${ehr.seeded.expiredConsentId}` }, consentAttested: true });
    expect(summary.recordSet.status).toBe('awaiting-consent');
    expect(summary.recordSet.consent).toEqual([{ participant: 'lakeside-consults', permitted: false, code: 'expired', reason: expect.any(String) }]);
  });
});
