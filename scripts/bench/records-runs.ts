/**
 * The runs of `npm run bench:records` (scripts/bench-records.ts): the raw baseline (a child
 * process fetching, hashing and writing the same attachments, scripts/bench/raw-fetch.ts) and
 * one record-set assembly by the service, timed from the sandbox's request arrivals, with the
 * service's RSS and the CPU of the service, its PostgreSQL backends and the sandbox.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type pg from 'pg';
import { makeSecondOpinionRequest } from '../../test/support/referrals.ts';
import { seededDocument, type SeededDocument } from '../../test/support/sandbox-ehr/seed.ts';
import type { SandboxEhr } from '../../test/support/sandbox-ehr/server.ts';
import { sleep } from './lib/common.ts';
import { cpuMsOf, postgresCpuTracker, sampleRss } from './lib/proc-stats.ts';
import { sandboxToken } from './lib/service-env.ts';
import type { ServiceProcess } from './lib/service-process.ts';
import type { RawFetchJob, RawFetchResult } from './raw-fetch.ts';

const ROOT = path.join(import.meta.dirname, '..', '..');
const MiB = 1024 * 1024;
const PROGRESS_NOTE = 'http://loinc.org|11506-3';
/** RSS and completion are polled this often (ms). */
export const SAMPLE_MS = 50;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
/** CLOCK_MONOTONIC in µs: the clock of V8's .cpuprofile timestamps. */
const monoMicros = () => Number(process.hrtime.bigint() / 1000n);

/** What the runs need of the bench: set once with `configure`. */
export interface RecordsContext {
  db(): pg.Client;
  dbName: string;
  concurrency: number;
}
let ctx: RecordsContext;
export function configure(context: RecordsContext): void {
  ctx = context;
}

let worker: ChildProcess | undefined;
process.on('exit', () => {
  if (worker && worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL');
});

/** What the assembly will fetch: every progress note (the bulk documents and `progress-2024`). */
export function fetchedDocuments(sandbox: SandboxEhr): SeededDocument[] {
  return sandbox.seeded.documents.filter((d) => d.loincCode === '11506-3');
}

export interface BaselineRun {
  kind: 'baseline';
  label: string;
  result: RawFetchResult;
}
export interface AssemblyRun {
  kind: 'assembly';
  label: string;
  /** The referral (ServiceRequest id). */
  id: string;
  bytes: number;
  documents: number;
  /** POST sent -> first request of the job to the EHR (pg-boss pick-up). */
  pickupMs: number;
  /** First EHR request -> first attachment request (token, named reads, search pages). */
  sourcesMs: number;
  /** First -> last attachment request started. */
  attachmentsMs: number;
  /** Last attachment request -> record_set_assembly row seen (last fetches, the Bundle transaction). */
  finishMs: number;
  /** First EHR request -> row seen: the measured time. */
  jobMs: number;
  /** POST -> row seen. */
  endToEndMs: number;
  idleRss: number;
  peakRss: number;
  peakHwm: number;
  samples: number;
  maxSampleGapMs: number;
  serviceCpuMs: number;
  /** CPU of the PostgreSQL backends serving the bench database. */
  postgresCpuMs: number;
  /** CPU of PostgreSQL's server-wide WAL writer, checkpointer and background writer (shared with other databases). */
  postgresWritersCpuMs: number;
  sandboxCpuMs: number;
  status: string;
  summaryStatus?: string;
  check: string[];
  window: [number, number];
}
export type Run = BaselineRun | AssemblyRun;

export async function runBaseline(sandbox: SandboxEhr, label: string, dir: string): Promise<BaselineRun> {
  const job: RawFetchJob = {
    attachments: fetchedDocuments(sandbox).map((d) => ({ url: `${sandbox.baseUrl}/${d.url as string}`, size: d.size, sha1: d.sha1Base64 })),
    token: await sandboxToken(sandbox.tokenUrl),
    concurrency: ctx.concurrency,
    dir,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'raw-fetch.ts')], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  worker = child;
  let result: RawFetchResult | undefined;
  const errors: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('RAW_FETCH_RESULT ')) result = JSON.parse(line.slice('RAW_FETCH_RESULT '.length)) as RawFetchResult;
  });
  createInterface({ input: child.stderr! }).on('line', (line) => errors.push(line));
  const exited = once(child, 'exit');
  child.stdin!.end(JSON.stringify(job));
  await exited;
  worker = undefined;
  for (const f of readdirSync(dir)) if (f.startsWith('baseline-')) await rm(path.join(dir, f), { force: true });
  if (!result) throw new Error(`baseline worker failed:\n${errors.slice(-20).join('\n')}`);
  return { kind: 'baseline', label, result };
}

