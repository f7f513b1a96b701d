import type { AuditEvent, Bundle, OperationOutcome, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import type { Comparison } from '../src/retrieval/comparison.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { clientCredentialsForm, getAccessToken, postTokenRequest } from './support/tokens.ts';

/**
 * The primary physician's view: a participant with the physician role, or a
 * referrer token issued for one practitioner, sees only the referrals that clinician requested.
 */
describe('physician access to referrals (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  const tokens: Record<string, string> = {};
  let nilsens: string;
  let bergs: string;

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
    const networkFile = await writeSandboxNetwork(ehr, { timeoutMs: 5_000 });
    service = await startTestService({ NETWORK_FILE: networkFile });
    for (const p of ['st-olaf', 'st-olaf-physicians', 'lakeside-consults', 'audit-office']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));

    const place = async (requester: string) => {
      const res = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants: ['lakeside-consults'], requester: { reference: requester, display: 'A clinician' } }, ehr.seeded));
      expect(res.status).toBe(201);
      return res.body.id;
    };
    nilsens = await place(`Practitioner/${ehr.seeded.practitionerId}`);
    bergs = await place('Practitioner/dr-berg');
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  const call = callerFor(() => service.url, tokens);

  async function tokenFor(participant: string, practitioner: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const form = await clientCredentialsForm(service.url, clientIdOf(participant));
    return postTokenRequest(service.url, { ...form, practitioner });
  }

  it('the physicians portal reads the summary and comparison of its clinician\'s referral, and gets 404 for another clinician\'s', async () => {
    const summary = await call<ReferralSummary>('GET', `/second-opinions/${nilsens}`, 'st-olaf-physicians');
    expect(summary.status).toBe(200);
    expect(summary.body).toMatchObject({ id: nilsens, status: 'active', consultants: [{ participant: 'lakeside-consults' }] });
    const comparison = await call<Comparison>('GET', `/second-opinions/${nilsens}/comparison`, 'st-olaf-physicians');
    expect(comparison.status).toBe(200);
    expect(comparison.body.pending).toHaveLength(1);

    for (const pathname of [`/second-opinions/${bergs}`, `/second-opinions/${bergs}/comparison`]) {
      const refused = await call<OperationOutcome>('GET', pathname, 'st-olaf-physicians');
      expect(refused.status).toBe(404);
      expect(refused.body.resourceType).toBe('OperationOutcome');
    }
    // It places nothing and reads no Task over FHIR: the physician role only reads referrals.
    expect((await call('POST', '/second-opinions', 'st-olaf-physicians', makeSecondOpinionRequest({}, ehr.seeded))).status).toBe(403);

    // Both reads are audited with the portal as the agent, the refusal too.
    const events = await call<Bundle<AuditEvent>>('GET', `/fhir/AuditEvent?entity=ServiceRequest/${bergs}`, 'audit-office');
    const byPortal = (events.body.entry ?? []).map((e) => e.resource as AuditEvent).filter((e) => e.agent.some((a) => a.who?.reference === 'Organization/st-olaf-primary-care'));
    // Exactly the summary and the comparison read above, both refused (404) and recorded as such.
    expect(byPortal).toHaveLength(2);
    expect(byPortal.map((e) => [e.outcome, e.outcomeDesc])).toEqual([
      ['4', 'Refused (404): not found, or not visible to the caller'],
      ['4', 'Refused (404): not found, or not visible to the caller'],
    ]);
  });

  it('a referrer token issued for one practitioner sees only that clinician\'s referrals; without it the referrer sees all', async () => {
    const forBerg = await tokenFor('st-olaf', 'Practitioner/dr-berg');
    expect(forBerg.status).toBe(200);
    const berg = forBerg.body.access_token as string;
    expect((await call('GET', `/second-opinions/${bergs}`, berg)).status).toBe(200);
    expect((await call('GET', `/second-opinions/${nilsens}`, berg)).status).toBe(404);
    expect((await call('GET', `/second-opinions/${nilsens}/comparison`, berg)).status).toBe(404);
    expect((await call('GET', `/second-opinions/${nilsens}`, 'st-olaf')).status).toBe(200);
    expect((await call('GET', `/second-opinions/${bergs}`, 'st-olaf')).status).toBe(200);
  });

  it('the token endpoint refuses a practitioner the participant does not act for, a malformed one, and one for a consultant', async () => {
    const notHers = await tokenFor('st-olaf-physicians', 'Practitioner/dr-berg');
    expect(notHers).toMatchObject({ status: 400, body: { error: 'invalid_request', error_description: expect.stringMatching(/not one this participant acts for/) } });
    const malformed = await tokenFor('st-olaf', `Patient/${ehr.seeded.patientId}`);
    expect(malformed).toMatchObject({ status: 400, body: { error: 'invalid_request', error_description: expect.stringMatching(/must be a Practitioner reference/) } });
    const consultant = await tokenFor('lakeside-consults', `Practitioner/${ehr.seeded.practitionerId}`);
    expect(consultant).toMatchObject({ status: 400, body: { error: 'invalid_request', error_description: expect.stringMatching(/only for participants with the referrer or physician role/) } });
    // The portal may narrow itself to its own clinician.
    const own = await tokenFor('st-olaf-physicians', `Practitioner/${ehr.seeded.practitionerId}`);
    expect(own.status).toBe(200);
    expect((await call('GET', `/second-opinions/${nilsens}`, own.body.access_token as string)).status).toBe(200);
  });
});
