/**
 * Audit retention: AuditEvents kept for AUDIT_RETENTION (default six years, the HIPAA period for
 * audit records), then exported to an NDJSON archive and removed from the store
 * (`npm run audit:export -- --before DATE`, src/cli/audit-export.ts; docs/audit.md).
 *
 * The export works in bounded batches, oldest first. Each batch is appended to the archive file
 * (one AuditEvent JSON per line), the file is fsync'd (and its directory, when the file is new),
 * and only then are those AuditEvents deleted, in one transaction per batch: the current row,
 * every history row, and the coalescing window that names it. A process killed at any point
 * loses nothing: an AuditEvent is deleted only once its line is durable.
 *
 * Re-running with the same file after a crash does not write a line twice: before exporting
 * anything, the export reads the file back, drops a last line left incomplete, and deletes the
 * AuditEvents whose lines are already there (the batch written but not yet deleted when the
 * process died). A line is an AuditEvent `id` and `meta.versionId`: an AuditEvent is deleted
 * only if its stored version is the one written, so one that changed after it was written (a
 * coalesced read within the same minute, possible only with --force) stays, and a later export
 * writes its newer version as another line (the later line supersedes the earlier one).
 *
 * Which AuditEvents: those last written before DATE (`resource.last_updated`; for all but a
 * coalesced AuditEvent that is when it was recorded; for a coalesced one, its last read).
 * Other processes may write meanwhile: new AuditEvents are written now, after DATE.
 */
