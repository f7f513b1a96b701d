import { describe, expect, it } from 'vitest';
import { explainDeadLetter, explainServerError, outcomeText, readsEhrSynchronously, summarizeByCause } from '../../scripts/soak/attribution.ts';
import { auditCoverage, type AuditSeen } from '../../scripts/soak/audits.ts';
import type { FaultWindow } from '../../scripts/soak/faults.ts';
import { namesRecord } from '../../scripts/soak/later-records.ts';
import { formatTable, percentile, type SoakFindings, verdict } from '../../scripts/soak/report.ts';
import { buildSchedule, FAULT_KINDS, isOutage, seededRandom } from '../../scripts/soak/schedule.ts';

/** Findings of a clean run of ten referrals, changed per test. */
function clean(overrides: Partial<SoakFindings> = {}): SoakFindings {
  return {
    seed: 42,
    referrals: 10,
    started: 10,
    completed: 10,
    open: [],
    duplicatedReferrals: [],
    opinionsSubmitted: 8,
    deliveredOnce: 8,
    deliveredTwice: [],
    lost: [],
    recordSetsComplete: 10,
    recordSetsBad: [],
    deadLettered: [],
    audits: { 'record-set reads': { audited: 10, missing: [] }, 'attachment downloads': { audited: 70, missing: [] }, 'post-backs': { audited: 8, missing: [] } },
    laterRecords: { supplied: 1, reached: 1, postedAgain: 0, failures: [] },
    serverErrors: [],
    endToEndMs: [1000, 2000, 3000],
    peakRss: { 'replica 0': 200 * 1_048_576 },
    largestTables: [{ table: 'public.resource', bytes: 3 * 1_048_576, rows: 400 }],
    faultsInjected: { 'kill-replica': 1 },
    crashes: [],
    durationMs: 60_000,
    ...overrides,
  };
}

describe('soak fault schedule', () => {
  it('the same seed gives the same schedule; another seed another one', () => {
    const a = buildSchedule(1234, { durationMs: 60_000, count: 20 });
    expect(buildSchedule(1234, { durationMs: 60_000, count: 20 })).toEqual(a);
    expect(buildSchedule(1235, { durationMs: 60_000, count: 20 })).not.toEqual(a);
    expect(seededRandom(9).next()).toBe(seededRandom(9).next());
  });

  it('every kind of fault appears when the count allows, sorted by time, outages at least the gap apart', () => {
    const schedule = buildSchedule(77, { durationMs: 60_000, count: 30, outageGapMs: 8_000 });
    expect(schedule).toHaveLength(30);
    expect(new Set(schedule.map((f) => f.kind))).toEqual(new Set(FAULT_KINDS));
    expect(schedule.map((f) => f.atMs)).toEqual([...schedule.map((f) => f.atMs)].sort((x, y) => x - y));
    const outages = schedule.filter((f) => isOutage(f.kind)).map((f) => f.atMs);
    for (let i = 1; i < outages.length; i++) expect((outages[i] as number) - (outages[i - 1] as number)).toBeGreaterThanOrEqual(8_000);
    for (const f of schedule) {
      if (f.kind === 'kill-replica') expect([0, 1]).toContain(f.replica);
      else if (f.kind === 'webhook-receiver-down') expect(f.seconds).toBeGreaterThanOrEqual(4);
      else if (!isOutage(f.kind)) expect(f.times).toBeGreaterThanOrEqual(1);
    }
  });
});

