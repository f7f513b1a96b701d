/**
 * Start-up time and idle memory of the two ways to start the service, measured in the same run:
 * the sources through tsx (`npm start`) and the compiled JavaScript (`npm run build`, then
 * `NODE_ENV=production npm start`, i.e. `node dist/main.js`).
 *
 *   npm run bench:startup                  # 5 runs of each, alternating; builds dist/ first
 *   npm run bench:startup -- --runs 10
 *
 * Start-up: from spawning the process to the first `200` from /readyz (polled every 20 ms).
 * Idle RSS: the process's resident set (/proc/PID/status VmRSS) 3 s after it became ready, no
 * requests in between. Both start on the example network with the embedded PGlite store in one
 * data directory, opened once beforehand (a first start also creates the database: seconds more);
 * with DATABASE_URL set, on a throwaway database created on that server (dropped afterwards). Prints medians (min-max) and the ratio
 * compiled / tsx of the medians. Linux only (reads /proc).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freshDatabase } from './bench/lib/postgres.ts';
import { runBench, tempDir } from './bench/lib/run.ts';
import { build } from './build.ts';

const ROOT = path.join(import.meta.dirname, '..');
const MODES = {
  tsx: ['--import', 'tsx', 'src/main.ts'],
  compiled: ['dist/main.js'],
} as const;
type Mode = keyof typeof MODES;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

function rssMb(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return kb / 1024;
}

async function once(mode: Mode, dataDir: string, databaseUrl: string | undefined): Promise<{ startMs: number; rssMb: number }> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, MODES[mode], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${mode} start exited with ${child.exitCode}`);
      const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const startMs = performance.now() - started;
    await new Promise((r) => setTimeout(r, 3_000));
    return { startMs, rssMb: rssMb(child.pid as number) };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const range = (xs: number[], digits: number) => `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');

await runBench('bench:startup', async () => {
  process.stdout.write('building dist/ ...\n');
  build();
  const dataDir = await tempDir('so-bench-startup-');
  const databaseUrl = process.env.DATABASE_URL ? await freshDatabase(process.env.DATABASE_URL, `so_bench_startup_${process.pid}`) : undefined;
  process.stdout.write('creating the database (first start, not counted) ...\n');
  await once('compiled', dataDir, databaseUrl);
  const results: Record<Mode, { startMs: number; rssMb: number }[]> = { tsx: [], compiled: [] };
  for (let i = 0; i < runs; i++) {
    // Alternating, in a different order each round, so drift on the machine hits both alike.
    for (const mode of (i % 2 ? ['compiled', 'tsx'] : ['tsx', 'compiled']) as Mode[]) {
      const r = await once(mode, dataDir, databaseUrl);
      results[mode].push(r);
      process.stdout.write(`run ${i + 1} ${mode.padEnd(8)} ready in ${(r.startMs / 1000).toFixed(2)} s, idle RSS ${r.rssMb.toFixed(0)} MB\n`);
    }
  }
  const start = (m: Mode) => results[m].map((r) => r.startMs / 1000);
  const rss = (m: Mode) => results[m].map((r) => r.rssMb);
  process.stdout.write(`\n| start | ready (s), median (min-max) | idle RSS (MB), median (min-max) |\n|---|---|---|\n`);
  for (const m of ['tsx', 'compiled'] as Mode[]) process.stdout.write(`| ${m} | ${median(start(m)).toFixed(2)} (${range(start(m), 2)}) | ${median(rss(m)).toFixed(0)} (${range(rss(m), 0)}) |\n`);
  process.stdout.write(`\nratio compiled / tsx (medians, ${runs} runs each, ${databaseUrl ? 'PostgreSQL' : 'PGlite'}): start-up ${(median(start('compiled')) / median(start('tsx'))).toFixed(2)}, idle RSS ${(median(rss('compiled')) / median(rss('tsx'))).toFixed(2)}\n`);
  return 0;
});
