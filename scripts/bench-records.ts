/**
 * `npm run bench:records`: record-set assembly of 1,000 DocumentReferences carrying
 * 1 GiB of attachments, pulled from the sandbox EHR over HTTP into the service's blob store (metadata
 * in PostgreSQL; bytes in files, or with `--store s3` in a local S3 server), against the raw
 * baseline of fetching and hashing the same bytes to a file, in the same run.
 *
 * - The sandbox EHR (SMART token endpoint, FHIR API, Binary downloads) runs in this process,
 *   seeded with `--docs` bulk progress notes of `--mib`/`--docs` MiB each.
 * - The service is a child process (`node --import tsx src/main.ts`: the pid is the Node process
 *   itself, no wrapper) on a throwaway PostgreSQL database `bench_records_<pid>`, its own network
 *   file pointing the referrer `st-olaf` at the sandbox, LOG_LEVEL=warn. Its RSS is read from
 *   /proc/<pid>/status: idle after start-up and a warm-up referral, then every 50 ms (VmRSS)
 *   during the assembly; VmHWM, reset just before through /proc/<pid>/clear_refs, cross-checks
 *   the peak.
 * - Baseline (scripts/bench/raw-fetch.ts, a child process too): the same attachments from the
 *   same sandbox, as many at a time as the service fetches (its default ATTACHMENT_CONCURRENCY,
 *   src/records/assemble-record-set.ts; `--concurrency N` sets both), SHA-1 + SHA-256, appended to a file.
 * - Assembly: one referral whose `records.search` (progress notes) brings in every bulk document.
 *   Timed from the job's first request to the EHR until its `record_set_assembly` row commits
 *   (polled in the database every 50 ms, so the referral summary's AuditEvents stay out of it).
 *   The wait for pg-boss to pick the job up (it polls every 2 s) is shown apart, and so is the
 *   end-to-end figure from POST.
 * - Order: baseline, assembly, baseline (with --rounds N: N × (baseline, assembly), then a
 *   baseline; each further round reseeds the sandbox with other bytes, since the service never
 *   fetches bytes it already holds). The ratio divides each assembly by the mean of the baselines
 *   either side of it.
 *
 * Targets: assembly ≥ 60% of the baseline's MiB/s, service RSS growth ≤ 128 MiB. Exits non-zero
 * only with --check (target missed or run not clean).
 *
 *   npm run bench:records [-- --docs 1000 --mib 1024 --rounds 1 --concurrency N --page-size 50 --store files|s3 --cpu-prof --prof-dir DIR --check]
 *   npm run bench:records -- --docs 50 --mib 50      a quick run
 *
 * Env: DATABASE_URL (the PostgreSQL server to use; default postgres://postgres@127.0.0.1:5432/postgres;
 * its database name is ignored: bench_records_<pid> is created there and dropped), BENCH_DOCS, BENCH_MIB.
 */
import { readdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { clientIdOf } from '../test/support/example-network.ts';
import { makeSecondOpinionRequest } from '../test/support/referrals.ts';
import type { SandboxEhr } from '../test/support/sandbox-ehr/server.ts';
import { getAccessToken } from '../test/support/tokens.ts';
import { type AssemblyRun, type BaselineRun, configure, type Run, runAssembly, runBaseline, SAMPLE_MS, waitForRow } from './bench/records-runs.ts';
import { freePort, mean, numberOption, pct, say, sleep } from './bench/lib/common.ts';
import { memoryOf } from './bench/lib/proc-stats.ts';
import { freshDatabase, postgresVersion } from './bench/lib/postgres.ts';
import { emitFigures } from './bench/lib/results.ts';
import { onCleanup, runBench, tempDir } from './bench/lib/run.ts';
import { blobStoreOption, type Ports, profileReport, startSandbox, startService } from './bench/records-setup.ts';

const MiB = 1024 * 1024;
const TARGET_RATIO = 0.6; // raised from 0.4
const TARGET_RSS_GROWTH = 128 * MiB;

// ---------------------------------------------------------------- options
const { values: flags } = parseArgs({
  options: {
    docs: { type: 'string' },
    mib: { type: 'string' },
    rounds: { type: 'string' },
    concurrency: { type: 'string' },
    'page-size': { type: 'string' },
    store: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    'prof-dir': { type: 'string' },
    check: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write('npm run bench:records [-- --docs N --mib N --rounds N --concurrency N --page-size N --store files|s3 --cpu-prof --prof-dir DIR --check]\nenv: DATABASE_URL, BENCH_DOCS, BENCH_MIB\n');
  process.exit(0);
}
/** The service's own limit on attachments fetched at once, when it has one; else 4. */
const serviceConcurrency = await import('../src/records/assemble-record-set.ts').then(
  (m) => (m as Record<string, unknown>).ATTACHMENT_CONCURRENCY,
  () => undefined,
);
const opts = {
  docs: Math.round(numberOption('--docs', flags.docs ?? process.env.BENCH_DOCS, 1000, 1)),
  mib: numberOption('--mib', flags.mib ?? process.env.BENCH_MIB, 1024, 0.001),
  rounds: Math.round(numberOption('--rounds', flags.rounds, 1, 1)),
  concurrency: Math.round(numberOption('--concurrency', flags.concurrency, typeof serviceConcurrency === 'number' ? serviceConcurrency : 4, 1)),
  pageSize: Math.round(numberOption('--page-size', flags['page-size'], 50, 1)),
  store: blobStoreOption(flags.store),
  cpuProf: flags['cpu-prof'] ?? false,
  profDir: flags['prof-dir'],
  check: flags.check ?? false,
};
const bytesEach = Math.round((opts.mib * MiB) / opts.docs);
const serverUrl = new URL(process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres');
const dbName = `bench_records_${process.pid}`;
const urlOf = (database: string) => Object.assign(new URL(serverUrl), { pathname: `/${database}` }).toString();
const benchDbUrl = urlOf(dbName);

const mib = (bytes: number, digits = 0) => `${(bytes / MiB).toFixed(digits)} MiB`;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
let ehr: SandboxEhr | undefined;
let db: pg.Client | undefined;

// ---------------------------------------------------------------- main
async function main(): Promise<number> {
  const order = [...Array.from({ length: opts.rounds }, () => 'baseline, assembly'), 'baseline'].join(', ');
  say(`bench:records  node ${process.version}  ${opts.docs} documents × ${mib(bytesEach, 2)} = ${mib(opts.docs * bytesEach, 1)}  concurrency ${opts.concurrency}${flags.concurrency !== undefined ? ' (ATTACHMENT_CONCURRENCY of the service and of the baseline)' : typeof serviceConcurrency === 'number' ? ' (the service\'s default ATTACHMENT_CONCURRENCY)' : ' (the service declares none; default)'}  search page size ${opts.pageSize}`);
  say(`order: ${order}  load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} on 2 shared cores`);

  const version = await postgresVersion(urlOf('postgres'));
  if (!version) return 1;
  await freshDatabase(serverUrl.toString(), dbName);
  say(`PostgreSQL ${version} at ${serverUrl.host}, database ${dbName} (dropped at the end)`);

  const dir = await tempDir('bench-records-');
  const profDir = opts.cpuProf ? (opts.profDir ? path.resolve(opts.profDir) : await mkdtemp(path.join(tmpdir(), 'bench-records-prof-'))) : undefined;
  const ports: Ports = { ehr: await freePort(), storage: await freePort() };

  onCleanup('stop the sandbox', () => ehr?.stop());
  const seed = { docs: opts.docs, bytesEach, pageSize: opts.pageSize };
  ehr = await startSandbox(ports, 1, seed);
  say(`sandbox EHR ${ehr.baseUrl} (in this process, pid ${process.pid}): ${ehr.seeded.documents.length} documents seeded in ${secs(ehr.startupMs)}, RSS ${mib(process.memoryUsage().rss)}`);
  const started = performance.now();
  const svc = await startService({ ports, dir, profDir, databaseUrl: benchDbUrl, bytesEach, store: opts.store, concurrency: opts.concurrency });
  say(`service pid ${svc.pid} (${process.execPath} --import tsx src/main.ts${profDir ? ' --cpu-prof' : ''}) ready in ${secs(performance.now() - started)} at ${svc.url}; attachment bytes: ${svc.store}`);
  db = new pg.Client({ connectionString: benchDbUrl });
  configure({ db: () => db!, dbName, concurrency: opts.concurrency });
  onCleanup('close the probe connection', () => db?.end());
  await db.connect();

  // Warm-up: one ordinary referral (the standard small chart) through the whole path.
  const token = await getAccessToken(svc.url, clientIdOf('st-olaf'));
  const startRss = memoryOf(svc.pid).rss;
  const warm = await fetch(`${svc.url}/second-opinions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(makeSecondOpinionRequest({ consultants: ['lakeside-consults'] }, ehr.seeded)),
  });
  const warmBody = (await warm.json()) as { id?: string };
  if (warm.status !== 201 || !warmBody.id) throw new Error(`warm-up POST: HTTP ${warm.status} ${JSON.stringify(warmBody).slice(0, 500)}`);
  const warmRow = await waitForRow(warmBody.id, 60_000);
  await sleep(2000);
  const idleSamples: number[] = [];
  for (let i = 0; i < 10; i++) {
    idleSamples.push(memoryOf(svc.pid).rss);
    await sleep(100);
  }
  idleSamples.sort((a, b) => a - b);
  const idleRss = idleSamples[5] as number;
  say(`warm-up referral: ${String(warmRow.status)}; service RSS after start-up ${mib(startRss)}, idle after the warm-up ${mib(idleRss)} (VmHWM so far ${mib(memoryOf(svc.pid).hwm)})`);
  say();

  const runs: Run[] = [];
  const show = (r: Run) => {
    if (r.kind === 'baseline') {
      const x = r.result;
      say(`  ${r.label.padEnd(11)} ${(x.bytes / MiB / (x.ms / 1000)).toFixed(1).padStart(7)} MiB/s  ${secs(x.ms)}  ${x.documents} GETs, client CPU ${pct(x.cpuMs / x.ms)} of a core, RSS ${mib(x.maxRss)}${x.mismatches ? `  ${x.mismatches} HASH/SIZE MISMATCHES` : ''}`);
    } else {
      say(
        `  ${r.label.padEnd(11)} ${(r.bytes / MiB / (r.jobMs / 1000)).toFixed(1).padStart(7)} MiB/s  ${secs(r.jobMs)} job (+${secs(r.pickupMs)} queue pick-up)  ${r.status}${r.check.length ? `  PROBLEMS: ${r.check.join('; ')}` : ''}`,
      );
    }
  };
  for (let round = 1; round <= opts.rounds; round++) {
    if (round > 1) {
      await ehr.stop();
      ehr = undefined;
      ehr = await startSandbox(ports, round, seed);
      say(`  (sandbox reseeded with other bytes for round ${round} in ${secs(ehr.startupMs)})`);
    }
    const b = await runBaseline(ehr, `baseline ${round}`, dir);
    runs.push(b);
    show(b);
    await sleep(1000);
    const a = await runAssembly(ehr, svc, token, `assembly ${round}`, idleRss);
    runs.push(a);
    show(a);
    await sleep(2000); // let PostgreSQL's checkpointer and the service settle before the next baseline
  }
  const last = await runBaseline(ehr, `baseline ${opts.rounds + 1}`, dir);
  runs.push(last);
  show(last);

  // The referral summary, once per assembly, as the referrer sees it.
  const assemblies = runs.filter((r): r is AssemblyRun => r.kind === 'assembly');
  for (const r of assemblies) {
    const res = await fetch(`${svc.url}/second-opinions/${r.id}`, { headers: { authorization: `Bearer ${await getAccessToken(svc.url, clientIdOf('st-olaf'))}` } });
    const summary = (await res.json()) as { recordSet?: { status?: string } };
    r.summaryStatus = res.ok ? (summary.recordSet?.status ?? 'no recordSet') : `HTTP ${res.status}`;
    if (r.summaryStatus !== r.status) r.check.push(`summary says ${r.summaryStatus}, the assembly row ${r.status}`);
  }

  await svc.stop();

  // ------------------------------------------------------------ report
  const baselines = runs.filter((r): r is BaselineRun => r.kind === 'baseline');
  const rate = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);
  const baseRate = (b: BaselineRun) => rate(b.result.bytes, b.result.ms);
  say();
  say(`results (MiB = 2^20 bytes; ${mib(assemblies[0]?.bytes ?? 0, 1)} in ${(assemblies[0]?.documents ?? 0)} attachments per run):`);
  say('  run            MiB/s   seconds  vs baseline   notes');
  const ratios: number[] = [];
  const e2eRatios: number[] = [];
  for (const r of runs) {
    if (r.kind === 'baseline') {
      say(`  ${r.label.padEnd(12)} ${baseRate(r).toFixed(1).padStart(7)}  ${(r.result.ms / 1000).toFixed(2).padStart(7)}               raw fetch + SHA-1 + SHA-256 + file, ${opts.concurrency} at a time`);
      continue;
    }
    const i = runs.indexOf(r);
    const around = mean([baseRate(runs[i - 1] as BaselineRun), baseRate(runs[i + 1] as BaselineRun)]);
    const jobRate = rate(r.bytes, r.jobMs);
    const e2eRate = rate(r.bytes, r.endToEndMs);
    ratios.push(jobRate / around);
    e2eRatios.push(e2eRate / around);
    say(`  ${r.label.padEnd(12)} ${jobRate.toFixed(1).padStart(7)}  ${(r.jobMs / 1000).toFixed(2).padStart(7)}  ${pct(jobRate / around).padStart(10)}   job: first EHR request -> record set committed`);
    say(`  ${'  from POST'.padEnd(12)} ${e2eRate.toFixed(1).padStart(7)}  ${(r.endToEndMs / 1000).toFixed(2).padStart(7)}  ${pct(e2eRate / around).padStart(10)}   + ${secs(r.pickupMs)} until pg-boss picked the job up (polls every 2 s)`);
  }
  say();
  for (const r of assemblies) {
    say(`${r.label}: where the ${secs(r.jobMs)} went (request arrivals at the sandbox; the end is seen within ${SAMPLE_MS} ms); summary: ${r.summaryStatus}`);
    say(`  sources      ${secs(r.sourcesMs).padStart(8)}  token, named reads, ${Math.ceil(r.documents / opts.pageSize)} search pages of ${opts.pageSize}`);
    say(`  attachments  ${secs(r.attachmentsMs).padStart(8)}  first to last attachment GET started (${rate(r.bytes, r.attachmentsMs).toFixed(1)} MiB/s over this span)`);
    say(`  finish       ${secs(r.finishMs).padStart(8)}  last attachments, checklist/consent, the Bundle transaction (${r.documents + 1} copies validated and stored)`);
    say(
      `  CPU over the job (share of one core): service ${pct(r.serviceCpuMs / r.jobMs)}, its PostgreSQL backends ${pct(r.postgresCpuMs / r.jobMs)}, ` +
        `PostgreSQL WAL writer/checkpointer/bgwriter ${pct(r.postgresWritersCpuMs / r.jobMs)} (server-wide), sandbox (this process) ${pct(r.sandboxCpuMs / r.jobMs)}; load average ${loadavg()[0]?.toFixed(2)}`,
    );
    say(
      `  service RSS: idle ${mib(r.idleRss)}, peak ${mib(r.peakRss)} (VmRSS, ${r.samples} samples, largest gap ${r.maxSampleGapMs.toFixed(0)} ms; VmHWM ${mib(r.peakHwm)}) -> growth ${mib(Math.max(r.peakRss, r.peakHwm) - r.idleRss)}`,
    );
  }
  if (svc.warnings.length > 0) {
    say();
    say(`service warnings/errors (${svc.warnings.length}), last ones:`);
    for (const line of svc.warnings.slice(-10)) say(`  ${line.slice(0, 400)}`);
  }

  const ratio = Math.min(...ratios);
  const growth = Math.max(...assemblies.map((r) => Math.max(r.peakRss, r.peakHwm) - r.idleRss));
  const clean = assemblies.every((r) => r.check.length === 0) && baselines.every((b) => b.result.mismatches === 0);
  const okRatio = ratio >= TARGET_RATIO;
  const okRss = growth <= TARGET_RSS_GROWTH;
  say();
  say(
    `verdict: assembly/baseline ${ratios.map(pct).join(', ')} (target ≥ ${pct(TARGET_RATIO)}: ${okRatio ? 'met' : 'MISSED'}; from POST ${e2eRatios.map(pct).join(', ')}), ` +
      `service RSS growth ${mib(growth)} (target ≤ ${mib(TARGET_RSS_GROWTH)}: ${okRss ? 'met' : 'MISSED'})${clean ? '' : ', RUN NOT CLEAN (see PROBLEMS above)'} => ${okRatio && okRss && clean ? 'TARGETS MET' : 'TARGET MISSED'}`,
  );
  const worst = assemblies[ratios.indexOf(ratio)] as AssemblyRun;
  const worstAt = runs.indexOf(worst);
  const around = mean([baseRate(runs[worstAt - 1] as BaselineRun), baseRate(runs[worstAt + 1] as BaselineRun)]);
  emitFigures([
    {
      bench: 'records',
      name: `record-set assembly, ${worst.documents} attachments, ${mib(worst.bytes)} (job)`,
      value: rate(worst.bytes, worst.jobMs),
      unit: 'MiB/s',
      baseline: { name: 'fetch + SHA-1 + SHA-256 + file, mean of before/after', value: around },
      ratio,
      target: { on: 'ratio', op: '>=', limit: TARGET_RATIO, source: 'docs/performance.md' },
    },
    {
      bench: 'records',
      name: 'service RSS growth during the assembly',
      value: growth / MiB,
      unit: 'MiB',
      baseline: { name: 'service RSS idle', value: worst.idleRss / MiB },
      target: { on: 'value', op: '<=', limit: TARGET_RSS_GROWTH / MiB, source: 'docs/performance.md' },
    },
  ]);
  say(`load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  if (profDir) {
    const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(profDir, f));
    const file = files.sort().pop();
    say();
    say(file ? profileReport(file, assemblies.map((r) => r.window)) : `no .cpuprofile written into ${profDir}`);
  }
  return opts.check && !(okRatio && okRss && clean) ? 1 : 0;
}

await runBench('bench:records', main);
