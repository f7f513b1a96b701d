import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createApp } from './app.ts';
import type { AuthDeps } from './auth/auth-deps.ts';
import { loadSigningKey } from './auth/signing-key.ts';
import type { Config } from './config/config.ts';
import { createValidator } from './fhir/validator.ts';
import type { Logger } from './log/logger.ts';
import { PgBossQueue } from './jobs/pg-boss-queue.ts';
import { QUEUE_POLICIES } from './jobs/queues.ts';
import { loadNetwork } from './network/network.ts';
import { createDatabaseJtiStore } from './store/assertion-jti-store.ts';
import { type Database, openDatabase } from './store/database.ts';
import { ResourceStore, type ResourceValidator } from './store/resource-store.ts';

export interface RunningService {
  /** Base URL the server listens on (http://host:port). */
  url: string;
  server: Server;
  database: Database;
  jobs: PgBossQueue;
  /** Graceful stop: stop accepting, let in-flight requests finish (up to the timeout), close the store. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** An already open database (tests); otherwise opened from the config. */
  database?: Database;
  now?: () => Date;
  /** The FHIR validator every write goes through; defaults to R4 + our profiles. */
  validator?: ResourceValidator;
}

const PACKAGE = JSON.parse(readFileSync(path.join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { name: string; version: string };

/**
 * Start-up in one place: network -> signing key -> store (migrations) -> job queue -> validator -> HTTP.
 * `stop()` undoes it in reverse. main.ts wires it to signals; tests call it directly.
 */
export async function startService(config: Config, log: Logger, options: StartOptions = {}): Promise<RunningService> {
  const network = await loadNetwork(config.networkFile);
  if (network.isExample) {
    log.warn({ networkFile: 'examples/network.json' }, 'using the shipped EXAMPLE network and example client keys: for trying the service only, set NETWORK_FILE for real use');
  }
  const signingKey = await loadSigningKey(config);
  const now = options.now ?? (() => new Date());
  const database = options.database ?? (await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: config.databasePoolSize }));
  let migrated = false;
  const jobs = new PgBossQueue(database.raw, {
    queues: QUEUE_POLICIES,
    onError: (err) => log.error({ err: { name: err.name, message: err.message } }, 'job queue background error'),
  });
  try {
    await database.migrate();
    migrated = true;
    await jobs.start();
  } catch (err) {
    await jobs.stop({ graceful: false }).catch(() => undefined);
    if (!options.database) await database.close();
    throw err;
  }
  const validator = options.validator ?? createValidator();
  const store = new ResourceStore(database.db, validator, now);
  const auth: AuthDeps = { config, network, signingKey, jtiStore: createDatabaseJtiStore(database.db, { now }), now, log };
  const app = createApp({
    config,
    log,
    store,
    network,
    auth,
    jobs,
    now,
    software: { name: PACKAGE.name, version: PACKAGE.version },
    ready: async () => {
      if (!migrated) throw new Error('migrations pending');
      await database.ping();
    },
  });

  const server = app.listen(config.port, config.host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  log.info({ port, store: database.kind }, 'listening');

  let stopping: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    server,
    database,
    jobs,
    stop() {
      stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const timer = setTimeout(() => server.closeAllConnections(), config.shutdownTimeoutMs);
        await closed;
        clearTimeout(timer);
        // The queue stops before the store closes (on PGlite it shares the one session).
        await jobs.stop({ graceful: true });
        await database.close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}
