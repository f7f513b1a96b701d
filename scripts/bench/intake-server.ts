/**
 * The real service for `npm run bench:intake`, in its own process: config from the
 * environment (loadConfig), PostgreSQL from DATABASE_URL in the schema BENCH_SCHEMA (created
 * here, dropped by the parent), the shipped example network, a signing key generated into a
 * temporary DATA_DIR. Logs nothing (LOG_LEVEL=silent is set by the parent); announces its URL
 * on stdout once listening.
 *
 * BENCH_SERVICE_ROOT (default: this checkout) loads src/ from another checkout instead, e.g. a
 * `git worktree` of main, for `npm run bench:intake -- --compare <dir>` A/B runs.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { announceReady, serveParent } from './child-protocol.ts';

const root = path.resolve(process.env.BENCH_SERVICE_ROOT ?? path.join(import.meta.dirname, '..', '..'));
const load = <T>(file: string): Promise<T> => import(pathToFileURL(path.join(root, 'src', file)).href) as Promise<T>;
const { loadConfig } = await load<typeof import('../../src/config/config.ts')>('config/config.ts');
const { createLogger } = await load<typeof import('../../src/log/logger.ts')>('log/logger.ts');
const { startService } = await load<typeof import('../../src/service.ts')>('service.ts');
const { openDatabase } = await load<typeof import('../../src/store/database.ts')>('store/database.ts');

const config = loadConfig(process.env);
if (!config.databaseUrl) throw new Error('intake-server: DATABASE_URL is required');
const schemaName = process.env.BENCH_SCHEMA;
if (!schemaName) throw new Error('intake-server: BENCH_SCHEMA is required');

const log = createLogger({ level: config.logLevel });
const database = await openDatabase({ databaseUrl: config.databaseUrl, schemaName, poolSize: config.databasePoolSize });
const service = await startService(config, log, { database });
serveParent({ stop: () => service.stop() });
announceReady({ url: service.url, path: '/second-opinions', root, store: database.kind, schema: schemaName, poolSize: config.databasePoolSize });
