import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type Database, openDatabase } from '../../src/store/database.ts';

/**
 * A migrated, empty database for one test file: PostgreSQL (a fresh schema in
 * DATABASE_URL's database) when DATABASE_URL is set, else in-memory PGlite.
 * `close()` drops the schema again.
 */
export async function openTestDatabase(): Promise<Database> {
  const url = process.env.DATABASE_URL;
  if (!url) {
    const database = await openDatabase({ dataDir: 'memory://' });
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
