import { parseSearchRequest } from '@medplum/core';
import type { DocumentReference, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROFILE, SYSTEM } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE, QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { DEFAULT_OUTBOUND_SCOPE } from '../src/outbound/outbound-scope.ts';
import { opinionDeliveries } from '../src/store/schema.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_PUBLIC_JWK } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { captureLogs } from './support/log-capture.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * An EHR that resolves every `meta.profile` with the caller's rights (Medplum)
 * refused the post-back with 403 until StructureDefinition read was granted. `meta.profile` is
 * a per-EHR choice (`fhir.profiles`); with `keep` the service asks for StructureDefinition read,
 * and when the EHR does not grant it, says so and fails the delivery at once with the EHR's answer.
 */
describe.each([
  { granted: true, title: 'the EHR grants StructureDefinition read: the note keeps its profile' },
  { granted: false, title: 'the EHR does not grant it: reported when the token arrives, and the 403 is permanent' },
])('fhir.profiles keep (flow): $title', ({ granted }) => {
  let ehr: SandboxEhr;
  let service: TestService;
  const { log, lines: logs } = captureLogs('warn');
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);

  beforeAll(async () => {
    // The EHR's registration of the service: its default outbound scope, plus StructureDefinition read or not.
    const scope = granted ? `${DEFAULT_OUTBOUND_SCOPE} system/StructureDefinition.rs` : DEFAULT_OUTBOUND_SCOPE;
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 20_000 }, clients: [{ clientId: SERVICE_OUTBOUND_CLIENT_ID, jwks: { keys: [{ ...SERVICE_OUTBOUND_PUBLIC_JWK }] }, scope }] });
    const networkFile = await writeSandboxNetwork(ehr, { timeoutMs: 5_000, edit: (byId) => void ((byId('st-olaf').fhir as Record<string, unknown>).profiles = 'keep') });
    service = await startTestService({ NETWORK_FILE: networkFile }, log, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 1, ...(q.name === QUEUE.deliverOpinion ? { retryLimit: 5 } : {}) })),
      jobPollingIntervalSeconds: 0.5,
    });
    for (const p of ['st-olaf', 'lakeside-consults']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  it('posts the opinion with meta.profile, or fails it on the first 403 naming what the EHR needs', async () => {
    const request = makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded);
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', request);
    expect(created.status).toBe(201);
    const id = created.body.id;
    const taskId = created.body.tasks[0]?.id as string;
    await until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');
    expect((await call('POST', `/consults/${taskId}/accept`, 'lakeside-consults')).status).toBe(200);
    expect((await call('POST', `/consults/${taskId}/start`, 'lakeside-consults')).status).toBe(200);
    const done = await call<Task>('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', EXAMPLE_OPINION);
    expect(done.status).toBe(200);
    const noteId = (done.body.output?.[0]?.valueReference?.reference as string).split('/')[1] as string;
    const delivery = await until(async () => {
      const [row] = await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, noteId));
      return row && row.status !== 'pending' ? row : undefined;
    }, 'the delivery to end');
    const posts = ehr.requests.filter((r) => r.method === 'POST' && r.path.startsWith('/fhir/R4/DocumentReference'));
    // The service asked the EHR for StructureDefinition read (profiles: keep); what came back decides the rest.
    expect(ehr.tokens.issued.size).toBeGreaterThan(0);
    expect([...ehr.tokens.issued.values()].every((t) => t.scope.includes('system/StructureDefinition.rs') === granted)).toBe(true);
    const missingReports = logs.filter((l) => l.event === 'outbound.scope-missing' && l.stage === 'granted');

    if (granted) {
      expect(delivery).toMatchObject({ status: 'delivered', attempts: 1 });
      const [remote] = (await ehr.repo.searchResources(parseSearchRequest(`DocumentReference?identifier=${encodeURIComponent(`${SYSTEM.consultNoteId}|${noteId}`)}`))) as DocumentReference[];
      expect(remote?.meta?.profile).toEqual([PROFILE.consultNote]);
      expect(createValidator().validate(remote as DocumentReference)).toEqual([]);
      expect(missingReports).toEqual([]);
    } else {
      expect(missingReports).toEqual([expect.objectContaining({ participant: 'st-olaf', missing: ['system/StructureDefinition.r', 'system/StructureDefinition.s'] })]);
      // Permanent: one POST, no retries; the EHR's OperationOutcome kept for the referrer.
      expect(delivery).toMatchObject({ status: 'failed', attempts: 1 });
      expect(posts).toHaveLength(1);
      expect(posts[0]?.status).toBe(403);
      const summary = (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
      expect(summary.consultants[0]?.task.businessStatus).toBe('delivery-failed');
      expect(JSON.stringify(summary.consultants[0]?.delivery?.lastOutcome)).toContain('needs system/StructureDefinition.r');
    }
  });
});
