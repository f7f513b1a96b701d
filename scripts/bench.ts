/**
 * `npm run bench`: runs every bench one after another, each in its own process
 * with its output in bench-results/<bench>.log, and prints ONE table of all their figures: the
 * figure, its baseline from the same run, the ratio, the target and pass/miss. The table is
 * also written as JSON to bench-results/latest.json (not committed) for comparison between runs.
 *
 *   npm run bench -- --quick          a smaller size of each bench (under 5 minutes on 2 cores)
 *   npm run bench                     the full sizes of docs/performance.md (about 4 minutes)
 *   npm run bench -- --only intake,records [--quick] [--check]
 *
 * Exit code: 1 when a bench failed to run; with --check also when a target is missed.
 * Env: DATABASE_URL as the benches read it.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { say } from './bench/lib/common.ts';
import { evaluate, type Figure, formatTable } from './bench/lib/results.ts';

interface BenchSpec {
  name: string;
  script: string;
  full: string[];
  quick: string[];
}

/** Each bench at its full size (the figures in docs/performance.md) and at the --quick size. */
const BENCHES: readonly BenchSpec[] = [
  { name: 'validator', script: 'scripts/bench-validator.ts', full: [], quick: ['--quick'] },
  { name: 'intake', script: 'scripts/bench-intake.ts', full: ['--duration', '8', '--rounds', '3'], quick: ['--duration', '3', '--warmup', '2', '--rounds', '2'] },
  { name: 'records', script: 'scripts/bench-records.ts', full: [], quick: ['--docs', '100', '--mib', '100'] },
  { name: 'delivery', script: 'scripts/bench-delivery.ts', full: ['--ehr-indexed'], quick: ['--ehr-indexed'] },
];

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    check: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  say('npm run bench [-- --quick --only NAME[,NAME] --check]');
  say(`benches: ${BENCHES.map((b) => b.name).join(', ')}`);
  process.exit(0);
}
const only = flags.only?.split(',').map((s) => s.trim());
const unknown = only?.filter((n) => !BENCHES.some((b) => b.name === n)) ?? [];
if (unknown.length) throw new Error(`--only: unknown bench(es) ${unknown.join(', ')}; known: ${BENCHES.map((b) => b.name).join(', ')}`);
const selected = BENCHES.filter((b) => !only || only.includes(b.name));

const ROOT = path.join(import.meta.dirname, '..');
const outDir = path.join(ROOT, 'bench-results');
mkdirSync(outDir, { recursive: true });

interface BenchRun {
  name: string;
  args: string[];
  exitCode: number | null;
  seconds: number;
  log: string;
}

/** Runs one bench script in its own Node process (this Node, tsx), its output to a log file. */
function runBench(spec: BenchSpec, figuresFile: string): Promise<BenchRun> {
  const args = flags.quick ? spec.quick : spec.full;
  const log = path.join(outDir, `${spec.name}.log`);
  const out = createWriteStream(log);
  const started = performance.now();
  const env: NodeJS.ProcessEnv = { ...process.env, BENCH_RESULTS_FILE: figuresFile };
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, ['--import', 'tsx', spec.script, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  const stop = () => child.kill('SIGINT'); // each bench cleans up its own children and databases on SIGINT
  process.once('SIGINT', stop);
  return new Promise((resolve) => {
    child.once('close', (code) => {
      process.off('SIGINT', stop);
      out.end();
      resolve({ name: spec.name, args, exitCode: code, seconds: (performance.now() - started) / 1000, log: path.relative(ROOT, log) });
    });
  });
}

const figuresFile = path.join(outDir, '.figures.jsonl');
rmSync(figuresFile, { force: true });
const startedAt = new Date();
say(`npm run bench${flags.quick ? ' --quick' : ''}: ${selected.map((b) => b.name).join(', ')}; node ${process.version}, ${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const runs: BenchRun[] = [];
for (const spec of selected) {
  say(`  ${spec.name.padEnd(10)} ${spec.script} ${(flags.quick ? spec.quick : spec.full).join(' ')} ...`);
  const run = await runBench(spec, figuresFile);
  runs.push(run);
  say(`  ${''.padEnd(10)} exit ${run.exitCode} after ${run.seconds.toFixed(0)} s (output: ${run.log})`);
}

const figures: Figure[] = existsSync(figuresFile)
  ? readFileSync(figuresFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Figure)
  : [];
rmSync(figuresFile, { force: true });
for (const run of runs) {
  if (run.exitCode !== 0 || !figures.some((f) => f.bench === run.name)) {
    figures.push({ bench: run.name, name: `did not finish (exit ${run.exitCode}; see ${run.log})`, value: NaN, unit: '', target: { on: 'value', op: '>=', limit: 0, source: 'a run to the end' } });
  }
}
const totalSeconds = runs.reduce((s, r) => s + r.seconds, 0);
const rows = figures.map(evaluate);
say();
say(formatTable(figures));
say();
say(`${rows.filter((r) => r.verdict === 'pass').length} pass, ${rows.filter((r) => r.verdict === 'miss').length} miss; ${totalSeconds.toFixed(0)} s in all; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const latest = path.join(outDir, 'latest.json');
writeFileSync(
  latest,
  `${JSON.stringify({ startedAt: startedAt.toISOString(), quick: flags.quick, node: process.version, cores: cpus().length, seconds: Math.round(totalSeconds), runs, figures: rows }, null, 2)}\n`,
);
say(`written: ${path.relative(ROOT, latest)}`);
const failed = runs.some((r) => r.exitCode !== 0);
process.exit(failed || (flags.check && rows.some((r) => r.verdict === 'miss')) ? 1 : 0);
