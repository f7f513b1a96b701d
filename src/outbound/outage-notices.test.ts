import { describe, expect, it } from 'vitest';
import { captureLogs } from '../../test/support/log-capture.ts';
import { loadNetwork } from '../network/network.ts';
import { createParticipantFhirClients, outboundKeyBaseDir } from './endpoints.ts';
import { exampleNetworkHint, OutageNotices } from './outage-notices.ts';

type Line = { level: number | string; msg: string; event?: string; participant?: string; origin?: string; hint?: string; failedCalls?: number; outageSeconds?: number; sinceSeconds?: number };

/** The example network's clients over a fetch that is down until `up` is set, and a clock the test moves. */
async function setUp() {
  const { log, lines, raw } = captureLogs<Line>('debug');
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const state = { up: false, calls: 0 };
  const fetchFake = (async (input: string | URL | Request) => {
    state.calls++;
    const url = String(input instanceof Request ? input.url : input);
    if (!state.up) throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8090'), { code: 'ECONNREFUSED', syscall: 'connect' }) });
    if (url.endsWith('/auth/token')) return Response.json({ access_token: 'a-token', token_type: 'bearer', expires_in: 300, scope: 'system/*.rs system/DocumentReference.c system/Communication.c' });
    return Response.json({ resourceType: 'Bundle', type: 'searchset', entry: [] }, { headers: { 'content-type': 'application/fhir+json' } });
  }) as typeof fetch;
  const network = await loadNetwork();
  const outages = new OutageNotices({ log, hint: exampleNetworkHint, reminderMs: 300_000, now: () => clock });
  const clients = await createParticipantFhirClients(network, { keyBaseDir: outboundKeyBaseDir(undefined), fetch: fetchFake, outages, now: () => clock });
  const stOlaf = clients.get('st-olaf')!;
  const search = () => stOlaf.search('DocumentReference', { patient: 'Patient/p1' });
  return { lines: () => lines.filter((l) => l.event?.startsWith('outbound.')), raw, outages, search, state, advance: (ms: number) => (clock += ms) };
}

describe('OutageNotices: one warning per outage per participant', () => {
  it('names the participant, its origin and what to start, once; reminds at a lower rate; says when it answers again', async () => {
    const t = await setUp();
    // Connection refused at the token endpoint (the example referrer has one), then at every retry.
    for (let i = 0; i < 4; i++) await expect(t.search()).rejects.toMatchObject({ failure: 'network' });
    expect(t.lines()).toEqual([
      expect.objectContaining({
        level: 'warn',
        event: 'outbound.unreachable',
        participant: 'st-olaf',
        origin: 'http://localhost:8090',
        hint: 'The example network expects the sandbox EHR: start it with `npm run sandbox` in another terminal',
        msg: 'cannot reach the FHIR server of participant st-olaf (http://localhost:8090): connection failed; jobs will retry. The example network expects the sandbox EHR: start it with `npm run sandbox` in another terminal',
      }),
    ]);
    // Failures of that server are announced: the jobs' own lines for them go to debug.
    const refused = await t.search().catch((err: unknown) => err);
    expect(t.outages.covers(refused)).toBe(true);

    t.advance(299_000);
    await t.search().catch(() => undefined);
    expect(t.lines()).toHaveLength(1);
    t.advance(2_000);
    await t.search().catch(() => undefined);
    expect(t.lines()).toHaveLength(2);
    expect(t.lines()[1]).toMatchObject({ level: 'warn', event: 'outbound.unreachable', participant: 'st-olaf', failedCalls: 6, sinceSeconds: 301, msg: expect.stringMatching(/^still cannot reach the FHIR server of participant st-olaf \(http:\/\/localhost:8090\)\. The example network expects the sandbox EHR/) });

    t.state.up = true;
    t.advance(1_000);
    await expect(t.search()).resolves.toEqual([]);
    expect(t.lines()).toHaveLength(3);
    expect(t.lines()[2]).toMatchObject({ level: 'info', event: 'outbound.reachable', participant: 'st-olaf', origin: 'http://localhost:8090', failedCalls: 7, outageSeconds: 302, msg: 'the FHIR server of participant st-olaf answers again' });
    expect(t.outages.covers(refused)).toBe(false);

    // A new outage is announced again, once.
    t.state.up = false;
    await t.search().catch(() => undefined);
    await t.search().catch(() => undefined);
    expect(t.lines().slice(3)).toEqual([expect.objectContaining({ level: 'warn', event: 'outbound.unreachable', participant: 'st-olaf' })]);
    // No path (it names resources) and no query in any line.
    expect(t.raw.join('\n')).not.toContain('Patient/p1');
    expect(t.raw.join('\n')).not.toContain('/fhir/R4');
  });

  it('an HTTP error is an answer: it ends an outage and starts none', async () => {
    const { log, lines } = captureLogs<Line>('debug');
    const outages = new OutageNotices({ log });
    const { OutboundHttpError } = await import('./outbound-errors.ts');
    outages.failed('st-olaf', 'http://ehr.example/fhir', new OutboundHttpError({ status: 503, failure: 'http', method: 'GET', url: 'http://ehr.example/fhir/Patient/1' }));
    expect(lines).toEqual([]);
    outages.failed('st-olaf', 'http://ehr.example/fhir', new OutboundHttpError({ status: 0, failure: 'timeout', method: 'GET', url: 'http://ehr.example/fhir/Patient/1' }));
    expect(lines).toEqual([expect.objectContaining({ level: 'warn', participant: 'st-olaf', origin: 'http://ehr.example', failure: 'timeout', msg: 'cannot reach the FHIR server of participant st-olaf (http://ehr.example): timed out; jobs will retry' })]);
    outages.answered('st-olaf', 'http://ehr.example/fhir');
    expect(lines.at(-1)).toMatchObject({ level: 'info', event: 'outbound.reachable', participant: 'st-olaf' });
  });
});
