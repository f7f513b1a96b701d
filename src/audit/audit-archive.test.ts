import { mkdtemp, readFile, rm, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AuditEvent, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/support/database.ts';
import { createValidator } from '../fhir/validator.ts';
import type { Database } from '../store/database.ts';
import { ResourceStore } from '../store/resource-store.ts';
import { auditReadWindows, resourceHistory, resources } from '../store/schema.ts';
import { auditRetentionStatus, exportAuditEvents, pruneReadWindows, type ExportIo } from './audit-archive.ts';
import { AuditLog, type AuditRecordInput } from './audit-log.ts';
import { captureLogs } from '../../test/support/log-capture.ts';
import { checkAuditRetention } from './retention-check.ts';

/** The audit archive export (audit-archive.ts), on the store the run uses (PGlite, or PostgreSQL with DATABASE_URL). */
describe('audit archive export', () => {
  let database: Database;
  let store: ResourceStore;
  let audit: AuditLog;
  let dir: string;
  let clock = new Date();
  const network = { get: (id: string) => ({ organization: { reference: `Organization/${id}` } }) };
  const read = (n: number, clientId?: string): AuditRecordInput => ({
    action: 'read',
    outcome: 'success',
    agent: { participantId: 'st-olaf', ...(clientId ? { clientId } : {}) },
    entities: [{ reference: `ServiceRequest/sr-${n}` }],
  });
  /** Records an AuditEvent as of `iso`. */
  async function recordAt(iso: string, n: number): Promise<AuditEvent> {
    clock = new Date(iso);
    return audit.record(read(n));
  }
  const storedIds = async (table: typeof resources | typeof resourceHistory = resources) =>
    (await database.db.select({ id: table.id }).from(table).where(sql`${table.resourceType} = 'AuditEvent'`)).map((r) => r.id).sort();
  const linesOf = async (file: string) => (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEvent);

  beforeAll(async () => {
    database = await openTestDatabase();
    const validator = createValidator();
    store = new ResourceStore(database.db, { validate: (r) => void validator.validate(r) }, () => clock);
    audit = new AuditLog({ store, network, now: () => clock, publicUrl: 'http://localhost' });
    dir = await mkdtemp(path.join(tmpdir(), 'audit-archive-'));
  });
  afterAll(async () => {
    await database?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await database.db.delete(resources);
    await database.db.delete(resourceHistory);
    await database.db.delete(auditReadWindows);
  });

  it('writes exactly the AuditEvents before DATE, one JSON per line, fsyncs before deleting, and deletes only them (every trace)', async () => {
    const old = [await recordAt('2019-03-01T10:00:00Z', 1), await recordAt('2019-07-01T10:00:00Z', 2), await recordAt('2019-12-31T23:59:59.999Z', 3)];
    const kept = [await recordAt('2020-01-01T00:00:00Z', 4), await recordAt('2026-12-01T10:00:00Z', 5)];
    // An old resource of another type is not the export's business.
    clock = new Date('2018-01-01T00:00:00Z');
    const task = await store.create<Task>({ resourceType: 'Task', status: 'requested', intent: 'order' }, []);
    // A coalesced read from 2019: its window row goes with it.
    clock = new Date('2019-05-05T05:05:05Z');
    const coalesced = await audit.recordCoalesced(read(9, 'st-olaf-ehr'));
    await audit.recordCoalesced(read(9, 'st-olaf-ehr'));

    const steps: string[] = [];
    const io: ExportIo = {
      syncFile: async (h) => {
        steps.push('fsync file');
        await h.sync();
      },
      syncDirectory: async (d) => {
        steps.push(`fsync dir ${path.basename(d)}`);
      },
      beforeDelete: async (ids) => {
        steps.push(`delete ${ids.length}`);
      },
    };
    const out = path.join(dir, 'first.ndjson');
    const result = await exportAuditEvents(database.db, { before: new Date('2020-01-01T00:00:00Z'), out, batchSize: 2, io });

    expect(result).toMatchObject({ written: 4, deleted: 4, recovered: 0, truncatedBytes: 0 });
    const lines = await linesOf(out);
    // Oldest first; each line the AuditEvent as stored.
    expect(lines.map((l) => l.id)).toEqual([old[0]?.id, coalesced.id, old[1]?.id, old[2]?.id]);
    expect(lines[0]).toEqual(old[0]);
    expect(lines[1]?.meta?.versionId).toBe('2');
    // The directory of the new file, then each batch made durable before it is deleted.
    expect(steps).toEqual([`fsync file`, `fsync dir ${path.basename(dir)}`, 'fsync file', 'delete 2', 'fsync file', 'delete 2']);
    expect(await storedIds()).toEqual(kept.map((e) => e.id).sort());
    expect(await storedIds(resourceHistory)).toEqual(kept.map((e) => e.id).sort());
    expect(await database.db.select().from(auditReadWindows)).toEqual([]);
    expect(await store.read('Task', task.id as string, 'system')).toEqual(task);

    // Nothing left before DATE: a second run writes and deletes nothing.
    expect(await exportAuditEvents(database.db, { before: new Date('2020-01-01T00:00:00Z'), out, batchSize: 2 })).toMatchObject({ written: 0, deleted: 0, recovered: 0 });
    expect(await linesOf(out)).toHaveLength(4);
  });

  it('a crash between the write and the delete loses nothing, and the re-run writes no line twice', async () => {
    const old = [await recordAt('2019-01-01T00:00:00Z', 1), await recordAt('2019-01-02T00:00:00Z', 2), await recordAt('2019-01-03T00:00:00Z', 3)];
    const out = path.join(dir, 'crash.ndjson');
    const crash = exportAuditEvents(database.db, {
      before: new Date('2020-01-01T00:00:00Z'),
      out,
      batchSize: 2,
      io: {
        beforeDelete: async () => {
          throw new Error('killed');
        },
      },
    });
    await expect(crash).rejects.toThrow('killed');
    // Two lines durable, nothing deleted.
    expect((await linesOf(out)).map((l) => l.id)).toEqual([old[0]?.id, old[1]?.id]);
    expect(await storedIds()).toEqual(old.map((e) => e.id).sort());
    // A process killed in the middle of the next line leaves half of it.
    await appendFile(out, '{"resourceType":"AuditEvent","id":"half');

    const rerun = await exportAuditEvents(database.db, { before: new Date('2020-01-01T00:00:00Z'), out, batchSize: 2 });
    expect(rerun).toMatchObject({ written: 1, deleted: 3, recovered: 2, truncatedBytes: '{"resourceType":"AuditEvent","id":"half'.length });
    const lines = await linesOf(out);
    expect(lines.map((l) => l.id)).toEqual(old.map((e) => e.id));
    expect(lines).toEqual(old);
    expect(await storedIds()).toEqual([]);
  });

  it('an AuditEvent changed after its line was written is kept, and exported again as its newer version', async () => {
    clock = new Date('2019-02-02T02:02:05Z');
    const first = await audit.recordCoalesced(read(7, 'st-olaf-ehr'));
    const out = path.join(dir, 'changed.ndjson');
    await expect(
      exportAuditEvents(database.db, {
        before: new Date('2020-01-01T00:00:00Z'),
        out,
        io: {
          // Another read of the same minute lands between the write and the delete.
          beforeDelete: async () => void (await audit.recordCoalesced(read(7, 'st-olaf-ehr'))),
        },
      }),
    ).resolves.toMatchObject({ written: 1, deleted: 0 });
    expect(await storedIds()).toEqual([first.id]);
    const again = await exportAuditEvents(database.db, { before: new Date('2020-01-01T00:00:00Z'), out });
    expect(again).toMatchObject({ written: 1, deleted: 1, recovered: 0 });
    // One id, two versions: the later line supersedes the earlier.
    expect((await linesOf(out)).map((l) => [l.id, l.meta?.versionId])).toEqual([
      [first.id, '1'],
      [first.id, '2'],
    ]);
  });

  it('retention status counts the AuditEvents past the retention; past coalescing windows are pruned', async () => {
    await recordAt('2019-01-01T00:00:00Z', 1);
    await recordAt('2020-06-01T00:00:00Z', 2);
    await recordAt('2026-12-01T00:00:00Z', 3);
    const status = await auditRetentionStatus(database.db, new Date('2026-12-07T00:00:00Z'), { years: 6 });
    expect(status.pastRetention).toBe(2);
    expect(status.oldest?.toISOString()).toBe('2019-01-01T00:00:00.000Z');
    expect(status.cutoff.toISOString()).toBe('2020-12-07T00:00:00.000Z');
    expect((await auditRetentionStatus(database.db, new Date('2026-12-07T00:00:00Z'), { days: 2380 })).pastRetention).toBe(1);

    clock = new Date('2026-12-07T10:00:00Z');
    await audit.recordCoalesced(read(1, 'c'));
    clock = new Date('2026-12-07T12:00:00Z');
    await audit.recordCoalesced(read(1, 'c'));
    expect(await pruneReadWindows(database.db, clock)).toBe(1);
    expect((await database.db.select().from(auditReadWindows)).map((w) => w.windowStart.toISOString())).toEqual(['2026-12-07T12:00:00.000Z']);
  });

  it('the retention check warns (count, oldest, the command to run) and sets the gauge while AuditEvents past the retention remain', async () => {
    await recordAt('2019-01-01T00:00:00Z', 1);
    await recordAt('2026-12-01T00:00:00Z', 2);
    const { log, lines } = captureLogs('info');
    let reported: number | undefined;
    const deps = { db: database.db, now: () => new Date('2026-12-07T00:00:00Z'), retention: { years: 6 }, metrics: { auditEventsPastRetention: (n: number) => (reported = n) } };
    const gauge = async () => reported;
    await checkAuditRetention(deps, log);
    expect(lines).toMatchObject([
      {
        level: 'warn',
        pastRetention: 1,
        oldest: '2019-01-01T00:00:00.000Z',
        cutoff: '2020-12-07T00:00:00.000Z',
        msg: 'AuditEvents older than the audit retention (6 years) are still in the store; archive them with: npm run audit:export -- --before 2020-12-07',
      },
    ]);
    expect(await gauge()).toBe(1);
    await exportAuditEvents(database.db, { before: new Date('2020-12-07T00:00:00Z'), out: path.join(dir, 'retention.ndjson') });
    await checkAuditRetention(deps, log);
    expect(lines).toHaveLength(1);
    expect(await gauge()).toBe(0);
  });
});
