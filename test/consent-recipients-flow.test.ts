import type { Consent, Organization } from '@medplum/fhirtypes';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { makeConsent, ORGANIZATION_REGISTRY_SYSTEM } from './support/sandbox-ehr/seed-resources.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * The referring EHR's Consent names the consulting clinic by the EHR's OWN
 * Organization id (as a real EHR does), never by the service's `Organization/lakeside`. The
 * service recognises the consultant by the identifiers the network file gives it (read from
 * the Organization on the EHR), or by the alias the network file lists for that EHR.
 */
describe('consent recipients named by the EHR\'s own ids (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let token: string;
  /** Lakeside as this EHR stores it: its own id, the registry identifier. */
  let withIdentifier: Organization;
  /** Lakeside as an EHR that records no identifier stores it; the network file gives its alias. */
  let aliased: Organization;
  /** An organization the EHR has no identifier for and the network file does not mention. */
  let unknown: Organization;

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 50_000 } });
    withIdentifier = await ehr.repo.createResource<Organization>({ resourceType: 'Organization', name: 'Lakeside Clinic', identifier: [{ system: ORGANIZATION_REGISTRY_SYSTEM, value: 'ORG-2001' }] });
    aliased = await ehr.repo.createResource<Organization>({ resourceType: 'Organization', name: 'Lakeside (legacy record)' });
    unknown = await ehr.repo.createResource<Organization>({ resourceType: 'Organization', name: 'Lakeside (unmatched record)' });
    const networkFile = await writeSandboxNetwork(ehr, {
      timeoutMs: 5_000,
      edit: (byId) => {
        (byId('st-olaf').fhir as Record<string, unknown>).aliases = { 'lakeside-consults': `Organization/${aliased.id}` };
      },
    });
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 2 })),
      jobPollingIntervalSeconds: 0.5,
    });
    token = await getAccessToken(service.url, clientIdOf('st-olaf'));
  });
  afterEach(() => ehr?.faults.clear());
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  /** A valid consent for the seeded patient naming `organizationId` (an id on the EHR) as the information recipient. */
  async function consentFor(organizationId: string): Promise<Consent> {
    const now = Date.now();
    const consent = makeConsent('unused', new Date(now - 86_400_000), new Date(now + 86_400_000), { reference: `Organization/${organizationId}`, display: 'Lakeside' });
    const { id: _fixed, ...rest } = consent;
    return ehr.repo.createResource<Consent>({ ...rest, patient: { reference: `Patient/${ehr.seeded.patientId}` } });
  }

  async function referAndAssemble(consent: Consent): Promise<ReferralSummary> {
    const body = makeSecondOpinionRequest(
      {
        consultants: ['lakeside-consults'],
        blinded: false,
        firstOpinion: { documents: [] },
        records: { documents: [{ reference: `DocumentReference/${seededDocument(ehr.seeded, 'op-note-2024').id}` }] },
        consent: { reference: `Consent/${consent.id}` },
      },
      ehr.seeded,
    );
    const res = await fetch(`${service.url}/second-opinions`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    return until(async () => {
      const summary = (await (await fetch(`${service.url}/second-opinions/${id}`, { headers: { authorization: `Bearer ${token}` } })).json()) as ReferralSummary;
      return summary.recordSet.status === 'records-pending' ? undefined : summary;
    }, 'record assembly');
  }

  it('an Organization of the EHR carrying the consultant\'s identifier is the consultant: records go out', async () => {
    expect(withIdentifier.id).not.toBe('lakeside');
    const summary = await referAndAssemble(await consentFor(withIdentifier.id as string));
    expect(summary.recordSet).toMatchObject({ status: 'records-ready', consent: [{ participant: 'lakeside-consults', permitted: true, basis: 'consent' }] });
    expect(ehr.requests.some((r) => r.method === 'GET' && r.path.endsWith(`/Organization/${withIdentifier.id}`) && r.status === 200)).toBe(true);
  });

  it('the EHR\'s own id listed as an alias in the network file is the consultant, without reading it', async () => {
    const before = ehr.requests.length;
    const summary = await referAndAssemble(await consentFor(aliased.id as string));
    expect(summary.recordSet).toMatchObject({ status: 'records-ready', consent: [{ participant: 'lakeside-consults', permitted: true }] });
    expect(ehr.requests.slice(before).some((r) => r.path.includes(`/Organization/${aliased.id}`))).toBe(false);
  });

  it('an Organization with none of the consultant\'s identifiers is not the consultant, whatever its name: the Task waits for consent', async () => {
    const summary = await referAndAssemble(await consentFor(unknown.id as string));
    expect(summary.recordSet).toMatchObject({
      status: 'awaiting-consent',
      consent: [{ participant: 'lakeside-consults', permitted: false, code: 'not-a-recipient', reason: `The consent does not name Lakeside Clinic (example) (identifier ${ORGANIZATION_REGISTRY_SYSTEM}|ORG-2001) as a recipient` }],
    });
    expect(summary.consultants[0]?.task.businessStatus).toBe('awaiting-consent');
  });

  it('a recipient the EHR will not let us read (403) is not matched, and the refusal says which scope is needed', async () => {
    const consent = await consentFor(withIdentifier.id as string);
    ehr.faults.add({ path: `/fhir/R4/Organization/${withIdentifier.id}`, method: 'GET', status: 403 });
    const summary = await referAndAssemble(consent);
    expect(summary.recordSet.status).toBe('awaiting-consent');
    expect(summary.recordSet.consent[0]).toMatchObject({ permitted: false, code: 'not-a-recipient' });
    const reason = (summary.recordSet.consent[0] as { reason?: string } | undefined)?.reason;
    expect(reason).toContain('1 recipient Organization(s) named by the consent could not be read from the EHR (HTTP 403)');
    expect(reason).toContain('system/Organization.r');
  });
});
