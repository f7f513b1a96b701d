import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AuditEvent } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/audit/audit-log.ts';
import { openDatabase, type Database } from '../src/store/database.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { createProcessDatabase, type ProcessDatabase } from './support/service-process.ts';
import { runScript } from './support/run-process.ts';

/** Runs `src/cli/audit-export.ts` exactly as `npm run audit:export --` does (tsx on the project's Node). */
const runExport = (args: string[], env: Record<string, string>) => runScript('src/cli/audit-export.ts', args, env);

/**
 * `npm run audit:export` as a process, against the store the run uses: a PGlite directory
 * (the service stopped, as the embedded store needs), or a PostgreSQL database that another
 * process keeps writing AuditEvents to while the export runs.
 */
describe('npm run audit:export (the CLI process)', () => {
  let db: ProcessDatabase;
  let out: string;
  let clock = new Date();
  const network = { get: (id: string) => ({ organization: { reference: `Organization/${id}` } }) };
  const open = async (): Promise<{ database: Database; audit: AuditLog }> => {
    const database = await openDatabase({ databaseUrl: db.env.DATABASE_URL, dataDir: db.env.DATA_DIR as string, poolSize: 2 });
    await database.migrate();
    const store = new ResourceStore(database.db, { validate: () => undefined }, () => clock);
    return { database, audit: new AuditLog({ store, network, now: () => clock, publicUrl: 'http://localhost' }) };
  };
  const record = (audit: AuditLog, n: number) => audit.record({ action: 'read', outcome: 'success', agent: { participantId: 'st-olaf', clientId: 'st-olaf-ehr' }, entities: [{ reference: `ServiceRequest/sr-${n}` }] });
  const old: string[] = [];
  const recent: string[] = [];

  beforeAll(async () => {
    db = await createProcessDatabase();
    out = path.join(await db.dataDir(), 'archive.ndjson');
    const { database, audit } = await open();
    for (let i = 0; i < 20; i++) {
      clock = new Date(Date.parse('2019-01-01T00:00:00Z') + i * 86_400_000);
      old.push((await record(audit, i)).id as string);
    }
    clock = new Date();
    for (let i = 0; i < 3; i++) recent.push((await record(audit, 100 + i)).id as string);
    await database.close();
  }, 60_000);
  afterAll(async () => {
    await db?.drop();
  });

  it('refuses a DATE within the retention (exit 2, usage); the next test finds all 20 old AuditEvents still there', async () => {
    const run = await runExport(['--before', new Date().toISOString().slice(0, 10)], db.env);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^audit:export: --before \d{4}-\d{2}-\d{2} is within the audit retention \(6 years: AuditEvents since .* are kept\); use a DATE up to \d{4}-\d{2}-\d{2}, or --force\n/);
    expect(run.stderr).toContain('usage: npm run audit:export -- --before DATE');
    expect(run.stdout).toBe('');
  }, 60_000);

  it.runIf(!process.env.DATABASE_URL)('on the embedded store, refuses to open a database another process has open (exit 2)', async () => {
    const { database } = await open();
    try {
      const run = await runExport(['--before', '2020-01-01', '--out', out], db.env);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(`audit:export: the embedded database in ${db.env.DATA_DIR} is open in another process (the service?): stop it first.`);
    } finally {
      await database.close();
    }
  }, 60_000);

  it('exports the AuditEvents before DATE and deletes them; the re-run finds nothing more', async () => {
    const other = db.kind === 'postgres' ? await open() : undefined;
    // On PostgreSQL another process writes AuditEvents all the while.
    let writing = true;
    const written: string[] = [];
    const writer = (async () => {
      while (other && writing) written.push((await record(other.audit, 200 + written.length)).id as string);
    })();
    const run = await runExport(['--before', '2020-01-01', '--out', out, '--batch', '7'], db.env);
    writing = false;
    await writer;
    await other?.database.close();
    // The process start alone takes longer than many writes: the export really ran beside them.
    if (db.kind === 'postgres') expect(written.length).toBeGreaterThan(0);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`exporting AuditEvents last written before 2020-01-01T00:00:00.000Z from the ${db.kind} store to ${out}\n`);
    expect(run.stdout).toMatch(/\n20 AuditEvents written and 20 deleted in \d+\.\d s\n/);
    expect(run.stdout).toMatch(new RegExp(`${out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: 20 lines in all, sha256 [0-9a-f]{64}\\n$`));
    const lines = (await readFile(out, 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as AuditEvent);
    expect(lines.map((l) => l.id)).toEqual(old);

    const again = await runExport(['--before', '2020-01-01', '--out', out], db.env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/\n0 AuditEvents written and 0 deleted in /);
    expect(again.stdout).toContain(': 20 lines in all, sha256 ');

    const { database } = await open();
    try {
      const rows = await database.db.execute(sql`SELECT id FROM resource WHERE resource_type = 'AuditEvent' ORDER BY id`);
      const ids = (rows as unknown as { rows: { id: string }[] }).rows.map((r) => r.id);
      expect(ids).toEqual([...recent, ...written].sort());
    } finally {
      await database.close();
    }
  }, 120_000);
});
