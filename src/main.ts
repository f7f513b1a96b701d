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
  let signalledAt: number | undefined;
  const shutdown = (signal: string) => {
    if (signalledAt !== undefined) {
      // Ctrl-C under `npm start` arrives twice at once (from the terminal, and forwarded by npm):
      // only a signal a second or more after the first means "do not wait for the drain".
      if (Date.now() - signalledAt < 1_000) return;
      log.warn({ signal }, 'second signal during shutdown: exiting now');
      process.exit(1);
    }
    signalledAt = Date.now();
    log.info({ signal, timeoutSeconds: config.shutdownTimeoutSeconds }, 'shutting down');
    // A backstop: the drain is bounded by SHUTDOWN_TIMEOUT_SECONDS; closing the queue and the store
    // gets a further 15 s, then the process exits anyway (jobs still running are retried after their lease).
    setTimeout(() => {
      log.error({ timeoutSeconds: config.shutdownTimeoutSeconds }, 'shutdown did not finish in time: exiting');
      process.exit(1);
    }, config.shutdownTimeoutSeconds * 1000 + 15_000).unref();
    running.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

await main();
