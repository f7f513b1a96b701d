import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { emitFigures, evaluate, type Figure, formatTable } from '../../scripts/bench/lib/results.ts';

const intake: Figure = {
  bench: 'intake',
  name: 'intake req/s',
  value: 200,
  unit: 'req/s',
  baseline: { name: 'echo', value: 10_000 },
  target: { on: 'ratio', op: '>=', limit: 0.35, source: 'intake target' },
};

describe('bench result table', () => {
  it('computes the ratio to the baseline and misses a ratio target below its limit', () => {
    expect(evaluate(intake)).toEqual({ ...intake, ratio: 0.02, verdict: 'miss' });
  });

  it('passes a value target at its limit and keeps a ratio the bench computed itself', () => {
    const p99: Figure = { bench: 'intake', name: 'p99', value: 50, unit: 'ms', ratio: 7, baseline: { name: 'echo p99', value: 2 }, target: { on: 'value', op: '<=', limit: 50, source: 'intake target' } };
    expect(evaluate(p99)).toEqual({ ...p99, ratio: 7, verdict: 'pass' });
    expect(evaluate({ ...p99, value: 51 }).verdict).toBe('miss');
  });

  it('marks a figure without target with a dash and one that did not run (NaN) as a miss', () => {
    expect(evaluate({ bench: 'x', name: 'cpu', value: 1, unit: 'µs' })).toEqual({ bench: 'x', name: 'cpu', value: 1, unit: 'µs', ratio: undefined, verdict: '—' });
    expect(evaluate({ bench: 'x', name: 'failed', value: NaN, unit: '', target: { on: 'value', op: '>=', limit: 0, source: 'ran' } }).verdict).toBe('miss');
  });

  it('prints one Markdown row per figure: value, baseline, ratio, target and result', () => {
    expect(formatTable([intake]).split('\n')).toEqual([
      '| bench | figure | value | baseline (same run) | ratio | target | result |',
      '|---|---|---|---|---|---|---|',
      '| intake | intake req/s | 200 req/s | 10,000 req/s (echo) | 2.0 % | ratio ≥ 35.0 % (intake target) | **miss** |',
    ]);
  });

  it('prints counts as integers and small measurements with two decimals', () => {
    const counted: Figure = { bench: 'delivery', name: 'exactly once', value: 50, unit: 'of 50', target: { on: 'value', op: '>=', limit: 50, source: 'delivery target' } };
    expect(formatTable([counted, { bench: 'x', name: 'p99', value: 2.5, unit: 'ms', baseline: { name: 'echo', value: 12.25 } }]).split('\n').slice(2)).toEqual([
      '| delivery | exactly once | 50 of 50 | — | — | ≥ 50 of 50 (delivery target) | pass |',
      '| x | p99 | 2.50 ms | 12.3 ms (echo) | 20.4 % |  | — |',
    ]);
  });

  it('appends the figures as JSON lines to the runner file and prints the table', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-results-'));
    const file = path.join(dir, 'figures.jsonl');
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      emitFigures([intake], file);
      emitFigures([{ ...intake, bench: 'again' }], file);
      expect(write).toHaveBeenCalledWith(`\n${formatTable([intake])}\n`);
    } finally {
      write.mockRestore();
    }
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Figure);
    expect(lines).toEqual([intake, { ...intake, bench: 'again' }]);
    rmSync(dir, { recursive: true, force: true });
  });
});
