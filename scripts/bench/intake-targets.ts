/**
 * What `npm run bench:intake` measures, each in its own child process: the Express JSON echo,
 * the service's intake (on PostgreSQL or PGlite), and the raw-insert baseline (the same rows
 * written by a bare client, raw-insert-server.ts). Each target measures one phase of a given
 * length the same way: completed operations, latency percentiles, CPU of its process.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { makeSecondOpinionRequest } from '../../test/support/referrals.ts';
import { getAccessToken } from '../../test/support/tokens.ts';
import { type ServerChild, spawnServer } from './children.ts';
import { freePort } from './lib/common.ts';
import { load, mergeResults, type RawResult } from './lib/load.ts';
import { dropSchemaAtCleanup } from './lib/postgres.ts';
import { onCleanup, tempDir } from './lib/run.ts';
import { childEnv, serviceEnv } from './lib/service-env.ts';

export type Store = 'postgres' | 'pglite';
export const REFERRER_CLIENT = 'st-olaf-ehr';

/** One phase of one target. */
export interface Measured {
  /** Successful operations (2xx responses, committed transactions). */
  ok: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  /** CPU (user + system) of the target's process per operation, µs. */
  cpuPerOp: number;
  /** That CPU / wall time (1 = one core busy). */
  cpuBusy: number;
  /** HTTP status counts; for raw inserts `commit`. */
  status: Record<string, number>;
  /** Non-2xx responses, socket errors, timeouts, failed transactions. */
  failures: number;
  /** For pooling the rounds: autocannon's raw result, or every latency (ms). */
  http?: RawResult;
  latencies?: number[];
}

export interface Target {
  key: string;
  label: string;
  kind: 'echo' | 'intake' | 'raw';
  store?: Store;
  child: ServerChild;
  measure(seconds: number): Promise<Measured>;
}

/** Latency percentiles over several phases of one target: autocannon's merged histogram, or nearest rank. */
export function pooledLatency(phases: readonly Measured[]): { p50: number; p99: number } {
  if (phases.every((p) => p.http)) {
    const { latency } = mergeResults(phases.map((p) => p.http as RawResult));
    return { p50: latency.p50, p99: latency.p99 };
  }
  const all = phases.flatMap((p) => p.latencies ?? []);
  const s = [...all].sort((a, b) => a - b);
  const rank = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
  return { p50: rank(0.5), p99: rank(0.99) };
}

/** A fixed-size body whose requestId is a zero-padded counter: unique per request, same length. */
export function bodyFactory(): { next: () => string; size: number } {
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
  cpuMicros: number;
  at: number;
}

export interface HttpTargetOptions {
  connections: number;
  nextBody: () => string;
  /** A bearer token for each phase (a fresh one: none expires mid-run); none for the echo. */
  token?: () => Promise<string>;
}

