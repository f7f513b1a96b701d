import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { createLogger, type Logger } from '../../src/log/logger.ts';
import { type RunningService, type StartOptions, startService } from '../../src/service.ts';
import { openTestDatabase } from './database.ts';

/** A port that was free a moment ago (the service needs to know its URL before listening: token audience). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Config as the service would read it, for tests: silent logs, a temp DATA_DIR, a free port. */
export async function testConfig(env: Record<string, string> = {}): Promise<Config> {
  const port = await freePort();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'so-test-'));
  return loadConfig({ NODE_ENV: 'test', HOST: '127.0.0.1', PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}`, DATA_DIR: dataDir, LOG_LEVEL: 'silent', ...env });
}

export interface TestService extends RunningService {
  config: Config;
}

/**
 * Starts the real service (example network) on a fresh test database: PGlite, or PostgreSQL when
 * DATABASE_URL is set. Its temporary DATA_DIR (signing key, the `files` blob store) is removed by
 * `stop()` unless the caller gave DATA_DIR.
 */
export async function startTestService(env: Record<string, string> = {}, log?: Logger, options: Omit<StartOptions, 'database'> = {}): Promise<TestService> {
  const config = await testConfig(env);
  const database = await openTestDatabase();
  const service = await startService(config, log ?? createLogger({ level: 'silent' }), { ...options, database });
  const ownDir = env.DATA_DIR === undefined;
  return {
    ...service,
    config,
    async stop() {
      await service.stop();
      if (ownDir) await rm(config.dataDir, { recursive: true, force: true });
    },
  };
}
