/**
 * The soak's own world: a throwaway PostgreSQL cluster (initdb in a temp dir, trust auth, a
 * free port; restarted with pg_ctl without disturbing any other database on the machine), the
 * sandbox EHR as the referrer, and two service processes on that cluster.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Consent, Organization } from '@medplum/fhirtypes';
import pg from 'pg';
import { SANDBOX_ORGANIZATIONS } from '../../test/support/sandbox-ehr/seed-resources.ts';
import { type SandboxEhr, startSandboxEhr } from '../../test/support/sandbox-ehr/server.ts';
import { freePort } from '../../test/support/service.ts';
import type { ExampleParticipant } from '../../test/support/example-network.ts';
import { type ServiceProcess, startServiceProcess, writeSandboxNetwork } from '../../test/support/service-process.ts';

const run = promisify(execFile);

/** The highest PostgreSQL under /usr/lib/postgresql (its bin directory). */
export function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  if (!versions[0]) throw new Error(`no PostgreSQL under ${root}`);
  return path.join(root, versions[0], 'bin');
}

/** A PostgreSQL cluster of the soak's own. */
export interface SoakPostgres {
  url: string;
  port: number;
  restart(): Promise<void>;
  /** Terminates every client backend on the soak database (the service's pooled connections). */
  terminateConnections(): Promise<number>;
  query<T extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<T[]>;
  stop(): Promise<void>;
}