describe('soak attribution of 5xx', () => {
  const call = (at: number, replica: number, method = 'GET', path = '/second-opinions/r1') => ({ at, replica, method, path });

  it('a database fault explains a call to either replica while in force (a second of slack before the start), not after it ended', () => {
    const windows: FaultWindow[] = [{ kind: 'postgres-restart', start: 10_000, end: 20_000 }];
    expect(explainServerError(call(9_500, 0), windows)?.kind).toBe('postgres-restart');
    expect(explainServerError(call(15_000, 1), windows)?.kind).toBe('postgres-restart');
    expect(explainServerError(call(20_001, 0), windows)).toBeUndefined();
  });

  it('a killed replica explains the calls it answered, not those of the other replica', () => {
    const windows: FaultWindow[] = [{ kind: 'kill-replica', replica: 1, start: 10_000, end: 20_000 }];
    expect(explainServerError(call(12_000, 1), windows)?.kind).toBe('kill-replica');
    expect(explainServerError(call(12_000, 0), windows)).toBeUndefined();
  });

  it('a call is judged over its whole flight: one sent before a kill and cut off by it is explained by the kill', () => {
    const windows: FaultWindow[] = [{ kind: 'kill-replica', start: 10_000, end: 20_000, replica: 1 }];
    expect(explainServerError({ ...call(6_000, 1), endedAt: 10_200 }, windows)?.kind).toBe('kill-replica');
    expect(explainServerError({ ...call(6_000, 1), endedAt: 8_500 }, windows)).toBeUndefined();
    expect(explainServerError({ ...call(6_000, 0), endedAt: 10_200 }, windows)).toBeUndefined();
  });

  it('an EHR read fault explains only calls that read the EHR while the client waits; a post-back fault explains none', () => {
    const windows: FaultWindow[] = [
      { kind: 'ehr-read-503', start: 10_000, end: 20_000 },
      { kind: 'ehr-postback-500', start: 10_000, end: 20_000 },
    ];
    expect(explainServerError(call(12_000, 0, 'POST', '/second-opinions'), windows)?.kind).toBe('ehr-read-503');
    expect(explainServerError(call(12_000, 0, 'POST', '/second-opinions/r1/info'), windows)?.kind).toBe('ehr-read-503');
    expect(explainServerError(call(12_000, 0, 'GET', '/fhir/Binary/abc'), windows)?.kind).toBe('ehr-read-503');
    expect(explainServerError(call(12_000, 0, 'GET', '/second-opinions/r1'), windows)).toBeUndefined();
    expect(explainServerError(call(12_000, 0, 'POST', '/consults/t1/accept'), windows)).toBeUndefined();
    expect(explainServerError(call(12_000, 0, 'POST', '/second-opinions/r1/records'), windows)).toBeUndefined();
    expect(readsEhrSynchronously('GET', '/fhir/Task/t1')).toBe(false);
    expect(readsEhrSynchronously('GET', '/fhir/Bundle/b1?_format=json')).toBe(true);
  });

  it('an answer saying the database is unreachable is put down to a database fault only; a killed replica or a database fault comes before an EHR fault', () => {
    const ehr: FaultWindow = { kind: 'ehr-read-500', start: 0, end: 50_000 };
    const restart: FaultWindow = { kind: 'postgres-restart', start: 10_000, end: 20_000 };
    const kill: FaultWindow = { kind: 'kill-replica', replica: 0, start: 10_000, end: 20_000 };
    const unreachable = { ...call(12_000, 0, 'POST', '/second-opinions'), outcome: 'The service cannot reach its database at the moment; retry later' };
    expect(explainServerError(unreachable, [ehr, kill, restart])?.kind).toBe('postgres-restart');
    expect(explainServerError(unreachable, [ehr, kill])).toBeUndefined();
    expect(explainServerError({ ...unreachable, at: 30_000 }, [ehr, restart])).toBeUndefined();
    expect(explainServerError(call(12_000, 0, 'POST', '/second-opinions'), [ehr, restart, kill])?.kind).toBe('kill-replica');
    expect(explainServerError(call(12_000, 1, 'POST', '/second-opinions'), [ehr, kill, restart])?.kind).toBe('postgres-restart');
    expect(explainServerError(call(30_000, 1, 'POST', '/second-opinions'), [ehr, kill, restart])?.kind).toBe('ehr-read-500');
  });

  it('the 5xx-by-cause line groups by cause, status, Retry-After and what the answer said, most frequent first', () => {
    const errors = [
      { status: '503', explainedBy: 'postgres-restart', retryAfter: '5', outcome: 'The database is unavailable' },
      { status: '503', explainedBy: 'postgres-restart', retryAfter: '5', outcome: 'The database is unavailable' },
      { status: 'ECONNREFUSED', explainedBy: 'kill-replica (replica 1)' },
      { status: '500' },
    ];
    expect(summarizeByCause(errors)).toEqual(['postgres-restart: 2 × 503 Retry-After 5 "The database is unavailable"', 'kill-replica (replica 1): 1 × ECONNREFUSED', 'unexplained: 1 × 500']);
    expect(outcomeText({ resourceType: 'OperationOutcome', issue: [{ code: 'transient', details: { text: 'Try again' } }] })).toBe('Try again');
    expect(outcomeText({ resourceType: 'OperationOutcome', issue: [{ code: 'exception' }] })).toBe('exception');
    expect(outcomeText(undefined)).toBeUndefined();
  });
});

