/**
 * The raw-insert baseline of `npm run bench:intake`, in its own process: the rows of one
 * referral (scripts/bench/lib/referral-rows.ts, read back from the service after a real
 * intake) inserted again and again by a bare client, each copy in one transaction: BEGIN, one
 * INSERT per table (intake_request, resource, resource_history, pg-boss's job; each a
 * prepared statement with the rows as one jsonb parameter), COMMIT. No HTTP, no validation,
 * no query builder: the fastest any implementation could write a referral on this database.
 *
 * BENCH_STORE=postgres: N clients of its own (N = BENCH_CONNECTIONS, the service's pool has
 * as many) on DATABASE_URL, schema BENCH_SCHEMA (created here by the service's migrations and
 * job queue, so the tables and indexes are the service's; the parent drops it).
 * BENCH_STORE=pglite: PGlite in DATA_DIR, set up the same way; N loops share its one session,
 * one transaction at a time, as the service's requests do.
 *
 * Commands (child-protocol.ts): `rows <file>` (the rows to copy, JSON), `run <seconds>`
 * (transactions, latencies, CPU), `counts` (rows per table).
 */
import { readFile } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { PgBossQueue } from '../../src/jobs/pg-boss-queue.ts';
import { QUEUE_POLICIES } from '../../src/jobs/queues.ts';
import { openDatabase } from '../../src/store/database.ts';
import { announceReady, serveParent } from './child-protocol.ts';
import { copier, countRows, insertStatement, type Query, type ReferralRows } from './lib/referral-rows.ts';

const store = process.env.BENCH_STORE === 'pglite' ? 'pglite' : 'postgres';
const connections = Number(process.env.BENCH_CONNECTIONS ?? 10);
const schemaName = process.env.BENCH_SCHEMA;
const databaseUrl = process.env.DATABASE_URL;
if (store === 'postgres' && (!databaseUrl || !schemaName)) throw new Error('raw-insert-server: DATABASE_URL and BENCH_SCHEMA are required');

// The service's schema, made by the service's own code: same tables, indexes and queue partitions.
const database = await openDatabase(store === 'postgres' ? { databaseUrl, schemaName, poolSize: 1 } : { dataDir: process.env.DATA_DIR });
await database.migrate();
const jobs = new PgBossQueue(database.raw, { queues: QUEUE_POLICIES });
await jobs.start();
await jobs.stop({ graceful: false });

/** One transaction: its statements in order, each with its parameter. */
type Runner = (statements: { name: string; text: string; value: string }[]) => Promise<void>;
let runners: Runner[];
let query: Query;
let close: () => Promise<void>;
if (database.raw.kind === 'postgres') {
  await database.close();
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const c = new pg.Client({ connectionString: databaseUrl, options: `-c search_path=${schemaName}` });
      await c.connect();
      return c;
    }),
  );
  runners = clients.map((c) => async (statements) => {
    await c.query('BEGIN');
    try {
      for (const s of statements) await c.query({ name: s.name, text: s.text, values: [s.value] });
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK');
      throw err;
    }
  });
  query = (text, params) => (clients[0] as pg.Client).query(text, params);
  close = async () => void (await Promise.all(clients.map((c) => c.end())));
} else {
  const client: PGlite = database.raw.client;
  const runner: Runner = (statements) =>
    client.transaction(async (tx) => {
      for (const s of statements) await tx.query(s.text, [s.value]);
    });
  runners = Array.from({ length: connections }, () => runner);
  query = (text, params) => client.query(text, params);
  close = () => database.close();
}

let template: { statements: { name: string; text: string }[]; copy: () => string[] } | undefined;

async function run(seconds: number) {
  if (!template) throw new Error('no rows yet: send `rows <file>` first');
  const { statements, copy } = template;
  const latencies: number[] = [];
  let errors = 0;
  let lastError: string | undefined;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    runners.map(async (runTx) => {
      while (performance.now() < end) {
        const values = copy();
        const t0 = performance.now();
        try {
          await runTx(statements.map((s, i) => ({ ...s, value: values[i] as string })));
          latencies.push(Math.round((performance.now() - t0) * 100) / 100);
        } catch (err) {
          errors++;
          lastError = (err as Error).message;
        }
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return { transactions: latencies.length, seconds: (performance.now() - start) / 1000, latencies, errors, lastError, cpuMicros: cpu.user + cpu.system };
}

serveParent({
  stop: close,
  commands: {
    async rows([file]) {
      const rows = JSON.parse(await readFile(String(file), 'utf8')) as ReferralRows;
      const jobSchema = jobs.schema;
      template = { statements: rows.tables.map((t, i) => ({ name: `raw_insert_${i}`, text: insertStatement(t, jobSchema) })), copy: copier(rows) };
      return { tables: rows.tables.map((t) => `${t.table} ${t.rows.length}`).join(', ') };
    },
    run: ([seconds]) => run(Number(seconds)),
    counts: () => countRows(query, jobs.schema),
  },
});
announceReady({ url: '', path: '', store, schema: schemaName ?? '(PGlite)', jobSchema: jobs.schema, connections });
