import { loadConfigOrExit } from './config/config.ts';
import { createLogger } from './log/logger.ts';
import { exampleBanner } from './network/example-banner.ts';
import { startService } from './service.ts';

/**
 * The process entry: read config, start the service, and drain on SIGTERM/SIGINT
 * (stop accepting, finish in-flight requests, close the store).
 */
async function main(): Promise<void> {
  const config = loadConfigOrExit(process.env, 2);
  const log = createLogger({ level: config.logLevel });
  let service;
  try {
    service = await startService(config, log);
  } catch (err) {
    // Start-up problems say what is wrong: the configuration errors (network file, keys) carry
    // their message, others their class and code (ECONNREFUSED, a SQLSTATE).
    log.fatal({ err }, 'start-up failed');
    process.exit(1);
  }
  const running = service;
  // The shipped example network (no NETWORK_FILE): the URLs and the token command a newcomer wants.
  const banner = exampleBanner({ publicUrl: config.publicUrl, isExample: config.networkFile === undefined });
  if (banner) process.stderr.write(banner);
  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    running.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

await main();
