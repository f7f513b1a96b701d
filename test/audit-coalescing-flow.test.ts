import type { AuditEvent, ServiceRequest } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_ID_SYSTEM, EXTENSION } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * Polling a referral summary over HTTP: repeated reads by one client within a minute are one
 * AuditEvent with a read count; reads of other things stay one AuditEvent per read; refused
 * reads too. The service's clock is the test's, so the minute windows are the test's to choose.
 */
describe('coalesced summary reads (flow)', () => {
  let service: TestService;
  const tokens: Record<string, string> = {};
  // Near the real time (tokens are checked against it too), at 5 s past a minute.
  let clock = new Date(Math.floor(Date.now() / 60_000) * 60_000 + 5_000);
  let serviceRequest: ServiceRequest;

  beforeAll(async () => {
    service = await startTestService({}, undefined, { now: () => clock });
    for (const p of ['st-olaf', 'riverside-imaging']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
    const res = await fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens['st-olaf']}`, 'content-type': 'application/json' },
      body: JSON.stringify(makeSecondOpinionRequest({ consultants: ['lakeside-consults'] })),
    });
    expect(res.status).toBe(201);
    ({ serviceRequest } = (await res.json()) as { serviceRequest: ServiceRequest });
  });
  afterAll(async () => service?.stop());

  const get = (path: string, participant: string) => fetch(`${service.url}${path}`, { headers: { authorization: `Bearer ${tokens[participant]}` } });
  const later = (ms: number) => {
    clock = new Date(clock.getTime() + ms);
  };

  /** The stored AuditEvents naming this referral's ServiceRequest, oldest first, as [path-ish label, outcome, read count]. */
  async function events(): Promise<AuditEvent[]> {
    const result = await service.database.db.execute(
      sql`SELECT content FROM resource WHERE resource_type = 'AuditEvent' AND content @> ${JSON.stringify({ entity: [{ what: { reference: `ServiceRequest/${serviceRequest.id}` } }] })}::jsonb ORDER BY content->>'recorded', id`,
    );
    return (result as unknown as { rows: { content: AuditEvent }[] }).rows.map((r) => r.content);
  }
  const countOf = (e: AuditEvent) => e.extension?.find((x) => x.url === EXTENSION.auditReadCount)?.valuePositiveInt;
  const clientOf = (e: AuditEvent) => e.agent?.find((a) => a.who?.identifier?.system === CLIENT_ID_SYSTEM)?.who?.identifier?.value;

  it('five polls of the summary in one minute: one AuditEvent with count 5; a poll in the next minute: a new one', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await get(`/second-opinions/${serviceRequest.id}`, 'st-olaf')).status).toBe(200);
      later(10_000);
    }
    // 55 s past the minute now; the next poll is in the next minute.
    later(10_000);
    expect((await get(`/second-opinions/${serviceRequest.id}`, 'st-olaf')).status).toBe(200);
    const summaries = (await events()).filter((e) => e.subtype?.[0]?.code === 'read' && e.outcome === '0');
    expect(summaries.map((e) => [clientOf(e), countOf(e)])).toEqual([
      ['st-olaf-ehr', 5],
      ['st-olaf-ehr', 1],
    ]);
    const first = summaries[0] as AuditEvent;
    expect(new Date(first.period?.end as string).getTime() - new Date(first.period?.start as string).getTime()).toBe(40_000);
    for (const e of summaries) expect(createValidator().validate(e)).toEqual([]);
  });

  it('two polls at the same time: one AuditEvent, count 2; the comparison view is coalesced the same way', async () => {
    later(60_000);
    const before = (await events()).length;
    const answers = await Promise.all([get(`/second-opinions/${serviceRequest.id}`, 'st-olaf'), get(`/second-opinions/${serviceRequest.id}`, 'st-olaf')]);
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    for (let i = 0; i < 3; i++) expect((await get(`/second-opinions/${serviceRequest.id}/comparison`, 'st-olaf')).status).toBe(200);
    const added = (await events()).slice(before);
    expect(added.map(countOf).sort()).toEqual([2, 3]);
  });

  it('FHIR reads of the ServiceRequest and refused summary reads stay one AuditEvent per read', async () => {
    later(60_000);
    const before = (await events()).length;
    for (let i = 0; i < 2; i++) {
      expect((await get(`/fhir/ServiceRequest/${serviceRequest.id}`, 'st-olaf')).status).toBe(200);
      expect((await get(`/second-opinions/${serviceRequest.id}`, 'riverside-imaging')).status).toBe(403);
    }
    const added = (await events()).slice(before);
    // The same clock for all four: sorted by outcome.
    expect(added.map((e) => [e.outcome, countOf(e)]).sort()).toEqual([
      ['0', undefined],
      ['0', undefined],
      ['4', undefined],
      ['4', undefined],
    ]);
  });
});