describe('soak attribution of dead letters', () => {
  const job = (queue: string) => ({ queue, from: 10_000, to: 30_000 });

  it('only a permanent fault of a kind that can fail that queue, in force during the job, explains a dead letter', () => {
    const permanentRead: FaultWindow = { kind: 'ehr-read-500', start: 20_000, end: 40_000, permanent: true };
    expect(explainDeadLetter(job('assemble-record-set'), [permanentRead])?.kind).toBe('ehr-read-500');
    expect(explainDeadLetter(job('deliver-opinion'), [permanentRead])).toBeUndefined();
    expect(explainDeadLetter(job('deliver-opinion'), [{ kind: 'ehr-postback-503', start: 0, permanent: true }])?.kind).toBe('ehr-postback-503');
    // After the job ended, or before it began: no.
    expect(explainDeadLetter(job('assemble-record-set'), [{ ...permanentRead, start: 31_500 }])).toBeUndefined();
    expect(explainDeadLetter(job('assemble-record-set'), [{ ...permanentRead, start: 0, end: 9_000 }])).toBeUndefined();
  });

  it('a transient fault (1-6 requests, fewer than any queue attempts) or an outage explains none', () => {
    const windows: FaultWindow[] = [
      { kind: 'ehr-read-500', start: 0, end: 50_000 },
      { kind: 'ehr-postback-500', start: 0, end: 50_000 },
      { kind: 'postgres-restart', start: 0, end: 50_000 },
      { kind: 'kill-replica', replica: 0, start: 0, end: 50_000 },
    ];
    for (const queue of ['assemble-record-set', 'deliver-opinion', 'notify-webhook', 'some-other-queue']) expect(explainDeadLetter(job(queue), windows)).toBeUndefined();
  });
});

describe('soak audit coverage', () => {
  const read = (reference: string, requestId: string, outcome = '0'): AuditSeen => ({ outcome, subtype: ['read'], references: [reference], requestIds: [requestId] });

  it('each read is matched to an AuditEvent naming what it read and its own request id; a post-back to a successful disclosure naming the note', () => {
    const events = [
      read('Bundle/b1', 'q1'),
      read('Binary/x', 'q2'),
      read('Binary/x', 'q4', '4'), // refused: does not count
      { outcome: '0', subtype: ['disclose'], references: ['DocumentReference/n1'], requestIds: [] },
      { outcome: '8', subtype: ['disclose'], references: ['DocumentReference/n2'], requestIds: [] },
      { outcome: '0', subtype: ['read'], references: ['DocumentReference/n3'], requestIds: ['q9'] },
    ];
    const coverage = auditCoverage(events, [
      { kind: 'record-set reads', reference: 'Bundle/b1', requestId: 'q1', referral: 'r1' },
      { kind: 'attachment downloads', reference: 'Binary/x', requestId: 'q2', referral: 'r1' },
      // The same bytes read again in another referral: its own event is needed.
      { kind: 'attachment downloads', reference: 'Binary/x', requestId: 'q3', referral: 'r2' },
      { kind: 'attachment downloads', reference: 'Binary/x', requestId: 'q4', referral: 'r2' },
      { kind: 'attachment downloads', reference: 'Binary/y', referral: 'r3' },
      { kind: 'post-backs', reference: 'DocumentReference/n1', referral: 'r1' },
      { kind: 'post-backs', reference: 'DocumentReference/n2', referral: 'r2' },
      { kind: 'post-backs', reference: 'DocumentReference/n3', referral: 'r3' },
    ]);
    expect(coverage).toEqual({
      'record-set reads': { audited: 1, missing: [] },
      'attachment downloads': { audited: 1, missing: ['r2 (Binary/x, request q3)', 'r2 (Binary/x, request q4)', 'r3 (Binary/y, no request id)'] },
      'post-backs': { audited: 1, missing: ['r2 (DocumentReference/n2)', 'r3 (DocumentReference/n3)'] },
    });
  });

  it('a copy names its EHR record in meta.source, absolute or relative, with or without _history', () => {
    expect(namesRecord('http://ehr.example/fhir/R4/DocumentReference/d1', 'DocumentReference/d1')).toBe(true);
    expect(namesRecord('http://ehr.example/fhir/R4/DocumentReference/d1/_history/2', 'DocumentReference/d1')).toBe(true);
    expect(namesRecord('DocumentReference/d1', 'DocumentReference/d1')).toBe(true);
    expect(namesRecord('http://ehr.example/fhir/R4/DocumentReference/d10', 'DocumentReference/d1')).toBe(false);
    expect(namesRecord(undefined, 'DocumentReference/d1')).toBe(false);
  });
});

