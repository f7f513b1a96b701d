/**
 * The one result table of the benches: each figure with its baseline from the same run, the
 * ratio, the target and pass/miss. A bench hands its figures to `emitFigures`, which prints
 * them and, when run by `npm run bench` (scripts/bench.ts), appends them as JSON lines to the
 * file named by BENCH_RESULTS_FILE so the runner can put every bench in one table.
 */
import { appendFileSync } from 'node:fs';

export interface Target {
  /** What the target is checked against: the figure itself or its ratio to the baseline. */
  on: 'value' | 'ratio';
  op: '>=' | '<=';
  limit: number;
  /** Where the target comes from, e.g. 'docs/performance.md'. */
  source: string;
}

export interface Figure {
  bench: string;
  name: string;
  value: number;
  unit: string;
  /** The same measurement of the baseline, same run, same unit. */
  baseline?: { name: string; value: number };
  /** value ÷ baseline unless the bench computes it otherwise (e.g. a median of per-round ratios). */
  ratio?: number;
  target?: Target;
}

export interface Row extends Figure {
  ratio?: number;
  verdict: 'pass' | 'miss' | '—';
}

/** Fills in the ratio (value ÷ baseline) and the verdict against the target. */
export function evaluate(figure: Figure): Row {
  const ratio = figure.ratio ?? (figure.baseline && figure.baseline.value !== 0 ? figure.value / figure.baseline.value : undefined);
  const t = figure.target;
  if (!t) return { ...figure, ratio, verdict: '—' };
  const measured = t.on === 'ratio' ? ratio : figure.value;
  const ok = measured !== undefined && Number.isFinite(measured) && (t.op === '>=' ? measured >= t.limit : measured <= t.limit);
  return { ...figure, ratio, verdict: ok ? 'pass' : 'miss' };
}

function number(x: number): string {
  if (!Number.isFinite(x)) return '—';
  const abs = Math.abs(x);
  return Number.isInteger(x) || abs >= 100 ? Math.round(x).toLocaleString('en-US') : abs >= 10 ? x.toFixed(1) : x.toFixed(2);
}

const withUnit = (x: number, unit: string): string => (unit && Number.isFinite(x) ? `${number(x)} ${unit}` : number(x));

export function formatRatio(ratio: number | undefined): string {
  if (ratio === undefined || !Number.isFinite(ratio)) return '—';
  return ratio >= 10 ? `×${ratio.toFixed(0)}` : ratio >= 2 ? `×${ratio.toFixed(1)}` : `${(ratio * 100).toFixed(1)} %`;
}

export function formatTarget(t: Target | undefined, unit: string): string {
  if (!t) return '';
  const limit = t.on === 'ratio' ? formatRatio(t.limit) : withUnit(t.limit, unit);
  return `${t.on === 'ratio' ? 'ratio ' : ''}${t.op === '>=' ? '≥' : '≤'} ${limit} (${t.source})`;
}

/** The table as Markdown: readable in a terminal and pasteable into docs/performance.md. */
export function formatTable(figures: readonly Figure[]): string {
  const rows = figures.map(evaluate);
  const lines = [
    '| bench | figure | value | baseline (same run) | ratio | target | result |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) =>
      [
        r.bench,
        r.name,
        withUnit(r.value, r.unit),
        r.baseline ? `${withUnit(r.baseline.value, r.unit)} (${r.baseline.name})` : '—',
        formatRatio(r.ratio),
        formatTarget(r.target, r.unit),
        r.verdict === 'pass' ? 'pass' : r.verdict === 'miss' ? '**miss**' : '—',
      ].join(' | '),
    ).map((l) => `| ${l} |`),
  ];
  return lines.join('\n');
}

/** Prints a bench's figures as a table and hands them to `npm run bench` when it runs the bench. */
export function emitFigures(figures: readonly Figure[], file = process.env.BENCH_RESULTS_FILE): void {
  process.stdout.write(`\n${formatTable(figures)}\n`);
  if (file) appendFileSync(file, figures.map((f) => `${JSON.stringify(f)}\n`).join(''));
}
