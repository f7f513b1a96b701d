/**
 * `npm run bench:delivery`: on PostgreSQL, the time from an opinion's submission
 * (`POST /consults/{taskId}/opinion`) to the consult note's arrival on the referring EHR (the
 * sandbox), for N opinions (default 200) submitted at once: p50, p95, max and throughput,
 * against a baseline measured in the same run. Target: p95 ≤ 1 s.
 *
 * - The sandbox EHR runs in a child process (scripts/bench/delivery-sandbox.ts) that reports,
 *   over IPC, the instant each DocumentReference create finished (the response written), keyed
 *   by the identifier of its `If-None-Exist`. All times are CLOCK_MONOTONIC, shared by every
 *   process of the machine.
 * - The service runs in this process (`startService` + `loadConfig`, LOG_LEVEL silent) on a
 *   fresh schema `bench_delivery_<pid>_<hex>` of DATABASE_URL's database (pg-boss in
 *   `<schema>_pgboss`); both are dropped at the end. Its network file points the referrer
 *   st-olaf at the sandbox.
 * - Setup (not timed): N referrals (one consultant: lakeside-consults), their record sets
 *   assembled, each Task accepted and started. Setup runs a first service instance that polls
 *   its queues every 0.5 s (assembly is queued too); the measured instance is then started on
 *   the same schema with the options under test (default: the service's own).
 * - Warm-up: W opinions (default 2) delivered end to end before anything is timed.
 * - Baseline: the warm-up's consult note as the EHR stored it, cloned N times with fresh
 *   identifiers (same size), POSTed at once with conditional create (If-None-Exist) and the
 *   same bearer flow, straight to a fresh sandbox; timed from each POST's start to the same
 *   arrival event. Measured before and after the delivery run; ratios use their mean.
 * - Delivery: all N opinions submitted at once; submit→arrival per opinion; throughput =
 *   N / (last arrival − first submission). Where the time goes comes from pg-boss's job rows
 *   (started_on): submit response → job picked up → document arrived.
 * - Correctness: exactly one DocumentReference per opinion on the sandbox (and one
 *   Communication), every delivery row `delivered`; otherwise the run fails (exit 1).
 *
 *   npm run bench:delivery [-- --opinions 200 --warmup 2 --polling S --delivery-work JSON --setup-concurrency 8 --timeout S --check]
 *
 * Env (flags win): OPINIONS, WARMUP, DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
 * JOB_POLLING_INTERVAL_SECONDS (StartOptions.jobPollingIntervalSeconds of the measured service),
 * DELIVERY_WORK_OPTIONS (EXPERIMENT: JSON merged into pg-boss `work()` options of the
 * deliver-opinion queue, e.g. '{"localConcurrency":16}'; not the service as shipped),
 * EHR_INDEXED=1 / --ehr-indexed (every sandbox, baselines included, answers identifier
 * conditional creates from an index instead of scanning every stored document: what an EHR that
 * indexes identifiers costs; see scripts/bench/delivery-sandbox.ts), SETUP_CONCURRENCY,
 * BENCH_TIMEOUT_SECONDS. `--cpu-prof` profiles this process (the service) over the timed run. Exit codes: 0 ran (1 with --check and the target
 * missed), 1 failed or incorrect, 2 PostgreSQL not reachable.
 */
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { DocumentReference } from '@medplum/fhirtypes';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { type Config, loadConfig } from '../src/config/config.ts';
import { SYSTEM } from '../src/fhir/constants.ts';
import { QUEUE } from '../src/jobs/queues.ts';
import { createLogger } from '../src/log/logger.ts';
import { type RunningService, type StartOptions, startService } from '../src/service.ts';
import { openDatabase } from '../src/store/database.ts';
import { writeSandboxNetwork } from '../test/support/example-network.ts';
import { checkDeliveries, finalReport, jobTimings, printProfile } from './bench/delivery-report.ts';
import { type BaselineResult, clearTokens, configure, fmtMs, runBaseline, setUpReferrals, submitAndWait, until } from './bench/delivery-runs.ts';
import { freePort, mean, numberOption, pct, say, sleep, type Stats, stats } from './bench/lib/common.ts';
import { agent } from './bench/lib/http.ts';
import { dropSchemaAtCleanup, postgresVersion } from './bench/lib/postgres.ts';
import { startProfiler } from './bench/lib/profiler.ts';
import { onCleanup, runBench, tempDir } from './bench/lib/run.ts';
import { type SandboxChild, startSandboxProcess } from './bench/lib/sandbox-process.ts';
import { serviceEnv } from './bench/lib/service-env.ts';

