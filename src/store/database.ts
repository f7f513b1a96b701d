import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import { migrate as migrateNodePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import * as schema from './schema.ts';

export type Schema = typeof schema;
/** A drizzle database or transaction: the same query API on PostgreSQL and PGlite. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

/**
 * The driver-level handle under drizzle, for infrastructure that speaks SQL itself (the job
 * queue: pg-boss opens its own pool from `connectionString`, or shares the one PGlite session).
 */
export type RawConnection =
  | { readonly kind: 'postgres'; readonly pool: pg.Pool; readonly connectionString: string; readonly schemaName?: string }
  | { readonly kind: 'pglite'; readonly client: PGlite };

export interface Database {
  readonly kind: 'postgres' | 'pglite';
  readonly db: Db;
  /** The raw client or pool (see RawConnection); application code goes through `db`. */
  readonly raw: RawConnection;
  /** Runs the SQL migrations in src/store/migrations; idempotent, safe with several replicas starting at once. */
  migrate(): Promise<void>;
  /** Cheap round trip for readiness probes. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** postgres:// URL; when absent the embedded PGlite is used. */
  databaseUrl?: string;
  /** PGlite data directory; `memory://` keeps it in memory (tests). */
  dataDir?: string;
  poolSize?: number;
  /**
   * PostgreSQL schema to use instead of `public` (created if missing). Tests use one schema
   * per test file so they can share a database.
   */
  schemaName?: string;
  /**
   * PGlite only: a data directory to start from (a dump made with PGlite's `dumpDataDir`) instead
   * of initialising a new one. The tests start each in-memory database from one migrated dump.
   */
  loadDataDir?: Blob;
}

const MIGRATIONS_FOLDER = path.join(import.meta.dirname, 'migrations');
/** Arbitrary constant: the advisory lock that serialises migrations across replicas. */
const MIGRATION_LOCK_KEY = 4_217_001;

/** Opens PostgreSQL when a URL is given, else PGlite in `dataDir`. */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  return options.databaseUrl ? openPostgres(options.databaseUrl, options) : openPglite(options);
}

async function openPostgres(url: string, options: DatabaseOptions): Promise<Database> {
  const schemaName = options.schemaName;
  if (schemaName !== undefined && !/^[a-z_][a-z0-9_]*$/.test(schemaName)) {
    throw new Error('schemaName must be a plain lower-case SQL identifier');
  }
  if (schemaName) {
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schemaName}`);
    } finally {
      await admin.end();
    }
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    ...(schemaName ? { options: `-c search_path=${schemaName}` } : {}),
  });
  // An idle client that loses its connection must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  // Nor a client checked out (a transaction between two statements): pg-pool drops its own
  // listener on checkout, and an 'error' event nobody listens to ends the process. The loss
  // still reaches the transaction (its next statement fails as unreachable: 503), and the
  // broken client is discarded on release.
  pool.on('connect', (client) => client.on('error', () => undefined));
  const db = drizzleNodePg({ client: pool, schema }) as unknown as Db;
  return {
    kind: 'postgres',
    db,
    raw: { kind: 'postgres', pool, connectionString: url, ...(schemaName ? { schemaName } : {}) },
    async migrate() {
      const client = await pool.connect();
      try {
        await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
        await migrateNodePg(drizzleNodePg({ client, schema }), {
          migrationsFolder: MIGRATIONS_FOLDER,
          migrationsSchema: schemaName ?? 'drizzle',
        });
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
        client.release();
      }
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      await pool.end();
    },
  };
}

async function openPglite(options: DatabaseOptions): Promise<Database> {
  const dataDir = options.dataDir ?? 'memory://';
  if (!dataDir.startsWith('memory://')) await mkdir(dataDir, { recursive: true });
  const dir = dataDir.startsWith('memory://') ? undefined : path.join(dataDir, 'pglite');
  const client = options.loadDataDir ? await PGlite.create({ ...(dir ? { dataDir: dir } : {}), loadDataDir: options.loadDataDir }) : await PGlite.create(dir);
  const db = drizzlePglite({ client, schema }) as unknown as Db;
  return {
    kind: 'pglite',
    db,
    raw: { kind: 'pglite', client },
    async migrate() {
      // PGlite is one in-process session: no other replica can race the migration.
      await migratePglite(drizzlePglite({ client, schema }), { migrationsFolder: MIGRATIONS_FOLDER });
    },
    async ping() {
      await db.execute(sql`SELECT 1`);
    },
    async close() {
      await client.close();
    },
  };
}
