/**
 * The benches' PostgreSQL: is it there, and a fresh database or schema per run, dropped at
 * clean-up whatever happens.
 */
import pg from 'pg';
import { say } from './common.ts';
import { onCleanup } from './run.ts';

const redact = (url: string) => url.replace(/\/\/[^@/]*@/, '//…@');

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The server's version, or undefined after saying how to start it. */
export async function postgresVersion(url: string): Promise<string | undefined> {
  try {
    return await withClient(url, async (c) => (await c.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v);
  } catch (err) {
    say(`PostgreSQL is not reachable at ${redact(url)}: ${(err as Error).message}`);
    say('Start it (e.g. `pg_ctlcluster --skip-systemctl-redirect 15 main start`) or set DATABASE_URL.');
    return undefined;
  }
}

/** `url` with another database name. */
export const databaseUrl = (url: string, database: string): string => Object.assign(new URL(url), { pathname: `/${database}` }).toString();

/** Creates database `name` on the server of `serverUrl` and drops it at clean-up; its URL. */
export async function freshDatabase(serverUrl: string, name: string): Promise<string> {
  const admin = databaseUrl(serverUrl, 'postgres');
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
  onCleanup(`drop database ${name}`, () => withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
  return databaseUrl(serverUrl, name);
}

/**
 * Drops schema `name` and its job-queue companion `<name>_pgboss` (src/jobs/pg-boss-queue.ts)
 * at clean-up; the service creates them.
 */
export function dropSchemaAtCleanup(url: string, name: string): void {
  onCleanup(`drop schemas ${name}, ${name}_pgboss`, () =>
    withClient(url, async (c) => {
      await c.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
      await c.query(`DROP SCHEMA IF EXISTS ${name}_pgboss CASCADE`);
    }),
  );
}
