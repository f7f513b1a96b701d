/**
 * `npm run bench:intake`: the real intake path `POST /second-opinions`
 * (bearer verification, zod, profile validation, one transaction) against, in the same run:
 *
 * - the raw-insert baseline, the true limit: the very rows one intake writes (read back from
 *   the service after a real intake: intake key, 5 resources, 5 history rows, the job), written
 *   again with fresh ids by a bare client over as many connections, each copy in one
 *   transaction (scripts/bench/raw-insert-server.ts). On PostgreSQL, and on PGlite (the service
 *   on PGlite against the same inserts on PGlite in a process);
 * - an Express 5 JSON echo of the same requests (same size, same headers): what HTTP and JSON
 *   cost on their own.
 *
 * Every server and writer is a child process; autocannon loads the HTTP ones from here. After
 * a warm-up of each, phases are interleaved (echo, raw, intake, ... per round) for a fixed
 * duration each, so drift on a shared machine hits all alike. Ratios are the median of the
 * per-round ratios; p99s are pooled over the measured rounds. Every intake request carries a
 * unique requestId (a fixed-width counter), so none is an idempotent replay.
 *
 * Target (on PostgreSQL, 10 connections): intake ≥ 50 % of the raw-insert rate, p99 ≤ 50 ms.
 * Exits non-zero only with --check (target missed, or any failure or store mismatch).
 *
 *   npm run bench:intake [-- --duration 10 --warmup 5 --rounds 3 --connections 10 --stores postgres,pglite --check]
 *   npm run bench:intake -- --cpu-prof          where the service's CPU time goes (on PostgreSQL)
 *   npm run bench:intake -- --compare ../other  A/B: also the service of another checkout
 *                                               (e.g. a `git worktree` of main), on PostgreSQL
 *
 * Env: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test; a schema bench_<hex> per
 * service or writer is created and dropped), BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS,
 * BENCH_CONNECTIONS, BENCH_STORES.
 */
import { existsSync, readFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { killAllNow } from './bench/children.ts';
import { type CpuProfile, formatSummary, profileWindow, summariseProfile } from './bench/cpu-profile.ts';
import { emitIntakeFigures, type Phase, printTable, ratioTo, sayPhase, verdict } from './bench/intake-report.ts';
import { bodyFactory, dumpRows, echoTarget, REFERRER_CLIENT, startEcho, startIntake, startRaw, type Store, type Target } from './bench/intake-targets.ts';
import { numberOption, say, sleep } from './bench/lib/common.ts';
import { monoMs } from './bench/lib/http.ts';
import { postgresVersion } from './bench/lib/postgres.ts';
import { onCleanup, runBench } from './bench/lib/run.ts';
import { getAccessToken } from '../test/support/tokens.ts';

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string' },
    warmup: { type: 'string' },
    rounds: { type: 'string' },
    connections: { type: 'string' },
    stores: { type: 'string' },
    check: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'prof-dir': { type: 'string' },
    compare: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  say('npm run bench:intake [-- --duration S --warmup S --rounds N --connections N --stores postgres,pglite --check --cpu-prof --prof-dir DIR --compare CHECKOUT]');
  say('env: DATABASE_URL, BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS, BENCH_CONNECTIONS, BENCH_STORES');
  process.exit(0);
}
const stores = (flags.stores ?? process.env.BENCH_STORES ?? 'postgres,pglite').split(',').map((s) => s.trim());
if (!stores.includes('postgres') || stores.some((s) => s !== 'postgres' && s !== 'pglite')) throw new Error('--stores: postgres (required: the target is on it), optionally pglite');
const opts = {
  duration: numberOption('--duration', flags.duration ?? process.env.BENCH_DURATION, 10, 1),
  warmup: numberOption('--warmup', flags.warmup ?? process.env.BENCH_WARMUP, 5, 0),
  rounds: Math.round(numberOption('--rounds', flags.rounds ?? process.env.BENCH_ROUNDS, 3, 1)),
  connections: Math.round(numberOption('--connections', flags.connections ?? process.env.BENCH_CONNECTIONS, 10, 1)),
  stores: stores as Store[],
  check: flags.check ?? false,
  cpuProf: flags['cpu-prof'] ?? false,
  profDir: flags['prof-dir'],
  compare: flags.compare ? path.resolve(flags.compare) : undefined,
};
if (opts.compare && !existsSync(path.join(opts.compare, 'src', 'service.ts'))) throw new Error(`--compare ${opts.compare}: no src/service.ts there`);
const databaseUrl = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const loadAverage = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const short = (store: Store) => (store === 'postgres' ? 'pg' : 'pglite');

