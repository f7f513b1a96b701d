/**
 * The report of `npm run bench:intake`: every phase, each target overall, the ratios of the
 * intake to its baselines (per round, then the median), the store sanity check, the verdict
 * against the targets, and the figures for the one table of `npm run bench`.
 */
import { median, say } from './lib/common.ts';
import { emitFigures, type Figure } from './lib/results.ts';
import { type Measured, pooledLatency, type Target } from './intake-targets.ts';

export const TARGET_RATIO = 0.5; // of the raw-insert baseline
export const TARGET_P99_MS = 50;

export interface Phase extends Measured {
  target: Target;
  round: number; // 0 = warm-up
  /** CLOCK_MONOTONIC ms at the start and end of the phase (the clock of CPU profiles). */
  fromMs: number;
  toMs: number;
}

export function sayPhase(p: Phase): void {
  const codes = Object.entries(p.status).map(([c, n]) => `${c}×${n}`).join(' ');
  const unit = p.target.kind === 'raw' ? 'tx/s ' : 'req/s';
  say(
    `  ${p.round === 0 ? 'warm-up' : `round ${p.round}`.padEnd(7)}  ${p.target.key.padEnd(13)} ${p.rps.toFixed(0).padStart(6)} ${unit}  p50 ${String(Math.round(p.p50)).padStart(3)} ms  p99 ${String(Math.round(p.p99)).padStart(3)} ms  ` +
      `CPU ${p.cpuPerOp.toFixed(0).padStart(5)} µs/op (${(p.cpuBusy * 100).toFixed(0)}% of a core)  [${codes}${p.failures ? ` failures×${p.failures}` : ''}]`,
  );
}

/** Per-round ratios of `t`'s rate to `base`'s (same round), their median. */
export function ratioTo(phases: readonly Phase[], t: Target, base: Target): { perRound: number[]; median: number } {
  const measured = (x: Target) => phases.filter((p) => p.target === x && p.round > 0);
  const b = measured(base);
  const perRound = measured(t).map((p, i) => p.rps / (b[i] as Phase).rps);
  return { perRound, median: median(perRound) };
}

export interface Summary {
  rps: number;
  p50: number;
  p99: number;
  cpuPerOp: number;
}

export function summarise(phases: readonly Phase[], t: Target): Summary {
  const ps = phases.filter((p) => p.target === t && p.round > 0);
  return { rps: median(ps.map((p) => p.rps)), ...pooledLatency(ps), cpuPerOp: median(ps.map((p) => p.cpuPerOp)) };
}

/** The table of every measured phase and each target overall; `baseOf` names the ratio's baseline. */
export function printTable(phases: readonly Phase[], targets: readonly Target[], baseOf: (t: Target) => Target | undefined): void {
  const cols = [10, 9, 9, 9, 9, 0];
  const row = (cells: string[]) => say(`  ${cells.map((c, i) => (i === 0 ? c.padEnd(22) : c.padStart(cols[i - 1] ?? 10))).join('')}`.trimEnd());
  row(['', 'per s', 'p50 ms', 'p99 ms', 'µs CPU', 'ratio']);
  for (const t of targets) {
    const base = baseOf(t);
    const ratios = base ? ratioTo(phases, t, base) : undefined;
    phases
      .filter((p) => p.target === t && p.round > 0)
      .forEach((p, i) => row([`${t.key} r${p.round}`, p.rps.toFixed(0), p.p50.toFixed(1), p.p99.toFixed(1), p.cpuPerOp.toFixed(0), ratios ? pct(ratios.perRound[i]) : '']));
    const s = summarise(phases, t);
    row([`${t.key} overall`, s.rps.toFixed(0), s.p50.toFixed(1), s.p99.toFixed(1), s.cpuPerOp.toFixed(0), ratios ? pct(ratios.median) : '', ratios ? ` of ${base?.key}` : '']);
  }
  say('  (overall: median per s, µs CPU and ratio over rounds; p50/p99 pooled over all rounds. per s: 2xx responses or committed transactions.');
  say('   µs CPU: user+system CPU of that process per operation (for the raw inserts: the client process only, not PostgreSQL).)');
}

const pct = (x: number | undefined) => (x === undefined ? '' : `${(x * 100).toFixed(1)}%`);

export interface Verdict {
  met: boolean;
  line: string;
}

/** The target on PostgreSQL: intake ≥ 50 % of the raw inserts, p99 ≤ 50 ms. */
export function verdict(phases: readonly Phase[], intake: Target, raw: Target, clean: boolean): Verdict {
  const ratio = ratioTo(phases, intake, raw).median;
  const { p99 } = summarise(phases, intake);
  const okRatio = ratio >= TARGET_RATIO;
  const okP99 = p99 <= TARGET_P99_MS;
  const met = okRatio && okP99 && clean;
  return {
    met,
    line:
      `verdict (PostgreSQL): intake ÷ raw inserts ${pct(ratio)} (target ≥ ${TARGET_RATIO * 100}%: ${okRatio ? 'met' : 'MISSED'}), ` +
      `intake p99 ${p99} ms (target ≤ ${TARGET_P99_MS} ms: ${okP99 ? 'met' : 'MISSED'})${clean ? '' : ', RUN NOT CLEAN (failures or store mismatch above)'} => ${met ? 'TARGET MET' : 'TARGET MISSED'}`,
  };
}

/** The figures of the one table: per store, intake against the raw inserts; the echo and CPU as today. */
export function emitIntakeFigures(phases: readonly Phase[], targets: readonly Target[], connections: number): void {
  const find = (kind: Target['kind'], store?: string) => targets.find((t) => t.kind === kind && (store === undefined || t.store === store) && t.key !== 'compare');
  const echo = find('echo') as Target;
  const figures: Figure[] = [];
  for (const store of ['postgres', 'pglite'] as const) {
    const intake = find('intake', store);
    const raw = find('raw', store);
    if (!intake || !raw) continue;
    const i = summarise(phases, intake);
    const r = summarise(phases, raw);
    const onPg = store === 'postgres';
    const source = 'docs/performance.md';
    figures.push(
      {
        bench: 'intake',
        name: `intake req/s on ${store}, ${connections} connections (median of rounds)`,
        value: i.rps,
        unit: 'req/s',
        baseline: { name: `raw inserts of the same rows, bare client, ${connections} connections, tx/s`, value: r.rps },
        ratio: ratioTo(phases, intake, raw).median,
        ...(onPg ? { target: { on: 'ratio', op: '>=', limit: TARGET_RATIO, source } } : {}),
      },
      {
        bench: 'intake',
        name: `intake p99 latency on ${store}`,
        value: i.p99,
        unit: 'ms',
        baseline: { name: 'raw inserts p99', value: r.p99 },
        ...(onPg ? { target: { on: 'value', op: '<=', limit: TARGET_P99_MS, source } } : {}),
      },
    );
    if (onPg) {
      figures.push(
        { bench: 'intake', name: 'intake req/s on postgres against the Express JSON echo', value: i.rps, unit: 'req/s', baseline: { name: 'Express JSON echo', value: summarise(phases, echo).rps }, ratio: ratioTo(phases, intake, echo).median },
        { bench: 'intake', name: 'service CPU per intake on postgres (median of rounds)', value: i.cpuPerOp, unit: 'µs', baseline: { name: 'Express JSON echo', value: summarise(phases, echo).cpuPerOp } },
      );
    }
  }
  emitFigures(figures);
}