export async function startPostgres(): Promise<SoakPostgres> {
  const bin = postgresBin();
  const dir = await mkdtemp(path.join(tmpdir(), 'soak-pg-'));
  const data = path.join(dir, 'data');
  const port = await freePort();
  // PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user.
  const asRoot = process.getuid?.() === 0;
  const pgRun = (file: string, args: string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', file, ...args]) : run(file, args));
  if (asRoot) await run('chown', ['postgres:postgres', dir]);
  await pgRun(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const pgCtl = (args: string[]) => pgRun(path.join(bin, 'pg_ctl'), ['-D', data, '-w', '-t', '60', ...args]);
  const options = `-p ${port} -h 127.0.0.1 -k ${dir} -c fsync=off -c max_connections=200 -c shared_buffers=64MB`;
  await pgCtl(['-o', options, '-l', path.join(dir, 'log'), 'start']);
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query('CREATE DATABASE soak');
  await admin.end();
  const url = `postgres://postgres@127.0.0.1:${port}/soak`;
  const query = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query<T>(sql, params)).rows;
    } finally {
      await client.end();
    }
  };
  return {
    url,
    port,
    async restart() {
      await pgCtl(['-m', 'fast', '-o', options, '-l', path.join(dir, 'log'), 'restart']);
    },
    async terminateConnections() {
      const rows = await query<{ n: string }>(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = 'soak' AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
      );
      return Number(rows[0]?.n ?? 0);
    },
    query,
    async stop() {
      await pgCtl(['-m', 'immediate', 'stop']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Short leases and retries, so faults are recovered from within the run. */
export const SOAK_SERVICE_ENV: Record<string, string> = {
  DELIVERY_ATTEMPT_TIMEOUT_SECONDS: '25',
  ASSEMBLY_ATTEMPT_TIMEOUT_SECONDS: '30',
  JOB_SUPERVISE_INTERVAL_SECONDS: '2',
  DELIVERY_RETRY_DELAY_SECONDS: '1',
  DELIVERY_RETRY_MAX_DELAY_SECONDS: '4',
  ASSEMBLY_RETRY_DELAY_SECONDS: '1',
  ASSEMBLY_RETRY_MAX_DELAY_SECONDS: '4',
  TOKEN_RATE_LIMIT_PER_CLIENT: '0',
  TOKEN_RATE_LIMIT_PER_IP: '0',
  API_RATE_LIMIT_PER_CLIENT: '0',
  API_RATE_LIMIT_PER_IP: '0',
  CONSENT_RECHECK_SECONDS: '300',
  // Notifications: a receiver that was down is retried from 1 s, doubling; heartbeats every 10 s are allowed.
  WEBHOOK_RETRY_DELAY_SECONDS: '1',
  SUBSCRIPTION_MIN_HEARTBEAT_SECONDS: '5',
  SUBSCRIPTION_HEARTBEAT_SWEEP_SECONDS: '5',
  LOG_LEVEL: 'info',
  // The driver and the sandbox EHR share one busy process, so the driver's idle connections can
  // outlive the service's 5 s keep-alive while its event loop is held up: it then sends on a
  // connection the service has just closed ("other side closed"), the race a proxy in front of
  // the service avoids by closing idle upstream connections first (compose.yaml's Caddy: 4 s).
  // As the configuration advises behind such a client, the service keeps them longer.
  HTTP_KEEP_ALIVE_TIMEOUT_MS: '65000',
};

/** A replica slot: the process running now (replaced on restart) and everything it ever logged. */
export interface Replica {
  index: number;
  current: ServiceProcess | undefined;
  /** Log lines of every process this slot ran (kept across restarts). */
  pastLogs: ServiceProcess['logs'][];
  /** Peak resident set size seen, bytes (sampled from /proc). */
  peakRss: number;
  restarts: number;
  /** Set while the fault schedule kills this replica on purpose. */
  killing: boolean;
  /** Exits nobody asked for (the process died on its own), with the end of its log; it is restarted as an orchestrator would. */
  crashes: { at: number; code: number | null; tail: string }[];
  env: Record<string, string>;
}

export interface SoakTopology {
  postgres: SoakPostgres;
  ehr: SandboxEhr;
  /** The Consent on the EHR that permits disclosure to each clinic (the sandbox seeds one for Lakeside; the soak adds the others). */
  consents: Record<string, string>;
  replicas: [Replica, Replica];
  networkFile: string;
  startReplica(replica: Replica): Promise<void>;
  stop(): Promise<void>;
}

/** `editNetwork` changes participants of the network file further (the notification receiver's `notify` URLs, the push clinic's server). */
export async function startTopology(options: { editNetwork?: (byId: (id: string) => ExampleParticipant) => void } = {}): Promise<SoakTopology> {
  const postgres = await startPostgres();
  const ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 20_000 } });
  const consents = await clinicConsents(ehr);
  const timeoutMs = 4_000;
  const networkFile = await writeSandboxNetwork(ehr, { timeoutMs, ...(options.editNetwork ? { edit: options.editNetwork } : {}) });
  const base = await mkdtemp(path.join(tmpdir(), 'soak-data-'));
  for (const index of [0, 1]) await mkdir(path.join(base, `replica-${index}`));
  const blobDir = path.join(base, 'blobs');
  const replicas = [0, 1].map((index): Replica => ({
    index,
    current: undefined,
    pastLogs: [],
    peakRss: 0,
    restarts: 0,
    killing: false,
    crashes: [],
    env: { ...SOAK_SERVICE_ENV, NETWORK_FILE: networkFile, DATABASE_URL: postgres.url, DATA_DIR: path.join(base, `replica-${index}`), BLOB_DIR: blobDir },
  })) as unknown as [Replica, Replica];
  let stopping = false;
  const startReplica = async (replica: Replica) => {
    const proc = await startServiceProcess(replica.env, { startupMs: 120_000 });
    replica.current = proc;
    replica.pastLogs.push(proc.logs);
    void proc.exit.then(async (code) => {
      if (stopping || replica.killing || replica.current !== proc) return;
      const tail = [...proc.logs.slice(-8).map((l) => JSON.stringify(l)), proc.stderr.slice(-1500)].join('\n');
      replica.crashes.push({ at: Date.now(), code, tail });
      replica.restarts++;
      await new Promise((r) => setTimeout(r, 1_000));
      if (!stopping) await startReplica(replica).catch(() => undefined);
    });
  };
  // One after the other: both would run the migrations at once otherwise.
  await startReplica(replicas[0]);
  await startReplica(replicas[1]);
  return {
    postgres,
    ehr,
    consents,
    replicas,
    networkFile,
    startReplica,
    async stop() {
      stopping = true;
      await Promise.all(replicas.map((r) => r.current?.stop(5_000)));
      await ehr.stop();
      await postgres.stop();
      await rm(base, { recursive: true, force: true });
      await rm(path.dirname(networkFile), { recursive: true, force: true });
    },
  };
}

/**
 * A copy of the seeded Consent for each further clinic, naming that clinic as the recipient
 * (provision.actor), and the clinic's Organization on the EHR (the service reads it to match
 * the recipient's registry identifier).
 */
async function clinicConsents(ehr: SandboxEhr): Promise<Record<string, string>> {
  const seeded = await ehr.repo.readResource<Consent>('Consent', ehr.seeded.consentId);
  const consents: Record<string, string> = { 'lakeside-consults': ehr.seeded.consentId };
  for (const [clinic, key] of [
    ['northfield-pathology', 'northfield-pathology'],
    ['riverside-imaging', 'riverside-imaging'],
  ] as const) {
    const { name, identifier } = SANDBOX_ORGANIZATIONS[key];
    const organization = await ehr.repo.createResource<Organization>({ resourceType: 'Organization', name, identifier: [identifier] });
    const copy: Consent = { ...structuredClone(seeded), id: undefined, meta: undefined };
    copy.provision = { ...copy.provision, actor: (copy.provision?.actor ?? []).map((a) => ({ ...a, reference: { reference: `Organization/${organization.id}`, display: name } })) };
    consents[clinic] = (await ehr.repo.createResource(copy)).id as string;
  }
  return consents;
}
