import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/support/database.ts';
import type { Database } from './database.ts';
import { isStoreUnavailable } from './unavailable.ts';

/**
 * Found by the soak (PostgreSQL connections terminated under load): a pooled client checked out
 * for a transaction, whose connection was terminated between two statements, emitted an
 * 'error' event nobody listened to, and the process crashed ("Unhandled 'error' event ...
 * Connection terminated unexpectedly"). The pool now gives every client a listener; the
 * transaction fails as the database being unreachable and the pool serves the next request.
 */
describe.skipIf(!process.env.DATABASE_URL)('a connection terminated while checked out (PostgreSQL)', () => {
  let database: Database;
  beforeAll(async () => {
    database = await openTestDatabase();
  });
  afterAll(() => database?.close());

  it('does not crash the process: the transaction fails as unreachable, the next query gets a new connection', async () => {
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    let failure: unknown;
    try {
      await database.db.transaction(async (tx) => {
        const result = (await tx.execute(sql`SELECT pg_backend_pid() AS pid`)) as unknown as { rows: { pid: number }[] };
        await admin.query('SELECT pg_terminate_backend($1)', [result.rows[0]?.pid]);
        // Between statements, as when a transaction awaits other work: the termination arrives with no query running.
        await new Promise((resolve) => setTimeout(resolve, 300));
        await tx.execute(sql`SELECT 1`);
      });
    } catch (err) {
      failure = err;
    } finally {
      await admin.end();
    }
    expect(failure).toBeDefined();
    expect(isStoreUnavailable(failure)).toBe(true);
    const again = (await database.db.execute(sql`SELECT 42 AS answer`)) as unknown as { rows: { answer: number }[] };
    expect(again.rows[0]?.answer).toBe(42);
  });
});
