import { describe, expect, it } from 'vitest';
import { explain } from '../../scripts/soak/checks.ts';
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
    disclosures: 10,
    missingAudit: [],
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

  it('a call is explained by a fault in force at its time (a second of slack before the start), not after it ended', () => {
    const windows = [{ kind: 'postgres-restart' as const, start: 10_000, end: 20_000 }];
    expect(explain(windows, 9_500)).toBe('postgres-restart');
    expect(explain(windows, 15_000)).toBe('postgres-restart');
    expect(explain(windows, 20_001)).toBeUndefined();
    expect(explain(windows, 15_000, (w) => w.kind.startsWith('ehr-'))).toBeUndefined();
  });
});

describe('soak verdict', () => {
  it('a clean run passes', () => {
    expect(verdict(clean())).toEqual({ ok: true, failures: [] });
  });

  it('fails on a lost or twice-delivered opinion, a duplicated referral, an unaudited disclosure, naming the referrals', () => {
    const result = verdict(clean({ lost: ['ref-1 (note n1)'], deliveredTwice: ['ref-2 (note n2)'], duplicatedReferrals: ['SOAK-1 (a, b)'], missingAudit: ['ref-3'] }));
    expect(result.ok).toBe(false);
    expect(result.failures).toEqual([
      'lost opinions (1): ref-1 (note n1)',
      'opinions delivered more than once (1): ref-2 (note n2)',
      'duplicated referrals (1): SOAK-1 (a, b)',
      'disclosures without an AuditEvent (1): ref-3',
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
  });
});