async function main(): Promise<number> {
  say(`bench:intake  node ${process.version}  ${opts.connections} connections  warm-up ${opts.warmup} s  ${opts.rounds} rounds × ${opts.duration} s  stores ${opts.stores.join(', ')}${opts.compare ? ` (+ compare ${opts.compare})` : ''}, interleaved; load average ${loadAverage()}`);
  const version = await postgresVersion(databaseUrl);
  if (!version) return 1;
  say(`PostgreSQL ${version} at ${databaseUrl.replace(/\/\/[^@/]*@/, '//…@')}`);
  onCleanup('kill what is left', killAllNow);

  const body = bodyFactory();
  const http = { connections: opts.connections, nextBody: body.next };
  const [echoChild, ...intakes] = await Promise.all([
    startEcho(),
    ...opts.stores.map((store) => startIntake(`intake ${short(store)}`, store, databaseUrl, http)),
    ...(opts.compare ? [startIntake('compare', 'postgres', databaseUrl, { ...http, root: opts.compare })] : []),
  ]);
  const intakePg = intakes[0] as Target;
  const echo = echoTarget(echoChild, { ...http, token: () => getAccessToken(intakePg.child.url, REFERRER_CLIENT) });

  // One request each before any load: a misconfiguration shows here, not as a table of 4xx. The
  // first referral of each store is also the one the raw-insert baseline copies.
  const raws = new Map<Store, Target>();
  const probes: string[] = [];
  for (const t of [echo, ...intakes]) {
    const token = await getAccessToken((t.kind === 'echo' ? intakePg : t).child.url, REFERRER_CLIENT);
    const res = await fetch(`${t.child.url}${t.child.path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: body.next() });
    const text = await res.text();
    const expected = t.kind === 'echo' ? 200 : 201;
    if (res.status !== expected) throw new Error(`${t.label}: expected HTTP ${expected}, got ${res.status}: ${text.slice(0, 500)}`);
    probes.push(`${t.key} ${res.status} (${text.length} B back)`);
    if (t.kind === 'intake' && t.key !== 'compare' && t.store) {
      const rowsFile = await dumpRows(t, (JSON.parse(text) as { id: string }).id);
      raws.set(t.store, await startRaw(`raw ${short(t.store)}`, t.store, databaseUrl, opts.connections, rowsFile));
    }
  }
  say(`probe: ${probes.join(', ')}; request ${body.size} bytes of JSON, unique requestId each, bearer token of ${REFERRER_CLIENT}`);
  const targets: Target[] = [echo];
  for (const store of opts.stores) targets.push(raws.get(store) as Target, intakes.find((t) => t.store === store && t.key !== 'compare') as Target);
  if (opts.compare) targets.push(intakes.find((t) => t.key === 'compare') as Target);
  for (const t of targets) say(`  ${t.key.padEnd(13)} pid ${t.child.pid}  ${t.label}  ${t.child.url}${t.child.path}  ${t.child.info.schema ? `schema ${String(t.child.info.schema)}` : ''}`);

  const phases: Phase[] = [];
  const runPhase = async (t: Target, round: number, seconds: number) => {
    const fromMs = monoMs();
    const phase: Phase = { ...(await t.measure(seconds)), target: t, round, fromMs, toMs: monoMs() };
    phases.push(phase);
    sayPhase(phase);
    await sleep(500); // let requests still in flight finish before the next target is loaded
  };
  if (opts.warmup > 0) for (const t of targets) await runPhase(t, 0, opts.warmup);
  const profileFile = opts.cpuProf ? path.join(opts.profDir ?? tmpdir(), `bench-intake-service-${Date.now()}.cpuprofile`) : undefined;
  if (profileFile) await intakePg.child.command('prof-start 500');
  for (let round = 1; round <= opts.rounds; round++) for (const t of targets) await runPhase(t, round, opts.duration);
  if (profileFile) await intakePg.child.command(`prof-stop ${profileFile}`, 60_000);

  // Sanity: every 201 is a real referral in the store, none a replay; every raw commit is there.
  const sanity: { ok: boolean; text: string }[] = [];
  for (const t of targets.filter((x) => x.kind !== 'echo')) {
    const counts = (await t.child.command('counts')) as Record<string, number>;
    const mine = phases.filter((p) => p.target === t);
    const done = mine.reduce((s, p) => s + p.ok, 0) + (t.kind === 'intake' ? 1 : 0); // + the probe
    const referrals = counts.ServiceRequest ?? NaN;
    const rows = `${referrals} referrals, ${counts.resource} resources, ${counts.resource_history} history rows, ${counts.job} jobs`;
    if (t.kind === 'raw') {
      const ok = referrals === done && counts.intake_request === done && counts.resource === 5 * done && counts.job === done;
      sanity.push({ ok, text: `${t.key}: ${done} commits; store: ${rows} -> ${ok ? 'OK' : 'MISMATCH'}` });
      continue;
    }
    const replays = mine.reduce((s, p) => s + (p.status['200'] ?? 0), 0);
    // autocannon stops counting at the deadline; the requests then in flight still commit.
    const allowance = opts.connections * mine.length;
    const ok = referrals === counts.intake_request && referrals >= done && referrals - done <= allowance && replays === 0;
    sanity.push({ ok, text: `${t.key}: ${done} × 201 (incl. warm-up, probe), ${replays} replays; store: ${rows} -> ${ok ? 'OK' : 'MISMATCH'}${referrals > done ? ` (+${referrals - done} in flight at a deadline, ≤ ${allowance} possible)` : ''}` });
  }
  const memory = await Promise.all(targets.map(async (t) => `${t.key} ${(Number((await t.child.command('usage')).rss) / 2 ** 20).toFixed(0)} MB`));
  await Promise.all(targets.map((t) => t.child.stop()));

  say();
  say(`results: ${opts.connections} connections, ${opts.rounds} × ${opts.duration} s each, request ${body.size} B; load average now ${loadAverage()} (${cpus().length} cores)`);
  printTable(phases, targets, (t) => (t.kind === 'intake' ? (t.key === 'compare' ? intakePg : raws.get(t.store as Store)) : t.kind === 'raw' ? echo : undefined));
  say(`  intake pg ÷ echo per round: ${ratioTo(phases, intakePg, echo).perRound.map((r) => `${(r * 100).toFixed(1)}%`).join(', ')}`);
  say();
  say(`RSS after the run: ${memory.join(', ')}`);
  const failures = phases.reduce((s, p) => s + p.failures, 0);
  say(`failures: ${failures} (non-2xx, socket errors, timeouts, failed transactions) over all phases`);
  for (const s of sanity) say(`sanity ${s.text}`);
  const v = verdict(phases, intakePg, raws.get('postgres') as Target, failures === 0 && sanity.every((s) => s.ok));
  say();
  say(v.line);
  emitIntakeFigures(phases, targets, opts.connections);

  if (profileFile) {
    // The intake phases only: between them the service idles (but for its background jobs) while the others are loaded.
    const measured = phases.filter((p) => p.target === intakePg && p.round > 0);
    const profile = profileWindow(JSON.parse(readFileSync(profileFile, 'utf8')) as CpuProfile, measured.map((p) => [p.fromMs * 1000, p.toMs * 1000] as const));
    say();
    if (profile) say(formatSummary(summariseProfile(profile, 25), measured.reduce((s, p) => s + p.ok, 0)));
    say(`(profile: ${profileFile}, open in Chrome DevTools; samples of the measured intake phases only; the sampler ran during them, so their figures are a little low)`);
  }
  return opts.check && !v.met ? 1 : 0;
}

await runBench('bench:intake', main);