// ---------------------------------------------------------------- options
const { values: flags } = parseArgs({
  options: {
    opinions: { type: 'string' },
    warmup: { type: 'string' },
    polling: { type: 'string' },
    'delivery-work': { type: 'string' },
    'setup-concurrency': { type: 'string' },
    timeout: { type: 'string' },
    'ehr-indexed': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    check: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write(
    'npm run bench:delivery [-- --opinions N --warmup N --polling S --delivery-work JSON --ehr-indexed --cpu-prof --setup-concurrency N --timeout S --check]\n' +
      'env: OPINIONS, WARMUP, DATABASE_URL, JOB_POLLING_INTERVAL_SECONDS, DELIVERY_WORK_OPTIONS, EHR_INDEXED=1, SETUP_CONCURRENCY, BENCH_TIMEOUT_SECONDS\n',
  );
  process.exit(0);
}
const opts = {
  opinions: Math.round(numberOption('OPINIONS', flags.opinions ?? process.env.OPINIONS, 200, 1)!),
  warmup: Math.round(numberOption('WARMUP', flags.warmup ?? process.env.WARMUP, 2, 1)!),
  polling: numberOption('JOB_POLLING_INTERVAL_SECONDS', flags.polling ?? process.env.JOB_POLLING_INTERVAL_SECONDS, undefined, 0.5),
  deliveryWork: parseWorkOptions(flags['delivery-work'] ?? process.env.DELIVERY_WORK_OPTIONS),
  setupConcurrency: Math.round(numberOption('SETUP_CONCURRENCY', flags['setup-concurrency'] ?? process.env.SETUP_CONCURRENCY, 8, 1)!),
  timeoutMs: 1000 * numberOption('BENCH_TIMEOUT_SECONDS', flags.timeout ?? process.env.BENCH_TIMEOUT_SECONDS, 600, 1)!,
  ehrIndexed: (flags['ehr-indexed'] ?? false) || process.env.EHR_INDEXED === '1',
  cpuProf: flags['cpu-prof'] ?? false,
  check: flags.check ?? false,
};
function parseWorkOptions(raw: string | undefined): Record<string, unknown> | undefined {
  if (!raw) return undefined;
  const parsed = JSON.parse(raw) as unknown;
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('DELIVERY_WORK_OPTIONS must be a JSON object of pg-boss work() options');
  return parsed as Record<string, unknown>;
}
const databaseUrl = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const schemaName = `bench_delivery_${process.pid}_${randomBytes(3).toString('hex')}`;

// ---------------------------------------------------------------- pg-boss work() options of the deliver-opinion queue
/** What the service asked pg-boss for on the deliver-opinion queue (observed), after any experiment override. */
let deliveryWorkOptions: Record<string, unknown> | undefined;
{
  type WorkFn = (this: PgBoss, name: string, ...args: unknown[]) => unknown;
  const proto = PgBoss.prototype as unknown as { work: WorkFn };
  const original = proto.work;
  proto.work = function (this: PgBoss, name: string, ...args: unknown[]) {
    if (name === QUEUE.deliverOpinion && args.length >= 2 && args[0] && typeof args[0] === 'object') {
      args[0] = { ...(args[0] as Record<string, unknown>), ...(opts.deliveryWork ?? {}) };
      deliveryWorkOptions = args[0] as Record<string, unknown>;
    }
    return original.call(this, name, ...args);
  };
}

// ---------------------------------------------------------------- state
let service: RunningService | undefined;
const sandboxes = new Set<SandboxChild>();
let probe: pg.Client | undefined;

// ---------------------------------------------------------------- the service
const startSandbox = (label: string) => startSandboxProcess(label, { indexed: opts.ehrIndexed });

async function startBenchService(config: Config, options: Omit<StartOptions, 'database'>): Promise<RunningService> {
  const database = await openDatabase({ databaseUrl, schemaName, poolSize: config.databasePoolSize });
  try {
    return await startService(config, createLogger({ level: config.logLevel }), { ...options, database });
  } catch (err) {
    await database.close().catch(() => undefined);
    throw err;
  }
}

// ---------------------------------------------------------------- main
async function main(): Promise<number> {
  const n = opts.opinions;
  say(`bench:delivery  node ${process.version}  ${n} opinions at once (+${opts.warmup} warm-up)  load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} (${cpus().length} cores, shared)`);

  const version = await postgresVersion(databaseUrl);
  if (!version) return 2;
  say(`PostgreSQL ${version} at ${new URL(databaseUrl).host}${new URL(databaseUrl).pathname}, fresh schemas ${schemaName} and ${schemaName}_pgboss (dropped at the end)`);
  dropSchemaAtCleanup(databaseUrl, schemaName);
  onCleanup('close the probe connection and the HTTP agent', async () => {
    await probe?.end();
    agent.destroy();
  });
  onCleanup('stop the service', () => service?.stop());
  const dir = await tempDir('bench-delivery-');

  // The referrer's EHR: st-olaf's FHIR endpoint is the sandbox child.
  const ehr = await startSandbox('EHR');
  sandboxes.add(ehr);
  say(`sandbox EHR ${ehr.baseUrl} (child pid ${ehr.pid}) ready in ${fmtMs(ehr.startupMs)}`);
  const networkFile = await writeSandboxNetwork(ehr, { dir, timeoutMs: 30_000 });
  const port = await freePort();
  const config = loadConfig(serviceEnv({ port, dataDir: path.join(dir, 'data'), databaseUrl, networkFile, logLevel: 'silent' }));

  // ------------------------------------------------------------ setup (not timed)
  say();
  say(`setup (not timed; service polling its queues every 0.5 s, ${opts.setupConcurrency} requests at a time):`);
  const tSetup = performance.now();
  configure({
    serviceUrl: () => service!.url,
    probe: () => probe!,
    ehrSeeded: () => ehr.seeded,
    startSandbox,
    sandboxes,
    warmup: opts.warmup,
    setupConcurrency: opts.setupConcurrency,
    timeoutMs: opts.timeoutMs,
  });
  service = await startBenchService(config, { jobPollingIntervalSeconds: 0.5 });
  probe = new pg.Client({ connectionString: databaseUrl, options: `-c search_path=${schemaName}` });
  await probe.connect();
  const all = await setUpReferrals(n + opts.warmup, ehr.seeded);
  await service.stop();
  service = undefined;
  clearTokens();
  say(`  setup done in ${fmtMs(performance.now() - tSetup)}`);

  // ------------------------------------------------------------ the measured service
  const startOptions: Omit<StartOptions, 'database'> = opts.polling !== undefined ? { jobPollingIntervalSeconds: opts.polling } : {};
  service = await startBenchService(config, startOptions);
  const pollingLabel = opts.polling !== undefined ? `jobPollingIntervalSeconds ${opts.polling} (StartOptions)` : 'jobPollingIntervalSeconds default (2 s)';
  const ehrLabel = opts.ehrIndexed
    ? 'sandboxes answer identifier conditional creates from an index (EHR_INDEXED=1; baselines too)'
    : 'sandbox as the tests use it: each conditional create scans every stored resource of the type (~0.6 ms each)';
  const workLabel = deliveryWorkOptions ? JSON.stringify(deliveryWorkOptions) : '(not observed)';
  say();
  say(`EHR: ${ehrLabel}`);
  say(`measured service: ${service.url}, in this process; ${pollingLabel}; deliver-opinion work() options ${workLabel}${opts.deliveryWork ? `  EXPERIMENT override ${JSON.stringify(opts.deliveryWork)}: not the service as shipped` : ''}`);

  const warm = all.slice(0, opts.warmup);
  const timed = all.slice(opts.warmup);
  const tWarm = performance.now();
  const warmRun = await submitAndWait(warm, ehr, 'warm-up');
  say(`warm-up: ${opts.warmup} opinions delivered in ${fmtMs(performance.now() - tWarm)}`);
  const warmNote = warmRun.subs[0]!.noteId;
  const stored = await ehr.command<DocumentReference | undefined>({ type: 'document', system: SYSTEM.consultNoteId, value: warmNote });
  if (!stored) throw new Error('the warm-up consult note is not on the sandbox');
  const { id: _id, meta: _meta, ...template } = stored;
  await until(async () => ((await probe!.query("SELECT count(*)::int AS n FROM opinion_delivery WHERE status <> 'delivered'")).rows[0].n === 0 ? true : undefined), 'warm-up deliveries committed', 60_000);

  // ------------------------------------------------------------ baseline, delivery, baseline
  say();
  say('runs:');
  const showBaseline = (b: BaselineResult) =>
    say(`  ${b.label.padEnd(12)} p50 ${fmtMs(b.latency.p50).padStart(8)}  p95 ${fmtMs(b.latency.p95).padStart(8)}  max ${fmtMs(b.latency.max).padStart(8)}  ${b.throughput.toFixed(0).padStart(5)} docs/s  (${n} POSTs at once, ${b.bytes} bytes each, sandbox CPU ${fmtMs(b.sandboxCpuMs)})`);
  const before = await runBaseline('baseline 1', template as DocumentReference, n);
  showBaseline(before);
  await sleep(2000);

  const profiler = opts.cpuProf ? await startProfiler(500) : undefined;
  const cpu0 = process.cpuUsage();
  const ehrCpu0 = await ehr.command<{ cpuMs: number }>({ type: 'usage' });
  const load0 = loadavg()[0] ?? 0;
  const run = await submitAndWait(timed, ehr, 'delivery');
  const cpuService = process.cpuUsage(cpu0);
  const profile = await profiler?.stop();
  const ehrCpu1 = await ehr.command<{ cpuMs: number }>({ type: 'usage' });
  const firstSubmit = Math.min(...run.subs.map((s) => s.startMs));
  const lastArrival = Math.max(...run.subs.map((s) => run.arrivalOf.get(s.noteId) as number));
  const span = lastArrival - firstSubmit;
  const lastResponse = Math.max(...run.subs.map((s) => s.endMs));
  const e2e = stats(run.subs.map((s) => (run.arrivalOf.get(s.noteId) as number) - s.startMs));
  const submitLatency = stats(run.subs.map((s) => s.endMs - s.startMs));
  const throughput = n / (span / 1000);
  say(
    `  ${'delivery'.padEnd(12)} p50 ${fmtMs(e2e.p50).padStart(8)}  p95 ${fmtMs(e2e.p95).padStart(8)}  max ${fmtMs(e2e.max).padStart(8)}  ${throughput.toFixed(1).padStart(5)} opinions/s  (submit→arrival; submit HTTP p50 ${fmtMs(submitLatency.p50)}, p95 ${fmtMs(submitLatency.p95)})`,
  );

  // Every delivery committed on the service side (the Communication and the Task update follow the document).
  const noteIds = run.subs.map((s) => s.noteId);
  const tCommit = performance.now();
  await until(
    async () => ((await probe!.query("SELECT count(*)::int AS n FROM opinion_delivery WHERE id = ANY($1::text[]) AND status <> 'delivered'", [noteIds])).rows[0].n === 0 ? true : undefined),
    'delivery rows delivered',
    120_000,
  ).catch(() => undefined);
  const commitWaitMs = performance.now() - tCommit;
  await sleep(2000);
  const after = await runBaseline('baseline 2', template as DocumentReference, n);
  showBaseline(after);

  // ------------------------------------------------------------ where the time went, correctness
  const timings = await jobTimings(probe!, `${schemaName}_pgboss`, run.subs, run.arrivalOf);
  const correctness = await checkDeliveries(ehr, probe!, noteIds, n + opts.warmup);
  const non201 = [...run.statuses.values()].flat().filter((s) => s !== 201).length;
  await service.stop();
  service = undefined;

  // ------------------------------------------------------------ report
  const serviceCpuMs = (cpuService.user + cpuService.system) / 1000;
  const show = (label: string, x: Stats, more = '') => say(`  ${label.padEnd(45)}p50 ${fmtMs(x.p50).padStart(8)}  p95 ${fmtMs(x.p95).padStart(8)}  max ${fmtMs(x.max).padStart(8)}${more}`);
  say();
  say(`where the delivery time went (per opinion; pg-boss job rows, PostgreSQL clock, ±1 ms):`);
  show('submit HTTP (transaction: note, Task, job)', submitLatency);
  show('waiting for a worker (response → job start)', timings.pickup, `  (jobs started over ${fmtMs(timings.pickupSpanMs)}: ${(n / (timings.pickupSpanMs / 1000)).toFixed(1)} jobs/s)`);
  show('job start → document on the EHR', timings.inJob, '  (reads, token, conditional create)');
  show('document on the EHR → job completed', timings.tail, '  (Communication, Task, audit; not in the measured time)');
  const parts = { 'submit HTTP': mean(run.subs.map((s) => s.endMs - s.startMs)), 'waiting for a worker': timings.meanPickup, 'job → EHR': timings.meanInJob };
  const whole = Object.values(parts).reduce((a, b) => a + b, 0);
  say(`  share of the mean submit→arrival (${fmtMs(whole)}): ${Object.entries(parts).map(([k, v]) => `${k} ${pct(v / whole)}`).join(', ')}`);
  say(`  CPU over the ${fmtMs(span)} run: this process (service + load generator) ${fmtMs(serviceCpuMs)} = ${pct(serviceCpuMs / span)} of a core, sandbox EHR ${fmtMs(ehrCpu1.cpuMs - ehrCpu0.cpuMs)}; load average ${load0.toFixed(2)} → ${(loadavg()[0] ?? 0).toFixed(2)}`);
  const duringSubmit = run.subs.filter((s) => (run.arrivalOf.get(s.noteId) as number) <= lastResponse).length;
  say(`  CPU of this process from the first submission to the last response (${fmtMs(lastResponse - firstSubmit)}): ${fmtMs(run.submitCpuMs)} (${((run.submitCpuMs * 1000) / n).toFixed(0)} µs per opinion; ${duringSubmit} of the documents had arrived by then)`);
  say(`  all delivery rows committed ${fmtMs(commitWaitMs)} after the last arrival was seen; ${correctness.retried} deliveries needed more than one attempt; ${non201} non-201 answers to consult-note POSTs`);
  if (profile) {
    await printProfile(profile, n, [
      ['the whole timed run', firstSubmit, lastArrival],
      ['submissions (first submission → last response)', firstSubmit, lastResponse],
      ['after the last response (deliveries)', lastResponse, lastArrival],
    ]);
  }
  say();
  const { problems } = correctness;
  say(`correctness: ${problems.length === 0 ? `OK: exactly one DocumentReference and one Communication per opinion on the EHR (${correctness.consultNotesOnEhr} consult notes incl. warm-up), every delivery row delivered` : `FAILED:\n  - ${problems.join('\n  - ')}`}`);
  const notes = [`${pollingLabel}; deliver-opinion worker ${workLabel}${opts.deliveryWork ? ' (EXPERIMENT)' : ''}`, `EHR: ${ehrLabel}`];
  const met = finalReport({ n, ehrIndexed: opts.ehrIndexed, before, after, e2e, submitLatency, throughput, correctness, notes });
  if (problems.length) return 1;
  return opts.check && !met ? 1 : 0;
}

await runBench('bench:delivery', main);