/** A target measured with autocannon: POSTs of `nextBody()` to the child's URL. */
function httpTarget(t: Omit<Target, 'measure'>, o: HttpTargetOptions): Target {
  const measure = async (seconds: number): Promise<Measured> => {
    const headers = { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${o.token ? await o.token() : 'none'}` };
    const before = (await t.child.command('usage')) as unknown as Usage;
    const raw = await load({ url: `${t.child.url}${t.child.path}`, connections: o.connections, seconds, headers, nextBody: o.nextBody });
    const after = (await t.child.command('usage')) as unknown as Usage;
    const { latency } = mergeResults([raw]);
    const status: Record<string, number> = {};
    for (const [code, s] of Object.entries(raw.statusCodeStats ?? {})) status[code] = s.count ?? 0;
    const cpu = after.cpuMicros - before.cpuMicros;
    return {
      ok: raw['2xx'],
      seconds: raw.duration,
      rps: raw['2xx'] / raw.duration,
      p50: latency.p50,
      p99: latency.p99,
      cpuPerOp: cpu / Math.max(1, raw.totalCompletedRequests),
      cpuBusy: cpu / 1000 / (after.at - before.at),
      status,
      failures: raw.non2xx + raw.errors + raw.timeouts,
      http: raw,
    };
  };
  return { ...t, measure };
}

export function echoTarget(child: ServerChild, o: HttpTargetOptions): Target {
  return httpTarget({ key: 'echo', label: 'Express JSON echo', kind: 'echo', child }, o);
}

/** A fresh schema of `databaseUrl` (dropped at clean-up), or PGlite in a temporary directory. */
async function storeEnv(store: Store, databaseUrl: string, prefix: string): Promise<{ env: Record<string, string>; dataDir: string; schema?: string }> {
  const dataDir = await tempDir(`bench-intake-${prefix}-`);
  if (store === 'pglite') return { env: { DATA_DIR: dataDir }, dataDir };
  const schema = `bench_${randomBytes(5).toString('hex')}`;
  dropSchemaAtCleanup(databaseUrl, schema); // the child creates it; dropped whatever happens from here on
  return { env: { DATABASE_URL: databaseUrl, BENCH_SCHEMA: schema }, dataDir, schema };
}

async function spawn(label: string, script: string, env: NodeJS.ProcessEnv): Promise<ServerChild> {
  const child = await spawnServer(label, script, { env, readyTimeoutMs: 120_000 });
  onCleanup(`stop the ${label}`, () => child.stop(5000));
  return child;
}

export const startEcho = (): Promise<ServerChild> => spawn('echo baseline', 'scripts/bench/echo-server.ts', { ...process.env, NODE_ENV: 'development' });

/** The service (this checkout's, or `root`'s) on `store`. */
export async function startIntake(key: string, store: Store, databaseUrl: string, o: Omit<HttpTargetOptions, 'token'> & { root?: string }): Promise<Target> {
  const { env, dataDir } = await storeEnv(store, databaseUrl, key.replaceAll(' ', '-'));
  const label = `intake service on ${store}${o.root ? ` of ${o.root}` : ''}`;
  const child = await spawn(
    label,
    'scripts/bench/intake-server.ts',
    childEnv({ ...serviceEnv({ port: await freePort(), dataDir, logLevel: 'silent' }), ...env, ...(o.root ? { BENCH_SERVICE_ROOT: o.root } : {}) }),
  );
  return httpTarget({ key, label, kind: 'intake', store, child }, { ...o, token: () => getAccessToken(child.url, REFERRER_CLIENT) });
}

/** The raw-insert baseline on `store`, its rows those `intake` wrote for `serviceRequestId`. */
export async function startRaw(key: string, store: Store, databaseUrl: string, connections: number, rowsFile: string): Promise<Target> {
  const { env, dataDir } = await storeEnv(store, databaseUrl, key.replaceAll(' ', '-'));
  const child = await spawn(`raw inserts on ${store}`, 'scripts/bench/raw-insert-server.ts', childEnv({ ...env, DATA_DIR: dataDir, BENCH_STORE: store, BENCH_CONNECTIONS: String(connections) }));
  await child.command(`rows ${rowsFile}`);
  const measure = async (seconds: number): Promise<Measured> => {
    const r = (await child.command(`run ${seconds}`, (seconds + 60) * 1000)) as unknown as { transactions: number; seconds: number; latencies: number[]; errors: number; lastError?: string; cpuMicros: number };
    if (r.errors && !r.transactions) throw new Error(`raw inserts on ${store}: every transaction failed: ${r.lastError}`);
    const { p50, p99 } = pooledLatency([{ latencies: r.latencies } as Measured]);
    return {
      ok: r.transactions,
      seconds: r.seconds,
      rps: r.transactions / r.seconds,
      p50,
      p99,
      cpuPerOp: r.cpuMicros / Math.max(1, r.transactions),
      cpuBusy: r.cpuMicros / 1000 / (r.seconds * 1000),
      status: { commit: r.transactions, ...(r.errors ? { failed: r.errors } : {}) },
      failures: r.errors,
      latencies: r.latencies,
    };
  };
  return { key, label: `raw inserts on ${store}`, kind: 'raw', store, child, measure };
}

/** Writes the rows of the intake `serviceRequestId` to a file the raw-insert child reads. */
export async function dumpRows(intake: Target, serviceRequestId: string): Promise<string> {
  const file = path.join(await tempDir('bench-intake-rows-'), 'rows.json');
  await intake.child.command(`rows ${serviceRequestId} ${file}`);
  return file;
}
