import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { createLogger, type Logger } from '../../src/log/logger.ts';
import { type RunningService, type StartOptions, startService } from '../../src/service.ts';
import { startS3Server } from './blob-stores.ts';
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
 * DATABASE_URL is set. Attachment bytes go to the `files` blob store in its temporary DATA_DIR,
 * or with TEST_BLOB_STORE=s3 to a local S3 server (s3rver) started for it. `stop()` removes the
 * DATA_DIR (unless the caller gave one) and stops that server.
 */
export async function startTestService(env: Record<string, string> = {}, log?: Logger, options: Omit<StartOptions, 'database'> = {}): Promise<TestService> {
  const s3 = process.env.TEST_BLOB_STORE === 's3' && !env.BLOB_STORE ? await startS3Server() : undefined;
  const config = await testConfig({ ...s3?.env('service/'), ...env });
  const database = await openTestDatabase();
  const ownDir = env.DATA_DIR === undefined;
  const cleanUp = async () => {
    await s3?.stop();
    if (ownDir) await rm(config.dataDir, { recursive: true, force: true });
  };
  let service: RunningService;
  try {
    service = await startService(config, log ?? createLogger({ level: 'silent' }), { ...options, database });
  } catch (err) {
    await cleanUp();
    throw err;
  }
  return {
    ...service,
    config,
    async stop() {
      // The test's own idle keep-alive connections would otherwise keep the drain waiting for their timeout.
      service.server.closeIdleConnections();
      await service.stop();
      await cleanUp();
    },
  };
}
