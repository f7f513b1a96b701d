/**
 * The real service for `npm run bench:intake`, in its own process: config from the
 * environment (loadConfig), the shipped example network, a signing key generated into a
 * temporary DATA_DIR. With DATABASE_URL: PostgreSQL in the schema BENCH_SCHEMA (created here,
 * dropped by the parent); without: PGlite in DATA_DIR, as the service runs without one. Logs
 * nothing (LOG_LEVEL=silent is set by the parent); announces its URL on stdout once listening.
 *
 * Commands (child-protocol.ts) besides usage and profiling: `rows <serviceRequestId> <file>`
 * writes the rows that referral's intake wrote (lib/referral-rows.ts) to a JSON file, for the
 * raw-insert baseline; `counts` answers the rows per table.
 *
 * BENCH_SERVICE_ROOT (default: this checkout) loads src/ from another checkout instead, e.g. a
 * `git worktree` of main, for `npm run bench:intake -- --compare <dir>` A/B runs.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { announceReady, serveParent } from './child-protocol.ts';
import { countRows, type Query, readReferralRows } from './lib/referral-rows.ts';

const root = path.resolve(process.env.BENCH_SERVICE_ROOT ?? path.join(import.meta.dirname, '..', '..'));
const load = <T>(file: string): Promise<T> => import(pathToFileURL(path.join(root, 'src', file)).href) as Promise<T>;
const { loadConfig } = await load<typeof import('../../src/config/config.ts')>('config/config.ts');
const { createLogger } = await load<typeof import('../../src/log/logger.ts')>('log/logger.ts');
const { startService } = await load<typeof import('../../src/service.ts')>('service.ts');
const { openDatabase } = await load<typeof import('../../src/store/database.ts')>('store/database.ts');

const config = loadConfig(process.env);
const schemaName = process.env.BENCH_SCHEMA;
if (config.databaseUrl && !schemaName) throw new Error('intake-server: BENCH_SCHEMA is required with DATABASE_URL');

const log = createLogger({ level: config.logLevel });
const database = config.databaseUrl ? await openDatabase({ databaseUrl: config.databaseUrl, schemaName, poolSize: config.databasePoolSize }) : undefined;
const service = await startService(config, log, database ? { database } : {});
const raw = service.database.raw;
const query: Query = (text, params) => (raw.kind === 'postgres' ? raw.pool.query(text, params) : raw.client.query(text, params)) as ReturnType<Query>;

serveParent({
  stop: () => service.stop(),
  commands: {
    async rows([serviceRequestId, file]) {
      const rows = await readReferralRows(query, service.jobs.schema, String(serviceRequestId));
      await writeFile(String(file), JSON.stringify(rows));
      return { tables: rows.tables.map((t) => `${t.table} ${t.rows.length}`).join(', ') };
    },
    counts: () => countRows(query, service.jobs.schema),
  },
});
announceReady({ url: service.url, path: '/second-opinions', root, store: service.database.kind, schema: schemaName ?? '(PGlite)', poolSize: config.databasePoolSize });