export async function runAssembly(sandbox: SandboxEhr, svc: ServiceProcess, token: string, label: string, idleRss: number): Promise<AssemblyRun> {
  const expected = fetchedDocuments(sandbox);
  const bytes = expected.reduce((n, d) => n + d.size, 0);
  const body = makeSecondOpinionRequest({
    consultants: ['lakeside-consults'],
    blinded: false,
    firstOpinion: { documents: [] },
    // The operative note makes the revision's checklist complete (it is already stored by the warm-up, so not fetched again).
    records: { documents: [{ reference: `DocumentReference/${seededDocument(sandbox.seeded, 'op-note-2024').id}` }], search: { type: [PROGRESS_NOTE] } },
  }, sandbox.seeded);

  // Request arrival times on the sandbox (its `requests` array is appended to once per request).
  const arrivals: { at: number; binary: boolean }[] = [];
  const requests = sandbox.requests;
  const push = requests.push.bind(requests);
  requests.push = (...items) => {
    const at = performance.now();
    for (const r of items) arrivals.push({ at, binary: r.path.includes('/Binary/') });
    return push(...items);
  };

  const rss = sampleRss(svc.pid, SAMPLE_MS);
  const pgCpu = postgresCpuTracker(ctx.dbName);
  const pgSampler = setInterval(() => pgCpu.sample(), 1000);
  const cpu0 = { service: cpuMsOf(svc.pid), sandbox: process.cpuUsage() };
  const posted = performance.now();
  const res = await fetch(`${svc.url}/second-opinions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const created = (await res.json()) as { id?: string };
  if (res.status !== 201 || !created.id) {
    rss.stop();
    throw new Error(`POST /second-opinions: HTTP ${res.status} ${JSON.stringify(created).slice(0, 500)}`);
  }
  const timeoutMs = 120_000 + (bytes / (2 * MiB)) * 1000; // generous: 2 MiB/s
  let row: Record<string, unknown> | undefined;
  for (;;) {
    row = (await ctx.db().query('SELECT status, bundle_id, missing_documents, integrity_failures, too_large, failure_reason, attempts FROM record_set_assembly WHERE service_request_id = $1', [created.id])).rows[0];
    if (row) break;
    if (performance.now() - posted > timeoutMs) break;
    if (!svc.running()) break;
    await sleep(SAMPLE_MS);
  }
  const ready = performance.now();
  const windowEnd = monoMicros();
  const { peakRss, hwm, samples, maxGapMs: maxGap } = rss.stop();
  clearInterval(pgSampler);
  requests.push = push;
  const cpuSandbox = process.cpuUsage(cpu0.sandbox);
  const serviceCpuMs = cpuMsOf(svc.pid) - cpu0.service;
  const postgres = pgCpu.total();
  if (!row) throw new Error(`${label}: no record set after ${secs(ready - posted)}:\n${svc.tail.join('\n')}`);

  // What was stored: every expected attachment in the Bundle, nothing failed.
  const check: string[] = [];
  const stored = (
    await ctx.db().query<{ n: string; total: string }>('SELECT count(*) AS n, coalesce(sum(b.size), 0) AS total FROM record_set_attachment a JOIN blob b USING (sha256) WHERE a.bundle_id = $1', [row.bundle_id])
  ).rows[0];
  const opNote = seededDocument(sandbox.seeded, 'op-note-2024');
  const wantCount = expected.length + 1;
  const wantBytes = bytes + opNote.size;
  if (row.status !== 'records-ready') check.push(`status ${String(row.status)}${row.failure_reason ? ` (${String(row.failure_reason)})` : ''}`);
  for (const key of ['missing_documents', 'integrity_failures', 'too_large'] as const) {
    if ((row[key] as unknown[]).length > 0) check.push(`${key}: ${JSON.stringify(row[key]).slice(0, 300)}`);
  }
  if (Number(stored?.n) !== wantCount || Number(stored?.total) !== wantBytes) check.push(`Bundle holds ${stored?.n} attachments / ${stored?.total} bytes, expected ${wantCount} / ${wantBytes}`);
  if (Number(row.attempts) !== 1) check.push(`${String(row.attempts)} attempts`);

  const first = arrivals[0]?.at ?? posted;
  const binaries = arrivals.filter((a) => a.binary);
  const firstBinary = binaries[0]?.at ?? first;
  const lastBinary = binaries[binaries.length - 1]?.at ?? firstBinary;
  return {
    kind: 'assembly',
    label,
    id: created.id,
    bytes,
    documents: expected.length,
    pickupMs: first - posted,
    sourcesMs: firstBinary - first,
    attachmentsMs: lastBinary - firstBinary,
    finishMs: ready - lastBinary,
    jobMs: ready - first,
    endToEndMs: ready - posted,
    idleRss,
    peakRss: Math.max(peakRss, 0),
    peakHwm: hwm,
    samples,
    maxSampleGapMs: maxGap,
    serviceCpuMs,
    postgresCpuMs: postgres.backends,
    postgresWritersCpuMs: postgres.writers,
    sandboxCpuMs: (cpuSandbox.user + cpuSandbox.system) / 1000,
    status: String(row.status),
    check,
    // The job's span on the monotonic clock (µs), for the CPU profile.
    window: [windowEnd - Math.round((ready - first) * 1000), windowEnd],
  };
}

/** Waits for a referral's assembly row (the warm-up). */
export async function waitForRow(id: string, timeoutMs: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = (await ctx.db().query('SELECT status, failure_reason FROM record_set_assembly WHERE service_request_id = $1', [id])).rows[0];
    if (row) return row;
    if (Date.now() > deadline) throw new Error(`warm-up referral ${id} not assembled after ${timeoutMs} ms`);
    await sleep(100);
  }
}

