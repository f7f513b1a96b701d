import type { Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { captureLogs } from './support/log-capture.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * The EHR refuses our client assertion because the network file writes its token URL differently
 * from the server (`0.0.0.0` for `127.0.0.1`: the request reaches the server, but the assertion's
 * `aud` is not a name the server answers to; the sandbox, like a developer's machine, takes the
 * loopback names `localhost`, `127.0.0.1` and `[::1]` as one). The refusal is permanent:
 * record assembly stops on the first attempt, and the EHR's `error_description` reaches the
 * referrer's summary and the log, not just the OAuth `error` code.
 */
describe('a token refusal keeps the EHR\'s error_description (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  const { log, lines: logs } = captureLogs('warn');
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 20_000 } });
    const networkFile = await writeSandboxNetwork(ehr, {
      timeoutMs: 5_000,
      edit: (byId) => void ((byId('st-olaf').fhir as Record<string, unknown>).tokenUrl = ehr.tokenUrl.replace('127.0.0.1', '0.0.0.0')),
    });
    service = await startTestService({ NETWORK_FILE: networkFile }, log, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 1 })),
      jobPollingIntervalSeconds: 0.5,
    });
    tokens['st-olaf'] = await getAccessToken(service.url, clientIdOf('st-olaf'));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  it('records-failed on the first attempt, with "Invalid client assertion audience" in the summary and the log', async () => {
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded));
    expect(created.status).toBe(201);
    const id = created.body.id;
    const recordSet = await until(async () => {
      const summary = (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
      return summary.recordSet.status === 'records-failed' ? summary.recordSet : undefined;
    }, 'the failed assembly');
    expect(recordSet.attempts).toBe(1);
    expect(recordSet.failureReason).toContain('invalid_client');
    expect(recordSet.failureReason).toContain('Invalid client assertion audience');
    // The Task says why in plain words: the EHR would not let the service sign in.
    const [task] = (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.consultants.map((c) => c.task);
    expect(task).toMatchObject({ status: 'failed', statusReason: 'The record set could not be assembled: the referring EHR did not let this service sign in (token request refused)', businessStatus: 'records-failed' });
    // One token request, refused; no FHIR call was made without a token.
    const tokenCalls = ehr.requests.filter((r) => r.path === '/auth/token');
    expect(tokenCalls.map((r) => r.status)).toEqual([401]);
    expect(ehr.requests.filter((r) => r.path.startsWith('/fhir/R4/'))).toEqual([]);
    // The log line names the OAuth error and its description, and nothing of the assertion.
    const logged = logs.filter((l) => JSON.stringify(l).includes('Invalid client assertion audience'));
    expect(logged.length).toBeGreaterThan(0);
    expect(JSON.stringify(logged)).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
  });
});
