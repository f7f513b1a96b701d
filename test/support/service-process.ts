/**
 * The service as a real child process, started exactly as `npm start` does (`node --import tsx src/main.ts`
 * on the project's Node), for tests that kill it, restart it or run several replicas: its JSON
 * log lines are collected, it can be SIGKILLed at a chosen moment, and it gets a database of its
 * own (a PGlite directory, or a fresh PostgreSQL database when DATABASE_URL is set).
 *
 *   const db = await createProcessDatabase();
 *   const svc = await startServiceProcess({ DATA_DIR: dir, NETWORK_FILE: file, ...db.env });
 *   await svc.get('st-olaf', '/second-opinions/x');
 *   await svc.stop(); await db.drop();
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { openDatabase } from '../../src/store/database.ts';
import { migratedPgliteDump } from './database.ts';
import { clientIdOf } from './example-network.ts';
import { freePort } from './service.ts';
import { getAccessToken } from './tokens.ts';

const ROOT = path.join(import.meta.dirname, '..', '..');

export type LogLine = Record<string, unknown> & { msg?: string };

/** A running `src/main.ts` child process. */
export interface ServiceProcess {
  /** `http://127.0.0.1:PORT`, also its PUBLIC_URL (the audience of its tokens). */
  url: string;
  /** The child's process id (for sampling its memory). */
  pid: number | undefined;
  /** Its stdout, one parsed JSON log line each (non-JSON lines are kept as `{ msg: '<raw>', raw: true }`). */
  logs: LogLine[];
  readonly stderr: string;
  /** Resolves with the exit code (null when killed by a signal). */
  exit: Promise<number | null>;
  readonly exited: boolean;
  /** Sends a signal to the child (only the child: tsx runs in-process, there are no grandchildren). */
  kill(signal: NodeJS.Signals): void;
  /** Waits for a log line matching `match`; throws with the log so far on timeout or exit. */
  waitFor(match: (line: LogLine) => boolean, ms?: number): Promise<LogLine>;
  /** Calls the service's HTTP API as a participant of the example network (token fetched once per participant). */
  call<T>(method: string, pathname: string, participant: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. Safe to call when already gone. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Spawns the service with `env` (plus PATH and HOME; nothing else is inherited, so the parent's
 * DATABASE_URL does not leak in) on a free port, and waits for its `listening` line. `compiled`:
 * runs dist/main.js with plain node instead of the sources (build it first, `build()` of scripts/build.ts).
 */
export async function startServiceProcess(env: Record<string, string>, options: { startupMs?: number; compiled?: boolean } = {}): Promise<ServiceProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  // compiled: `node dist/main.js` as the production start runs it (the caller ran `npm run build`).
  const child: ChildProcess = spawn(process.execPath, options.compiled ? ['dist/main.js'] : ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: String(port), PUBLIC_URL: url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let stderr = '';
  let exited = false;
  const waiters: (() => void)[] = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  let buffer = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ msg: line, raw: true });
      }
    }
    wake();
  });
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      exited = true;
      wake();
      resolve(code);
    }),
  );
  const tokens = new Map<string, Promise<string>>();

  const proc: ServiceProcess = {
    url,
    pid: child.pid,
    logs,
    get stderr() {
      return stderr;
    },
    exit,
    get exited() {
      return exited;
    },
    kill(signal) {
      if (!exited) child.kill(signal);
    },
    async waitFor(match, ms = 60_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = logs.find(match);
        if (found) return found;
        if (exited) throw new Error(`service exited before the awaited log line; log:\n${tail(logs)}\n${stderr}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for a log line; log so far:\n${tail(logs)}\n${stderr}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 250);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    async call<T>(method: string, pathname: string, participant: string, body?: unknown) {
      let token = tokens.get(participant);
      if (!token) {
        token = getAccessToken(url, clientIdOf(participant));
        tokens.set(participant, token);
        token.catch(() => tokens.delete(participant));
      }
      const res = await fetch(`${url}${pathname}`, {
        method,
        headers: { authorization: `Bearer ${await token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
    },
    async stop(graceMs = 15_000) {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
  };
  try {
    await proc.waitFor((l) => l.msg === 'listening', options.startupMs ?? 90_000);
  } catch (err) {
    proc.kill('SIGKILL');
    await exit;
    throw err;
  }
  return proc;
}

function tail(logs: LogLine[], n = 40): string {
  return logs
    .slice(-n)
    .map((l) => JSON.stringify(l))
    .join('\n');
}

/** Where a service process keeps its data: env for the child, and how to remove it afterwards. */
export interface ProcessDatabase {
  kind: 'pglite' | 'postgres';
  /**
   * DATA_DIR (always: the generated signing key lives there), BLOB_DIR (attachment files, shared by
   * every replica given this env, as replicas must share their blob store) and, on PostgreSQL, DATABASE_URL.
   */
  env: { DATA_DIR: string; BLOB_DIR: string; DATABASE_URL?: string };
  /** A further DATA_DIR for a second replica on the same database (PostgreSQL only). */
  dataDir(): Promise<string>;
  /** Drops the database (PostgreSQL, forcing off leftover connections) and removes the directories. */
  drop(): Promise<void>;
}

/**
 * A fresh database for service processes. With DATABASE_URL set: a new database created with
 * `CREATE DATABASE` on that server (main.ts cannot be pointed at a schema, so a schema per test
 * as in database.ts is not an option). Otherwise: a PGlite directory under DATA_DIR, migrated.
 */
export async function createProcessDatabase(): Promise<ProcessDatabase> {
  const dirs: string[] = [];
  const newDir = async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'so-proc-'));
    dirs.push(dir);
    return dir;
  };
  const dataDir = await newDir();
  const removeDirs = async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  };
  const serverUrl = process.env.DATABASE_URL;
  const blobDir = path.join(dataDir, 'blobs');
  if (!serverUrl) {
    // Already migrated, from the dump the in-memory test databases start from: the child skips
    // PGlite's seconds of initialising a data directory (its migrate() finds nothing to do).
    const seeded = await openDatabase({ dataDir, loadDataDir: await migratedPgliteDump() });
    await seeded.close();
    return { kind: 'pglite', env: { DATA_DIR: dataDir, BLOB_DIR: blobDir }, dataDir: newDir, drop: removeDirs };
  }
  const name = `so_proc_${randomBytes(6).toString('hex')}`;
  await admin(serverUrl, `CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    kind: 'postgres',
    env: { DATA_DIR: dataDir, BLOB_DIR: blobDir, DATABASE_URL: url.toString() },
    dataDir: newDir,
    async drop() {
      await admin(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await removeDirs();
    },
  };
}

async function admin(url: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

export { writeSandboxNetwork } from './example-network.ts';
