/**
 * What `npm run bench:records` (scripts/bench-records.ts) starts: the sandbox EHR seeded with the
 * bulk documents, the service as a child process with its blob store (`--store files`, the
 * default: DATA_DIR/blobs; `--store s3`: a local S3-compatible server, s3rver, started here in
 * the bench process), and the report of a CPU profile of the assembly window.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startS3Server } from '../../test/support/blob-stores.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from '../../test/support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from '../../test/support/sandbox-ehr/server.ts';
import { type CpuProfile, profileWindow, summariseProfile } from './cpu-profile.ts';
import { freePort, pct } from './lib/common.ts';
import { onCleanup } from './lib/run.ts';
import { childEnv, serviceEnv } from './lib/service-env.ts';
import { type ServiceProcess, startServiceProcess } from './lib/service-process.ts';

const ROOT = path.join(import.meta.dirname, '..', '..');
const MiB = 1024 * 1024;

export type BlobStoreOption = 'files' | 's3';

export function blobStoreOption(value: string | undefined): BlobStoreOption {
  const store = value ?? 'files';
  if (store !== 'files' && store !== 's3') throw new Error(`--store: files or s3, not ${JSON.stringify(store)}`);
  return store;
}

export interface Ports {
  ehr: number;
  storage: number;
}

/** The sandbox on fixed ports (the service's network file names them); `round` picks the bytes. */
export async function startSandbox(ports: Ports, round: number, o: { docs: number; bytesEach: number; pageSize: number }): Promise<SandboxEhr> {
  return startSandboxEhr({
    port: ports.ehr,
    storagePort: ports.storage,
    defaultPageSize: o.pageSize,
    seed: { randomSeed: 20240501 + 1000 * round, bulk: { count: o.docs, bytesEach: o.bytesEach } },
  });
}

export interface BenchService extends ServiceProcess {
  /** Where its blob store is, for the report. */
  store: string;
}

/** The service, `st-olaf` pointing at the sandbox, attachment bytes in the chosen blob store. */
export async function startService(
  o: { ports: Ports; dir: string; profDir: string | undefined; databaseUrl: string; bytesEach: number; store: BlobStoreOption; concurrency: number },
): Promise<BenchService> {
  const network = JSON.parse(readFileSync(path.join(ROOT, 'examples', 'network.json'), 'utf8')) as { participants: { id: string; fhir?: unknown }[] };
  const stOlaf = network.participants.find((p) => p.id === 'st-olaf');
  if (!stOlaf) throw new Error('example network lacks st-olaf');
  const ehrUrl = `http://127.0.0.1:${o.ports.ehr}`;
  stOlaf.fhir = { baseUrl: `${ehrUrl}/fhir/R4`, tokenUrl: `${ehrUrl}/auth/token`, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: 30_000 };
  const networkFile = path.join(o.dir, 'network.json');
  await writeFile(networkFile, JSON.stringify(network));
  const dataDir = path.join(o.dir, 'data');
  let storeEnv: Record<string, string> = { BLOB_STORE: 'files', BLOB_DIR: path.join(dataDir, 'blobs') };
  let store = `files in ${storeEnv.BLOB_DIR}`;
  if (o.store === 's3') {
    const s3 = await startS3Server();
    onCleanup('stop the S3 server', () => s3.stop());
    storeEnv = s3.env('bench/');
    store = `s3 (s3rver in the bench process) at ${s3.endpoint}, bucket ${s3.bucket}`;
  }
  const env = childEnv({
    ...serviceEnv({ port: await freePort(), dataDir, databaseUrl: o.databaseUrl, networkFile, logLevel: 'warn' }),
    MAX_ATTACHMENT_BYTES: String(Math.max(100 * MiB, 2 * o.bytesEach)),
    ATTACHMENT_CONCURRENCY: String(o.concurrency),
    ...storeEnv,
  });
  const svc = await startServiceProcess(env, { nodeArgs: o.profDir ? ['--cpu-prof', `--cpu-prof-dir=${o.profDir}`] : [] });
  return Object.assign(svc, { store });
}

/** The CPU profile of the assembly window(s), by package and by function. */
export function profileReport(file: string, windows: [number, number][]): string {
  const part = profileWindow(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, windows);
  if (!part) return `(profile ${file}: no samples in the assembly window)`;
  const summary = summariseProfile(part, 25);
  const line = (s: { label: string; ms: number; share: number }) => `  ${pct(s.share).padStart(6)}  ${(s.ms / 1000).toFixed(2).padStart(6)} s  ${s.label}`;
  return [
    `service CPU profile of the assembly window(s): busy ${(summary.busyMs / 1000).toFixed(1)} s of ${(summary.wallMs / 1000).toFixed(1)} s sampled (${pct(summary.busyMs / summary.wallMs)} of the main thread)`,
    '',
    'by package / folder (self time):',
    ...summary.byPackageSelf.map(line),
    '',
    'by package / folder (inclusive: on the stack):',
    ...summary.byPackageInclusive.map(line),
    '',
    'top functions by self time:',
    ...summary.topSelf.map(line),
    '',
    `(profile: ${file}; open in Chrome DevTools. Main thread only: hashing and socket I/O done in libuv/OpenSSL on the main thread count, PostgreSQL's work does not.)`,
  ].join('\n');
}
