/**
 * `npm run bench:intake` (issue 2 §10): in one run, an Express 5 JSON-echo baseline and the
 * real intake path `POST /second-opinions` (bearer verification, zod, profile validation, one
 * PostgreSQL transaction), each server in its own child process, load from autocannon here.
 *
 * After a warm-up of each, measurements are interleaved (baseline, intake, baseline, intake,
 * ...) for a fixed duration each, so drift on a shared machine hits both alike; the ratio is
 * the median of the per-round ratios, the p99 is taken from the pooled latency histogram of
 * all measured intake rounds. Every intake request carries a unique requestId (a counter,
 * fixed width: the body size never changes), so none is an idempotent replay. The baseline
 * receives the same requests (same size, same headers).
 *
 * Target: intake >= 35% of baseline requests/s and intake p99 <= 50 ms at 10 connections.
 * Prints a verdict; exits non-zero only with --check (target missed, or any non-2xx/error).
 *
 *   npm run bench:intake [-- --duration 10 --warmup 5 --rounds 3 --connections 10 --check]
 *   npm run bench:intake -- --cpu-prof          where the service's CPU time goes
 *   npm run bench:intake -- --compare ../other  A/B: also the service of another checkout
 *                                               (e.g. a `git worktree` of main), interleaved
 *
 * Env: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test; a schema bench_<hex> per
 * service is created and dropped), BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS, BENCH_CONNECTIONS.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { makeSecondOpinionRequest } from '../test/support/referrals.ts';
import { getAccessToken } from '../test/support/tokens.ts';
import { killAllNow, type ServerChild, spawnServer } from './bench/children.ts';
import { type CpuProfile, formatSummary, summariseProfile } from './bench/cpu-profile.ts';
import { freePort, median, numberOption, say, sleep } from './bench/lib/common.ts';
import { dropSchemaAtCleanup, postgresVersion } from './bench/lib/postgres.ts';
import { load, mergeResults, type RawResult } from './bench/lib/load.ts';
import { emitFigures } from './bench/lib/results.ts';
import { onCleanup, runBench, tempDir } from './bench/lib/run.ts';
import { childEnv, serviceEnv } from './bench/lib/service-env.ts';

const TARGET_RATIO = 0.35;
const TARGET_P99_MS = 50;
const REFERRER_CLIENT = 'st-olaf-ehr';

// ---------------------------------------------------------------- options
const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string' },
    warmup: { type: 'string' },
    rounds: { type: 'string' },
    connections: { type: 'string' },
    check: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'prof-dir': { type: 'string' },
    compare: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write(
    'npm run bench:intake [-- --duration S --warmup S --rounds N --connections N --check --cpu-prof --prof-dir DIR --compare CHECKOUT]\n' +
      'env: DATABASE_URL, BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS, BENCH_CONNECTIONS\n',
  );
  process.exit(0);
}
const opts = {
  duration: numberOption('--duration', flags.duration ?? process.env.BENCH_DURATION, 10, 1),
  warmup: numberOption('--warmup', flags.warmup ?? process.env.BENCH_WARMUP, 5, 0),
  rounds: Math.round(numberOption('--rounds', flags.rounds ?? process.env.BENCH_ROUNDS, 3, 1)),
  connections: Math.round(numberOption('--connections', flags.connections ?? process.env.BENCH_CONNECTIONS, 10, 1)),
  check: flags.check ?? false,
  cpuProf: flags['cpu-prof'] ?? false,
  profDir: flags['prof-dir'],
  compare: flags.compare ? path.resolve(flags.compare) : undefined,
};
if (opts.compare && !existsSync(path.join(opts.compare, 'src', 'service.ts'))) {
  throw new Error(`--compare ${opts.compare}: no src/service.ts there`);
}
const databaseUrl = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

// ---------------------------------------------------------------- helpers
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

/** A fixed-size body whose requestId is a zero-padded counter: unique per request, same length. */
function bodyFactory(): { next: () => string; size: number } {
  const tag = `BENCH-${randomBytes(4).toString('hex')}-`;
  const placeholder = `${tag}${'#'.repeat(10)}`;
  const json = JSON.stringify(makeSecondOpinionRequest({ requestId: placeholder }));
  const at = json.indexOf(placeholder);
  const prefix = json.slice(0, at) + tag;
  const suffix = json.slice(at + placeholder.length);
  let counter = 0;
  return { next: () => `${prefix}${String(++counter).padStart(10, '0')}${suffix}`, size: Buffer.byteLength(json) };
}

interface Usage {
  rss: number;
  heapUsed: number;
  cpuMicros: number;
  at: number;
}

/** One server under test. */
interface Target {
  key: string;
  label: string;
  child: ServerChild;
  /** Intake services only: their own schema and token. */
  schema?: string;
  token?: string;
  expectedStatus: number;
}

