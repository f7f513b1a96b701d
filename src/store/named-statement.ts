import { createHash } from 'node:crypto';
import type { SQL } from 'drizzle-orm';
import type { Db } from './database.ts';

/** What `Db.execute` does, one level down: drizzle's dialect and session, which take a statement name. */
interface DrizzleInternals {
  dialect: { sqlToQuery(statement: SQL): { sql: string; params: unknown[] } };
  session: { prepareQuery(query: { sql: string; params: unknown[] }, fields: undefined, name: string | undefined, arrayMode: boolean): { execute(): Promise<unknown> } };
}

/** Distinct statement texts given a name; past this, statements run unnamed (the set of write shapes is small and fixed). */
const MAX_NAMED = 256;
const names = new Map<string, string>();

/**
 * `db.execute(statement)` as a named prepared statement: PostgreSQL parses and plans a text once
 * per connection, and later runs send only its name and parameters. For the one write statement
 * of a use case (write-batch.ts), several KB of text with pg-boss's job insert: parsing it on every
 * intake cost PostgreSQL CPU on the machine the service shares, and the socket write its bytes.
 * PGlite ignores the name.
 */
export async function executeNamed(db: Db, statement: SQL): Promise<{ rows: Record<string, unknown>[] }> {
  const internals = db as unknown as DrizzleInternals;
  const query = internals.dialect.sqlToQuery(statement);
  let name = names.get(query.sql);
  if (name === undefined && names.size < MAX_NAMED) {
    name = `write_${createHash('sha1').update(query.sql).digest('hex').slice(0, 24)}`;
    names.set(query.sql, name);
  }
  return (await internals.session.prepareQuery(query, undefined, name, false).execute()) as { rows: Record<string, unknown>[] };
}