describe('soak verdict', () => {
  it('a clean run passes', () => {
    expect(verdict(clean())).toEqual({ ok: true, failures: [] });
  });

  it('fails on a lost or twice-delivered opinion, a duplicated referral, an unaudited disclosure of each kind, a record supplied later that did not reach the clinic, naming the referrals', () => {
    const result = verdict(
      clean({
        lost: ['ref-1 (note n1)'],
        deliveredTwice: ['ref-2 (note n2)'],
        duplicatedReferrals: ['SOAK-1 (a, b)'],
        audits: {
          'record-set reads': { audited: 9, missing: ['ref-3 (Bundle/b3, request q3)'] },
          'attachment downloads': { audited: 70, missing: [] },
          'post-backs': { audited: 7, missing: ['ref-4 (DocumentReference/n4)'] },
        },
        laterRecords: { supplied: 1, reached: 0, postedAgain: 0, failures: ['ref-5 (DocumentReference/d5: not in record set b5)'] },
      }),
    );
    expect(result.ok).toBe(false);
    expect(result.failures).toEqual([
      'lost opinions (1): ref-1 (note n1)',
      'opinions delivered more than once (1): ref-2 (note n2)',
      'duplicated referrals (1): SOAK-1 (a, b)',
      'record-set reads without an AuditEvent (1): ref-3 (Bundle/b3, request q3)',
      'post-backs without an AuditEvent (1): ref-4 (DocumentReference/n4)',
      "records supplied later that did not reach the clinic's record set (1): ref-5 (DocumentReference/d5: not in record set b5)",
    ]);
  });

  it('a 5xx or a dead-lettered job with an injected cause passes; without one it fails', () => {
    const explained = clean({
      serverErrors: [{ at: '2026-01-01T00:00:00.000Z', call: 'GET /x (replica 0)', status: '503', explainedBy: 'postgres-restart' }],
      deadLettered: [{ job: 'assemble-record-set j1', explainedBy: 'ehr-binary-truncated' }],
    });
    expect(verdict(explained).ok).toBe(true);
    const unexplained = verdict(clean({ serverErrors: [{ at: '2026-01-01T00:00:00.000Z', call: 'GET /x (replica 0)', status: '500' }], deadLettered: [{ job: 'deliver-opinion j2' }] }));
    expect(unexplained.failures).toEqual([
      '5xx or refused calls without an injected cause (1): GET /x (replica 0) 500 at 2026-01-01T00:00:00.000Z',
      'dead-lettered jobs without an injected permanent fault (1): deliver-opinion j2',
    ]);
  });

  it('a service process that exited on its own fails the run, with the end of its log', () => {
    expect(verdict(clean({ crashes: [{ replica: 'replica 1', at: '2026-01-01T00:00:00.000Z', code: 1, tail: 'database gone' }] })).failures).toEqual([
      'service processes exited on their own (1): replica 1 at 2026-01-01T00:00:00.000Z (exit code 1)\ndatabase gone',
    ]);
  });

  it('referrals still open fail the run, with why', () => {
    expect(verdict(clean({ open: [{ referral: 'ref-9', why: 'timed out waiting for record assembly' }] })).failures).toEqual(['referrals still open (1): ref-9 (timed out waiting for record assembly)']);
  });

  it('percentiles by nearest rank; the table carries the figures', () => {
    expect(percentile([5, 1, 4, 2, 3], 50)).toBe(3);
    expect(percentile([5, 1, 4, 2, 3], 95)).toBe(5);
    expect(percentile([], 50)).toBeUndefined();
    const table = formatTable(clean({ deliveredTwice: ['r'], lost: ['s', 't'] }));
    expect(table).toContain('| opinions delivered exactly once / twice / lost | 8 / 1 / 2 |');
    expect(table).toContain('| end-to-end p50 / p95 (intake to delivered or declined) | 2.0 s / 3.0 s |');
    expect(table).toContain('| largest tables | public.resource 3 MB (400 rows) |');
    expect(table).toContain("| records supplied later / reached the clinic's record set | 1 / 1 |");
    expect(table).toContain('| record-set reads / attachment downloads / post-backs: audited / missing | 10 / 0, 70 / 0, 8 / 0 |');
    expect(table).toContain('| 5xx by cause | none |');
  });
});
