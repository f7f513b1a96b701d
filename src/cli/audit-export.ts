/**
 * The audit archive export: archives the AuditEvents last written before DATE to an NDJSON file
 * and removes them from the store (src/audit/audit-archive.ts; docs/audit.md). Two ways to run it:
 *
 *   npm run audit:export -- --before DATE [--out FILE] [--force] [--batch N]   # the sources (tsx)
 *   node dist/cli/audit-export.js --before DATE [...]                          # the compiled build
 *
 * the second one in the production image, e.g. `docker compose exec service node
 * dist/cli/audit-export.js --before 2020-01-01 --out /data/audit-2020.ndjson`. It reads the
 * configuration the service reads (DATABASE_URL or DATA_DIR, AUDIT_RETENTION_*) and applies the
 * schema migrations first.
 *
 * On PostgreSQL it runs beside the service (any number of replicas). The embedded PGlite
 * database belongs to one process: stop the service first (it refuses while the database is open).
 *
 * Exit status: 0 when done, 1 when the export failed (run it again with the same --out: it
 * continues), 2 on bad arguments or configuration.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportAuditEvents } from '../audit/audit-archive.ts';
import { AUDIT_EXPORT_USAGE, parseExportArgs } from '../audit/audit-export-args.ts';
import { loadConfigOrExit } from '../config/config.ts';
import { openDatabase } from '../store/database.ts';

async function sha256Of(file: string): Promise<{ sha256: string; lines: number }> {
  const hash = createHash('sha256');
  let lines = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    for (const byte of chunk as Buffer) if (byte === 0x0a) lines++;
  }
  return { sha256: hash.digest('hex'), lines };
}

/** Runs the export with these arguments and environment; resolves to the exit status. */
export async function runAuditExport(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const config = loadConfigOrExit(env, 2);
  const parsed = parseExportArgs(argv, new Date(), config.auditRetention);
  if (!parsed.ok) {
    if (parsed.error) process.stderr.write(`audit:export: ${parsed.error}\n\n`);
    (parsed.help ? process.stdout : process.stderr).write(AUDIT_EXPORT_USAGE);
    return parsed.help ? 0 : 2;
  }
  const { before, out, batchSize, force } = parsed.args;

  // The embedded database is open in a process while this file exists (PGlite writes it on open and removes it on close).
  const pgliteLock = path.join(config.dataDir, 'pglite', 'postmaster.pid');
  if (!config.databaseUrl && existsSync(pgliteLock)) {
    process.stderr.write(
      `audit:export: the embedded database in ${config.dataDir} is open in another process (the service?): stop it first.\n` +
        `If no process has it open (one was killed and left ${pgliteLock} behind), start and stop the service once, then run this again.\n`,
    );
    return 2;
  }

  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: 2 });
  let status = 0;
  try {
    await database.migrate();
    process.stdout.write(`exporting AuditEvents last written before ${before.toISOString()} from the ${database.kind} store to ${out}${force ? ' (--force: within the retention)' : ''}\n`);
    const started = performance.now();
    const result = await exportAuditEvents(database.db, {
      before,
      out,
      batchSize,
      onBatch: ({ written, deleted }) => {
        if (written % (batchSize * 20) === 0) process.stdout.write(`  ${written} written, ${deleted} deleted\n`);
      },
    });
    const seconds = (performance.now() - started) / 1000;
    if (result.truncatedBytes > 0) process.stdout.write(`dropped an incomplete last line (${result.truncatedBytes} bytes) a previous run left\n`);
    if (result.recovered > 0) process.stdout.write(`deleted ${result.recovered} AuditEvents a previous run had written but not deleted\n`);
    process.stdout.write(`${result.written} AuditEvents written and ${result.deleted} deleted in ${seconds.toFixed(1)} s\n`);
    const { sha256, lines } = await sha256Of(result.file);
    process.stdout.write(`${result.file}: ${lines} lines in all, sha256 ${sha256}\n`);
  } catch (err) {
    process.stderr.write(`audit:export failed: ${(err as Error).message}\nNothing written to the file was lost; run the same command again to continue.\n`);
    status = 1;
  } finally {
    await database.close();
  }
  return status;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exit(await runAuditExport(process.argv.slice(2), process.env));
}
