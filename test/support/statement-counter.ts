import { AsyncLocalStorage } from 'node:async_hooks';
import type { PGlite, Transaction } from '@electric-sql/pglite';
import type pg from 'pg';
import type { Database } from '../../src/store/database.ts';

/**
 * Counts the SQL statements one call sends to the database (BEGIN and COMMIT included), on
 * PostgreSQL (every query of the pool and its clients) and PGlite (queries, execs, and the
 * BEGIN / COMMIT or ROLLBACK of its transactions). Only statements issued from inside
 * `during(fn)` count, so the job queue's own polling and maintenance, running beside it on the
 * same database, do not.
 */
export interface StatementCounter {
  /** Runs `fn` and returns what it returned with the statements it sent, in order (first line of each). */
  during<T>(fn: () => Promise<T>): Promise<{ result: T; statements: string[] }>;
}

const INSTRUMENTED = Symbol('statement-counter');

export function countStatements(database: Database): StatementCounter {
  const als = new AsyncLocalStorage<string[]>();
  const note = (text: unknown) => als.getStore()?.push(firstLine(text));
  if (database.raw.kind === 'postgres') instrumentPool(database.raw.pool, note);
  else instrumentPglite(database.raw.client, note);
  return {
    async during(fn) {
      const statements: string[] = [];
      const result = await als.run(statements, fn);
      return { result, statements };
    },
  };
}

function firstLine(text: unknown): string {
  const s = typeof text === 'string' ? text : typeof text === 'object' && text && 'text' in text ? String((text as { text: unknown }).text) : String(text);
  return s.trim().split('\n')[0]?.trim().slice(0, 120) ?? '';
}

type Note = (text: unknown) => void;

function instrumentPool(pool: pg.Pool, note: Note): void {
  const target = pool as pg.Pool & { [INSTRUMENTED]?: true };
  if (target[INSTRUMENTED]) throw new Error('this pool is counted already');
  target[INSTRUMENTED] = true;
  // pool.query checks a client out through connect(callback): count it there, not twice.
  const countClient = (client: pg.PoolClient & { [INSTRUMENTED]?: true }) => {
    if (client[INSTRUMENTED]) return;
    client[INSTRUMENTED] = true;
    const clientQuery = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      note(args[0]);
      return clientQuery(...args);
    };
  };
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
  (pool as unknown as { connect: (...args: unknown[]) => unknown }).connect = (...args: unknown[]) => {
    const callback = args[0] as ((err: Error | undefined, client: pg.PoolClient, release: () => void) => void) | undefined;
    if (callback) {
      return connect((err: Error | undefined, client: pg.PoolClient, release: () => void) => {
        if (client) countClient(client);
        callback(err, client, release);
      });
    }
    return (connect() as Promise<pg.PoolClient>).then((client) => (countClient(client), client));
  };
}

function instrumentPglite(client: PGlite, note: Note): void {
  const target = client as PGlite & { [INSTRUMENTED]?: true };
  if (target[INSTRUMENTED]) throw new Error('this PGlite is counted already');
  target[INSTRUMENTED] = true;
  const query = client.query.bind(client);
  client.query = ((text: string, ...rest: unknown[]) => {
    note(text);
    return (query as (...args: unknown[]) => unknown)(text, ...rest);
  }) as PGlite['query'];
  const exec = client.exec.bind(client);
  client.exec = ((text: string, ...rest: unknown[]) => {
    note(text);
    return (exec as (...args: unknown[]) => unknown)(text, ...rest);
  }) as PGlite['exec'];
  const transaction = client.transaction.bind(client);
  client.transaction = (async <T>(fn: (tx: Transaction) => Promise<T>): Promise<T> => {
    note('BEGIN');
    let failed = false;
    try {
      return await transaction(async (tx) => {
        const counted: Transaction = {
          ...tx,
          query: ((text: string, ...rest: unknown[]) => (note(text), (tx.query as (...args: unknown[]) => unknown)(text, ...rest))) as Transaction['query'],
          exec: ((text: string, ...rest: unknown[]) => (note(text), (tx.exec as (...args: unknown[]) => unknown)(text, ...rest))) as Transaction['exec'],
          rollback: async () => {
            failed = true;
            note('ROLLBACK');
            return tx.rollback();
          },
          get closed() {
            return tx.closed;
          },
        };
        try {
          return await fn(counted);
        } catch (err) {
          if (!failed) note('ROLLBACK');
          failed = true;
          throw err;
        }
      });
    } finally {
      if (!failed) note('COMMIT');
    }
  }) as PGlite['transaction'];
}