import { createReadStream } from 'node:fs';
import { open, stat, truncate, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { AuditEvent } from '@medplum/fhirtypes';
import { and, asc, count, eq, gt, inArray, lt, min, or, sql } from 'drizzle-orm';
import type { Db } from '../store/database.ts';
import { auditReadWindows, resourceHistory, resources } from '../store/schema.ts';

/** How long AuditEvents are kept in the store: whole calendar years, or days (AUDIT_RETENTION_YEARS / _DAYS). */
export type AuditRetention = { years: number } | { days: number };

/** The default retention: six years (HIPAA, 45 CFR 164.316(b)(2)). */
export const DEFAULT_AUDIT_RETENTION: AuditRetention = { years: 6 };

/** The newest DATE an export may take without `--force`: now minus the retention (calendar years in UTC, or days of 24 h). */
export function retentionCutoff(now: Date, retention: AuditRetention): Date {
  if ('days' in retention) return new Date(now.getTime() - retention.days * 86_400_000);
  const cutoff = new Date(now);
  cutoff.setUTCFullYear(cutoff.getUTCFullYear() - retention.years);
  return cutoff;
}

/** The retention as people say it: `6 years`, `30 days`. */
export function describeRetention(retention: AuditRetention): string {
  const [n, unit] = 'days' in retention ? [retention.days, 'day'] : [retention.years, 'year'];
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

export interface ExportOptions {
  /** AuditEvents last written before this instant are exported. */
  before: Date;
  /** The NDJSON archive; appended to when it exists (see the module comment). */
  out: string;
  /** AuditEvents per batch (one SELECT, one append + fsync, one delete transaction). Default 500. */
  batchSize?: number;
  /** Progress after each batch. */
  onBatch?: (progress: { written: number; deleted: number }) => void;
  /**
   * The durability steps, replaceable in tests (to spy on them, or to stop between the write
   * and the delete as a crash would). Defaults: `handle.sync()` and an fsync of the directory.
   */
  io?: Partial<ExportIo>;
}

export interface ExportIo {
  syncFile(handle: FileHandle): Promise<void>;
  syncDirectory(dir: string): Promise<void>;
  /** Runs after a batch is durable in the file and before it is deleted from the store. */
  beforeDelete(ids: readonly string[]): Promise<void>;
}

export interface ExportResult {
  file: string;
  /** Lines this run appended. */
  written: number;
  /** AuditEvents this run deleted from the store, recovered ones included. */
  deleted: number;
  /** Of `deleted`: AuditEvents whose lines a previous run had written but not deleted. */
  recovered: number;
  /** Bytes of an incomplete last line a previous run left, dropped before appending. */
  truncatedBytes: number;
}

async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

const DEFAULT_IO: ExportIo = {
  syncFile: (handle) => handle.sync(),
  syncDirectory: fsyncDirectory,
  beforeDelete: async () => undefined,
};

interface Written {
  id: string;
  versionId: number;
}

/**
 * Deletes these AuditEvents, every trace of them, in one transaction: the current row (only if
 * it is still the version written), then the history rows and the coalescing window of those deleted.
 */
async function deleteWritten(db: Db, batch: readonly Written[]): Promise<number> {
  if (batch.length === 0) return 0;
  return db.transaction(async (tx) => {
    const deleted = await tx
      .delete(resources)
      .where(
        and(
          eq(resources.resourceType, 'AuditEvent'),
          sql`(${resources.id}, ${resources.versionId}) IN (SELECT id, version_id FROM jsonb_to_recordset(${JSON.stringify(batch.map((w) => ({ id: w.id, version_id: w.versionId })))}::jsonb) AS x(id text, version_id integer))`,
        ),
      )
      .returning({ id: resources.id });
    const ids = deleted.map((d) => d.id);
    if (ids.length > 0) {
      await tx.delete(resourceHistory).where(and(eq(resourceHistory.resourceType, 'AuditEvent'), inArray(resourceHistory.id, ids)));
      await tx.delete(auditReadWindows).where(inArray(auditReadWindows.eventId, ids));
    }
    return ids.length;
  });
}

/**
 * Before appending to an archive a previous run wrote: drops an incomplete last line, then
 * deletes the AuditEvents whose lines are in the file but which are still stored.
 */
async function recover(db: Db, file: string, batchSize: number, io: ExportIo): Promise<{ recovered: number; truncatedBytes: number }> {
  const size = (await stat(file)).size;
  if (size === 0) return { recovered: 0, truncatedBytes: 0 };
  // The last newline: what follows it is a line whose write did not finish.
  const handle = await open(file, 'r+');
  let truncatedBytes = 0;
  try {
    const tail = Buffer.alloc(Math.min(size, 1 << 20));
    let end = size;
    let lastNewline = -1;
    while (end > 0 && lastNewline < 0) {
      const start = Math.max(0, end - tail.length);
      const { bytesRead } = await handle.read(tail, 0, end - start, start);
      const at = tail.subarray(0, bytesRead).lastIndexOf(0x0a);
      if (at >= 0) lastNewline = start + at;
      end = start;
    }
    const complete = lastNewline + 1;
    if (complete < size) {
      truncatedBytes = size - complete;
      await truncate(file, complete);
    }
    await io.syncFile(handle);
  } finally {
    await handle.close();
  }
  let recovered = 0;
  let batch: Written[] = [];
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const event = JSON.parse(line) as AuditEvent;
    batch.push({ id: event.id as string, versionId: Number(event.meta?.versionId) });
    if (batch.length >= batchSize) {
      recovered += await deleteWritten(db, batch);
      batch = [];
    }
  }
  recovered += await deleteWritten(db, batch);
  return { recovered, truncatedBytes };
}

/** Exports the AuditEvents last written before `options.before` to `options.out`, then deletes them (see the module comment). */
export async function exportAuditEvents(db: Db, options: ExportOptions): Promise<ExportResult> {
  const io: ExportIo = { ...DEFAULT_IO, ...options.io };
  const batchSize = options.batchSize ?? 500;
  const file = path.resolve(options.out);
  const existed = await stat(file).then(
    () => true,
    () => false,
  );
  const { recovered, truncatedBytes } = existed ? await recover(db, file, batchSize, io) : { recovered: 0, truncatedBytes: 0 };
  const handle = await open(file, 'a');
  let written = 0;
  let deleted = recovered;
  try {
    // A new file's directory entry is made durable too, before anything is deleted.
    await io.syncFile(handle);
    if (!existed) await io.syncDirectory(path.dirname(file));
    let after: { lastUpdated: Date; id: string } | undefined;
    for (;;) {
      const rows = await db
        .select({ id: resources.id, versionId: resources.versionId, lastUpdated: resources.lastUpdated, content: resources.content })
        .from(resources)
        .where(
          and(
            eq(resources.resourceType, 'AuditEvent'),
            lt(resources.lastUpdated, options.before),
            after ? or(gt(resources.lastUpdated, after.lastUpdated), and(eq(resources.lastUpdated, after.lastUpdated), gt(resources.id, after.id))) : undefined,
          ),
        )
        .orderBy(asc(resources.lastUpdated), asc(resources.id))
        .limit(batchSize);
      if (rows.length === 0) break;
      await handle.write(rows.map((r) => `${JSON.stringify(r.content)}\n`).join(''));
      await io.syncFile(handle);
      written += rows.length;
      await io.beforeDelete(rows.map((r) => r.id));
      deleted += await deleteWritten(db, rows.map((r) => ({ id: r.id, versionId: r.versionId })));
      const last = rows[rows.length - 1] as (typeof rows)[number];
      after = { lastUpdated: last.lastUpdated, id: last.id };
      options.onBatch?.({ written, deleted });
    }
  } finally {
    await handle.close();
  }
  return { file, written, deleted, recovered, truncatedBytes };
}

export interface RetentionStatus {
  /** AuditEvents last written before the retention cutoff (not exported yet). */
  pastRetention: number;
  /** When the oldest of them was last written. */
  oldest?: Date;
  cutoff: Date;
}

/** How many AuditEvents are older than the retention: what `npm run audit:export` would take with DATE = the cutoff. */
export async function auditRetentionStatus(db: Db, now: Date, retention: AuditRetention): Promise<RetentionStatus> {
  const cutoff = retentionCutoff(now, retention);
  const [row] = await db
    .select({ n: count(), oldest: min(resources.lastUpdated) })
    .from(resources)
    .where(and(eq(resources.resourceType, 'AuditEvent'), lt(resources.lastUpdated, cutoff)));
  const oldest = row?.oldest ? new Date(row.oldest) : undefined;
  return { pastRetention: Number(row?.n ?? 0), ...(oldest ? { oldest } : {}), cutoff };
}

/** Deletes the coalescing windows of minutes long past (they only serve reads within their minute). */
export async function pruneReadWindows(db: Db, now: Date): Promise<number> {
  const deleted = await db
    .delete(auditReadWindows)
    .where(lt(auditReadWindows.windowStart, new Date(now.getTime() - 3_600_000)))
    .returning({ eventId: auditReadWindows.eventId });
  return deleted.length;
}