interface Phase {
  target: Target;
  round: number; // 0 = warm-up
  raw: RawResult;
  rps: number;
  p50: number;
  p99: number;
  /** Server process CPU time (user + system) per completed request, µs. */
  cpuPerRequest: number;
  /** Server process CPU time / wall time during the phase (1 = one core busy). */
  cpuBusy: number;
  status: Record<string, number>;
}

// ---------------------------------------------------------------- servers
const children: ServerChild[] = [];

async function startIntake(key: string, label: string, root: string | undefined): Promise<Target> {
  const schema = `bench_${randomBytes(5).toString('hex')}`;
  dropSchemaAtCleanup(databaseUrl, schema); // the child creates it; dropped whatever happens from here on
  const dataDir = await tempDir('bench-intake-');
  const env = childEnv({
    ...serviceEnv({ port: await freePort(), dataDir, databaseUrl, logLevel: 'silent' }),
    BENCH_SCHEMA: schema,
    ...(root ? { BENCH_SERVICE_ROOT: root } : {}),
  });
  const child = await spawnServer(label, 'scripts/bench/intake-server.ts', { env });
  children.push(child);
  onCleanup(`stop the ${label}`, () => child.stop(5000));
  return { key, label, child, schema, expectedStatus: 201 };
}

// ---------------------------------------------------------------- main
async function main(): Promise<number> {
  const order = opts.compare ? 'baseline, intake, compare' : 'baseline, intake';
  say(`bench:intake  node ${process.version}  ${opts.connections} connections  warm-up ${opts.warmup} s  ${opts.rounds} rounds × ${opts.duration} s (${order}, interleaved)`);

  const version = await postgresVersion(databaseUrl);
  if (!version) return 1;
  say(`PostgreSQL ${version} at ${databaseUrl.replace(/\/\/[^@/]*@/, '//…@')}`);
  onCleanup('kill what is left', killAllNow);

  const body = bodyFactory();
  const echoChild = spawnServer('echo baseline', 'scripts/bench/echo-server.ts', { env: { ...process.env, NODE_ENV: 'development' } }).then((c) => {
    children.push(c);
    onCleanup('stop the echo server', () => c.stop(5000));
    return c;
  });
  const started = await Promise.all([
    echoChild,
    startIntake('intake', 'intake service', undefined),
    ...(opts.compare ? [startIntake('compare', `intake service of ${opts.compare}`, opts.compare)] : []),
  ]);
  const [echo, ...intakes] = started as [ServerChild, ...Target[]];
  const baseline: Target = { key: 'baseline', label: 'echo baseline', child: echo, expectedStatus: 200 };
  const intake = intakes[0] as Target;
  const compare = intakes[1];
  const targets = [baseline, ...intakes];
  for (const t of targets) say(`  ${t.key.padEnd(8)} pid ${t.child.pid}  ${t.child.url}${t.child.path}${t.schema ? `  schema ${t.schema}, pool ${String(t.child.info.poolSize)}, src ${String(t.child.info.root)}` : ''}`);
  say(`request: ${body.size} bytes of JSON, unique requestId each, bearer token of ${REFERRER_CLIENT}`);

  const refreshToken = async (t: Target) => {
    if (t.schema) t.token = await getAccessToken(t.child.url, REFERRER_CLIENT);
  };
  const headersFor = (t: Target) => ({
    'content-type': 'application/json',
    accept: 'application/json',
    authorization: `Bearer ${(t.token ?? intake.token) as string}`,
  });

  // One request each before any load: a misconfiguration shows here, not as a table of 4xx.
  for (const t of intakes) await refreshToken(t);
  const probes: string[] = [];
  for (const t of targets) {
    const res = await fetch(`${t.child.url}${t.child.path}`, { method: 'POST', headers: headersFor(t), body: body.next() });
    const text = await res.text();
    if (res.status !== t.expectedStatus) throw new Error(`${t.label}: expected HTTP ${t.expectedStatus}, got ${res.status}: ${text.slice(0, 500)}`);
    probes.push(`${t.key} ${res.status} (${text.length} B back)`);
  }
  say(`probe: ${probes.join(', ')}`);

  const phases: Phase[] = [];
  const runPhase = async (t: Target, round: number, seconds: number) => {
    await refreshToken(t); // a fresh token per phase: none expires mid-run, whatever the duration
    const before = (await t.child.command('usage')) as unknown as Usage;
    const raw = await load({ url: `${t.child.url}${t.child.path}`, connections: opts.connections, seconds, headers: headersFor(t), nextBody: body.next });
    const after = (await t.child.command('usage')) as unknown as Usage;
    const merged = mergeResults([raw]);
    const status: Record<string, number> = {};
    for (const [code, s] of Object.entries(raw.statusCodeStats ?? {})) status[code] = s.count ?? 0;
    const phase: Phase = {
      target: t,
      round,
      raw,
      rps: raw['2xx'] / raw.duration,
      p50: merged.latency.p50,
      p99: merged.latency.p99,
      cpuPerRequest: (after.cpuMicros - before.cpuMicros) / Math.max(1, raw.totalCompletedRequests),
      cpuBusy: (after.cpuMicros - before.cpuMicros) / 1000 / (after.at - before.at),
      status,
    };
    phases.push(phase);
    const codes = Object.entries(status).map(([c, n]) => `${c}×${n}`).join(' ');
    const trouble = `${raw.errors ? ` errors×${raw.errors}` : ''}${raw.timeouts ? ` timeouts×${raw.timeouts}` : ''}`;
    say(
      `  ${round === 0 ? 'warm-up' : `round ${round}`.padEnd(7)}  ${t.key.padEnd(8)} ${phase.rps.toFixed(0).padStart(6)} req/s  p50 ${String(phase.p50).padStart(3)} ms  p99 ${String(phase.p99).padStart(3)} ms  ` +
        `server CPU ${phase.cpuPerRequest.toFixed(0).padStart(5)} µs/req (${(phase.cpuBusy * 100).toFixed(0)}% of a core)  [${codes}${trouble}]`,
    );
    await sleep(500); // let requests still in flight finish before the next server is loaded
  };

  if (opts.warmup > 0) for (const t of targets) await runPhase(t, 0, opts.warmup);
  const profileFile = opts.cpuProf ? path.join(opts.profDir ?? tmpdir(), `bench-intake-service-${Date.now()}.cpuprofile`) : undefined;
  let profiledRequests = 0;
  for (let round = 1; round <= opts.rounds; round++) {
    for (const t of targets) {
      if (profileFile && t === intake && round === 1) await intake.child.command('prof-start 500');
      await runPhase(t, round, opts.duration);
      if (profileFile && t === intake) profiledRequests += phases[phases.length - 1]!.raw.totalCompletedRequests;
    }
  }
  if (profileFile) await intake.child.command(`prof-stop ${profileFile}`, 60_000);

  const memory = new Map<Target, Usage>();
  for (const t of targets) memory.set(t, (await t.child.command('usage')) as unknown as Usage);

  // Sanity: every 201 is a real referral in the store, and none was a replay.
  const sanity = new Map<Target, { ok: boolean; text: string }>();
  for (const t of intakes) {
    const db = new pg.Client({ connectionString: databaseUrl, options: `-c search_path=${t.schema}` });
    await db.connect();
    const counts = await db.query<{ resource_type: string; n: string }>('SELECT resource_type, count(*) AS n FROM resource GROUP BY 1 ORDER BY 1');
    const keys = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM intake_request')).rows[0]?.n ?? 0);
    await db.end();
    const mine = phases.filter((p) => p.target === t);
    const created = mine.reduce((s, p) => s + (p.status['201'] ?? 0), 0) + 1; // + the probe
    const replays = mine.reduce((s, p) => s + (p.status['200'] ?? 0), 0);
    const serviceRequests = Number(counts.rows.find((r) => r.resource_type === 'ServiceRequest')?.n ?? 0);
    // autocannon stops counting at the deadline; the requests then in flight still commit.
    const allowance = opts.connections * mine.length;
    const ok = serviceRequests === keys && serviceRequests >= created && serviceRequests - created <= allowance && replays === 0;
    sanity.set(t, {
      ok,
      text:
        `${t.key}: ${created} × 201 (incl. warm-up, probe), ${replays} × 200 replays; store: ${counts.rows.map((r) => `${r.resource_type} ${r.n}`).join(', ')}, ` +
        `${keys} intake keys -> ${ok ? 'OK' : 'MISMATCH'}${serviceRequests > created ? ` (+${serviceRequests - created} committed after autocannon's deadline, ≤ ${allowance} possible)` : ''}`,
    });
  }

  await Promise.all(children.map((c) => c.stop()));

  // ------------------------------------------------------------ report
  const measured = (t: Target) => phases.filter((p) => p.target === t && p.round > 0);
  const base = measured(baseline);
  const ratiosOf = (t: Target) => measured(t).map((p, i) => p.rps / (base[i] as Phase).rps);
  const pooledRps = (ps: Phase[]) => ps.reduce((s, p) => s + p.raw['2xx'], 0) / ps.reduce((s, p) => s + p.raw.duration, 0);
  const pooledLatency = (t: Target) => mergeResults(measured(t).map((p) => p.raw)).latency;

  say();
  say(`results: ${opts.connections} connections, ${opts.rounds} × ${opts.duration} s each, request ${body.size} B`);
  const cols = [10, 10, 9, 9, 9, 10];
  const row = (cells: string[]) => say(`  ${cells.map((c, i) => (i === 0 ? c.padEnd(16) : c.padStart(cols[i - 1] ?? 10))).join('')}`);
  row(['', 'req/s', 'p50 ms', 'p99 ms', 'µs CPU', 'vs base']);
  for (const t of targets) {
    const ps = measured(t);
    const ratios = t === baseline ? [] : ratiosOf(t);
    ps.forEach((p, i) =>
      row([`${t.key} r${p.round}`, p.rps.toFixed(0), String(p.p50), String(p.p99), p.cpuPerRequest.toFixed(0), t === baseline ? '' : `${((ratios[i] as number) * 100).toFixed(1)}%`]),
    );
    const lat = pooledLatency(t);
    row([
      `${t.key} overall`,
      median(ps.map((p) => p.rps)).toFixed(0),
      String(lat.p50),
      String(lat.p99),
      median(ps.map((p) => p.cpuPerRequest)).toFixed(0),
      t === baseline ? '' : `${(median(ratios) * 100).toFixed(1)}%`,
    ]);
  }
  say('  (overall: median req/s, µs CPU and ratio over rounds; p50/p99 from the pooled histogram of all rounds.');
  say('   µs CPU: user+system CPU of that server process per completed request. vs base: intake req/s ÷ baseline req/s of the same round.)');
  if (compare) {
    const ab = measured(compare).map((p, i) => p.rps / (measured(intake)[i] as Phase).rps);
    say(`  compare ÷ intake: ${(median(ab) * 100).toFixed(1)}% req/s (median of rounds), pooled ${pooledRps(measured(compare)).toFixed(0)} vs ${pooledRps(measured(intake)).toFixed(0)} req/s`);
  }
  say();
  const mem = targets.map((t) => `${t.key} ${mb((memory.get(t) as Usage).rss)} (heap ${mb((memory.get(t) as Usage).heapUsed)})`).join(', ');
  say(`RSS after the run: ${mem}`);
  const non2xx = phases.reduce((s, p) => s + p.raw.non2xx, 0);
  const errors = phases.reduce((s, p) => s + p.raw.errors + p.raw.timeouts, 0);
  say(`responses: ${non2xx} non-2xx, ${errors} socket errors/timeouts over all phases`);
  for (const s of sanity.values()) say(`sanity ${s.text}`);

  const ratio = median(ratiosOf(intake));
  const p99 = pooledLatency(intake).p99;
  const okRatio = ratio >= TARGET_RATIO;
  const okP99 = p99 <= TARGET_P99_MS;
  const clean = non2xx === 0 && errors === 0 && [...sanity.values()].every((s) => s.ok);
  say();
  say(
    `verdict: intake/baseline ${(ratio * 100).toFixed(1)}% (target ≥ ${TARGET_RATIO * 100}%: ${okRatio ? 'met' : 'MISSED'}), ` +
      `intake p99 ${p99} ms (target ≤ ${TARGET_P99_MS} ms: ${okP99 ? 'met' : 'MISSED'})` +
      `${clean ? '' : ', RUN NOT CLEAN (non-2xx, errors or store mismatch above)'} => ${okRatio && okP99 && clean ? 'TARGET MET' : 'TARGET MISSED'}`,
  );

  const baseLat = pooledLatency(baseline);
  emitFigures([
    {
      bench: 'intake',
      name: `intake req/s, ${opts.connections} connections (median of rounds)`,
      value: median(measured(intake).map((p) => p.rps)),
      unit: 'req/s',
      baseline: { name: 'Express JSON echo', value: median(base.map((p) => p.rps)) },
      ratio,
      target: { on: 'ratio', op: '>=', limit: TARGET_RATIO, source: 'issue 2 §10; issue 13 §4 sets 50 % of a raw-insert baseline' },
    },
    {
      bench: 'intake',
      name: 'intake p99 latency',
      value: p99,
      unit: 'ms',
      baseline: { name: 'Express JSON echo p99', value: baseLat.p99 },
      target: { on: 'value', op: '<=', limit: TARGET_P99_MS, source: 'issue 13 §4' },
    },
    {
      bench: 'intake',
      name: 'server CPU per intake (median of rounds)',
      value: median(measured(intake).map((p) => p.cpuPerRequest)),
      unit: 'µs',
      baseline: { name: 'Express JSON echo', value: median(base.map((p) => p.cpuPerRequest)) },
    },
  ]);

  if (profileFile) {
    const profile = JSON.parse(readFileSync(profileFile, 'utf8')) as CpuProfile;
    say();
    say(formatSummary(summariseProfile(profile, 25), profiledRequests));
    say(`(profile: ${profileFile}, open in Chrome DevTools; the sampler ran during the measured intake rounds, so their figures are a little low)`);
  }

  return opts.check && !(okRatio && okP99 && clean) ? 1 : 0;
}

await runBench('bench:intake', main);
