import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type Database, openDatabase } from '../../src/store/database.ts';

/**
 * A migrated, empty database for one test file: PostgreSQL (a fresh schema in
 * DATABASE_URL's database) when DATABASE_URL is set, else in-memory PGlite.
 * `close()` drops the schema again. PGlite starts from a dump of a migrated database (see
 * migratedPgliteDump) and then runs `migrate()` as usual, which finds nothing left to do.
 */
export async function openTestDatabase(): Promise<Database> {
  const url = process.env.DATABASE_URL;
  if (!url) {
    const database = await openDatabase({ dataDir: 'memory://', loadDataDir: await migratedPgliteDump() });
    await database.migrate();
    return database;
  }
  const schemaName = `t_${randomBytes(6).toString('hex')}`;
  const database = await openDatabase({ databaseUrl: url, schemaName, poolSize: 5 });
  await database.migrate();
  return {
    ...database,
    async close() {
      await database.close();
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS ${schemaName} CASCADE`);
      await admin.query(`DROP SCHEMA IF EXISTS ${schemaName}_pgboss CASCADE`);
      await admin.end();
    },
  };
}

const ROOT = path.join(import.meta.dirname, '..', '..');
let dump: Promise<Blob> | undefined;

/**
 * A new PGlite spends seconds initialising its data directory; a dump of one that is already
 * migrated loads in a fraction of that. The dump is made once (PGlite in memory, the project's
 * migrations) and kept in the temporary directory under a name that hashes the migration files
 * and the PGlite version, so a changed migration or PGlite makes a new one. Test files running
 * at the same time may both make it: each writes its own file and renames it into place.
 */
export function migratedPgliteDump(): Promise<Blob> {
  dump ??= (async () => {
    const migrations = path.join(ROOT, 'src', 'store', 'migrations');
    const hash = createHash('sha256').update(await readFile(path.join(ROOT, 'node_modules', '@electric-sql', 'pglite', 'package.json')));
    const files = (await readdir(migrations, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
    for (const file of files.sort()) hash.update(path.relative(migrations, file)).update(await readFile(file));
    const file = path.join(tmpdir(), `so-pglite-migrated-${hash.digest('hex').slice(0, 16)}.tar`);
    const kept = await readFile(file).catch(() => undefined);
    if (kept) return new Blob([kept]);
    const fresh = await openDatabase({ dataDir: 'memory://' });
    try {
      await fresh.migrate();
      if (fresh.raw.kind !== 'pglite') throw new Error('expected PGlite');
      const made = await fresh.raw.client.dumpDataDir('none');
      const partial = `${file}.${process.pid}`;
      await writeFile(partial, Buffer.from(await made.arrayBuffer()));
      await rename(partial, file);
      return made;
    } finally {
      await fresh.close();
    }
  })();
  return dump;
}
