import { sql } from 'drizzle-orm';
import { fromDrizzle, fromPglite, PgBoss, type ConstructorOptions, type Job as BossJob } from 'pg-boss';
// The very INSERT `send` runs (pg-boss 12's plans), embedded in a caller's statement by enqueueParts.
import { insertJobs, notifyChannelSql } from 'pg-boss/dist/plans.js';
import type { Db, RawConnection } from '../store/database.ts';
import { RetryLaterError, type EnqueueOptions, type EnqueuePartsOptions, type FailedJob, type JobHandler, type JobQueue, type JsonObject, type QueuePolicy } from './job-queue.ts';
import type { StatementPart } from '../store/write-batch.ts';
import type { QueueCounts, ServiceMetrics } from '../metrics/metrics.ts';
import { isStoreUnavailable } from '../store/unavailable.ts';

export interface PgBossQueueOptions {
  /** Every queue this process enqueues to or works on, with its retry policy. */
  queues: readonly QueuePolicy[];
  /**
   * Schema pg-boss keeps its tables in. Default `pgboss`, or `<schemaName>_pgboss` when the
   * database uses its own schema (tests), so test files sharing one database stay apart.
   */
  schema?: string;
  /** How often an idle worker looks for due jobs (retries are found by polling). Default 2, minimum 0.5. */
  pollingIntervalSeconds?: number;
  /**
   * How often expired leases are looked for (pg-boss's supervise and monitor intervals: expiry
   * runs in the monitor step). Default 60; tests use 1.
   */
  superviseIntervalSeconds?: number;
  /** Graceful stop waits this long for running handlers. Default 30 s. */
  stopTimeoutMs?: number;
  /** Background errors of pg-boss (lost connection, maintenance); defaults to ignoring them. */
  onError?: (err: Error) => void;
  /** Pool size of pg-boss's own PostgreSQL connections. Default 4. */
  poolSize?: number;
  /** Where each settled attempt is counted (completed or failed). */
  metrics?: Pick<ServiceMetrics, 'jobAttempt'>;
}

const DEFAULTS = { retryLimit: 10, retryDelaySeconds: 5, retryDelayMaxSeconds: 3600, expireInSeconds: 900 } as const;
/** Failed (dead-letter) jobs stay visible for re-drive this long. */
const KEEP_FAILED_SECONDS = 30 * 24 * 3600;
const NO_JOB = '00000000-0000-0000-0000-000000000000';
/** Most jobs one pg-boss worker fetches at a time; a higher concurrency adds workers (see `work`). */
export const JOBS_PER_FETCH = 4;

/**
 * JobQueue on pg-boss 12.35: jobs run from a PostgreSQL queue.
 *
 * - PostgreSQL: pg-boss opens its own small pool (LISTEN/NOTIFY, SKIP LOCKED), so several
 *   replicas share the work and each job is fetched by one of them.
 * - PGlite: pg-boss shares the single in-process session (`fromPglite`).
 * - `enqueue` sends through the caller's drizzle transaction (`fromDrizzle(tx, sql)`): the job
 *   row is written by the same transaction as the business rows, on both drivers.
 *
 * PGlite caveat handled here: PGlite has one session, and an open drizzle transaction holds it.
 * Anything pg-boss does on its *own* connection while the caller's transaction is open waits
 * for that transaction, so a send that first looked the queue up on its own connection would
 * deadlock. Queues are therefore declared up front, created at `start()`, and pg-boss's
 * queue cache is warmed there; `enqueue` refuses undeclared names instead of hanging.
 */
export class PgBossQueue implements JobQueue {
  private readonly raw: RawConnection;
  private readonly options: PgBossQueueOptions;
  private readonly policies: Map<string, QueuePolicy>;
  /** Schema holding pg-boss's tables (for operators and tests). */
  readonly schema: string;
  private boss: PgBoss | undefined;
  /** Each declared queue's job table and whether a send wakes its workers (NOTIFY), read at start. */
  private readonly queueTables = new Map<string, { table: string; notify: boolean }>();
  /** pg-boss's job INSERT of each queue, split around its one parameter (built once: it is a few KB of text). */
  private readonly insertTexts = new Map<string, { before: string; after: string }>();

  constructor(raw: RawConnection, options: PgBossQueueOptions) {
    this.raw = raw;
    this.options = options;
    this.policies = new Map(options.queues.map((q) => [q.name, q]));
    const schemaName = raw.kind === 'postgres' ? raw.schemaName : undefined;
    this.schema = options.schema ?? (schemaName ? `${schemaName}_pgboss` : 'pgboss');
    if (!/^[a-z_][a-z0-9_]*$/.test(this.schema)) throw new Error('job queue schema must be a plain lower-case SQL identifier');
  }

  async start(): Promise<void> {
    if (this.boss) return;
    const common: ConstructorOptions = {
      schema: this.schema,
      superviseIntervalSeconds: this.options.superviseIntervalSeconds ?? 60,
      monitorIntervalSeconds: this.options.superviseIntervalSeconds ?? 60,
      // Nothing here uses cron schedules; no need for the scheduler's polling.
      schedule: false,
    };
    const boss =
      this.raw.kind === 'postgres'
        ? // LISTEN/NOTIFY: a worker wakes the moment a job is committed instead of at its next poll.
          new PgBoss({ ...common, connectionString: this.raw.connectionString, max: this.options.poolSize ?? 4, useListenNotify: true })
        : new PgBoss({ ...common, db: fromPglite(this.raw.client), backend: 'pglite' });
    const onError = this.options.onError ?? (() => undefined);
    boss.on('error', (err: Error) => onError(err));
    await boss.start();
    for (const policy of this.policies.values()) {
      const settings = {
        retryLimit: policy.retryLimit ?? DEFAULTS.retryLimit,
        retryDelay: policy.retryDelaySeconds ?? DEFAULTS.retryDelaySeconds,
        retryBackoff: true,
        retryDelayMax: policy.retryDelayMaxSeconds ?? DEFAULTS.retryDelayMaxSeconds,
        expireInSeconds: policy.expireInSeconds ?? DEFAULTS.expireInSeconds,
        deleteAfterSeconds: KEEP_FAILED_SECONDS,
        // Sending a job NOTIFYs (at commit) the workers listening on PostgreSQL; polling stays as the floor.
        notify: true,
      };
      await boss.createQueue(policy.name, { ...settings, policy: policy.policy ?? 'standard' });
      // createQueue keeps an existing queue as it is; apply a changed policy too.
      await boss.updateQueue(policy.name, settings);
      // Warms pg-boss's queue cache, so a send inside a PGlite transaction needs no lookup.
      await boss.getJobById(policy.name, NO_JOB);
      const queue = (await boss.getQueue(policy.name)) as { table?: string; notify?: boolean } | null;
      if (!queue?.table) throw new Error(`queue '${policy.name}' has no job table`);
      this.queueTables.set(policy.name, { table: queue.table, notify: queue.notify === true });
    }
    this.boss = boss;
  }

  /**
   * Stops fetching jobs; graceful: waits up to `timeoutMs` (default `stopTimeoutMs`, at least 1 s)
   * for running handlers, then hands those still running back to the queue (failed with
   * "shut down while active": retried after their retry delay, by any replica) and aborts them.
   */
  async stop(options: { graceful?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const boss = this.boss;
    if (!boss) return;
    this.boss = undefined;
    // On PGlite pg-boss does not close the caller's instance (fromPglite); on PostgreSQL it ends its own pool.
    await boss.stop({ graceful: options.graceful ?? true, timeout: options.timeoutMs ?? this.options.stopTimeoutMs ?? 30_000, close: true });
  }

  async enqueue(tx: Db, name: string, data: JsonObject, options: EnqueueOptions = {}): Promise<string | undefined> {
    const boss = this.started();
    const exclusive = this.policy(name).policy === 'exclusive';
    if (exclusive !== (options.singletonKey !== undefined)) {
      throw new Error(exclusive ? `queue '${name}' is exclusive: every job needs a singletonKey` : `singletonKey needs a queue declared with policy 'exclusive' ('${name}' is not)`);
    }
    const id = await boss.send(name, data, {
      // Our Db is typed over an unknown result shape; both drivers return `{ rows }`, which is what the adapter reads.
      db: fromDrizzle(tx as unknown as Parameters<typeof fromDrizzle>[0], sql),
      ...(options.singletonKey !== undefined ? { singletonKey: options.singletonKey } : {}),
      ...(options.startAfter !== undefined ? { startAfter: options.startAfter } : {}),
      ...(options.retryLimit !== undefined ? { retryLimit: options.retryLimit } : {}),
    });
    return id ?? undefined;
  }

  /**
   * `enqueue` as CTEs of the caller's statement: pg-boss's own job INSERT (the statement `send`
   * runs, the rows passed as one json parameter the same way), and, for a queue whose sends
   * wake workers, the transactional NOTIFY `send` would add (only when a job is due now). The
   * caller's statement must read every part (`SELECT count(*) FROM <part>`) for the NOTIFY to run.
   */
  enqueueParts(alias: string, name: string, jobs: readonly { data: JsonObject; options?: EnqueueOptions }[], options: EnqueuePartsOptions = {}): StatementPart[] {
    this.started();
    if (!/^[a-z_][a-z0-9_]*$/.test(alias)) throw new Error('a statement part alias must be a plain lower-case SQL identifier');
    const { onlyIf } = options;
    if (onlyIf !== undefined && !/^[a-z_][a-z0-9_]*$/.test(onlyIf)) throw new Error('onlyIf must name a statement part (a plain lower-case SQL identifier)');
    const exclusive = this.policy(name).policy === 'exclusive';
    const queue = this.queueTables.get(name);
    if (!queue) throw new Error(`queue '${name}' was not created at start`);
    const rows = jobs.map(({ data, options = {} }) => {
      if (exclusive !== (options.singletonKey !== undefined)) {
        throw new Error(exclusive ? `queue '${name}' is exclusive: every job needs a singletonKey` : `singletonKey needs a queue declared with policy 'exclusive' ('${name}' is not)`);
      }
      return {
        data,
        priority: 0,
        ...(options.singletonKey !== undefined ? { singletonKey: options.singletonKey } : {}),
        ...(options.startAfter !== undefined ? { startAfter: options.startAfter.toISOString() } : {}),
        ...(options.retryLimit !== undefined ? { retryLimit: options.retryLimit } : {}),
      };
    });
    const { before, after } = this.insertText(queue.table, name);
    const json = JSON.stringify(rows);
    // Guarded: no rows at all (an empty recordset) unless the part named by onlyIf returned one.
    const param = onlyIf === undefined ? sql`${json}` : sql`(CASE WHEN EXISTS (SELECT 1 FROM ${sql.raw(onlyIf)}) THEN ${json} ELSE '[]' END)`;
    const parts: StatementPart[] = [{ name: alias, sql: sql.join([sql.raw(before), param, sql.raw(after)]) }];
    if (queue.notify) {
      parts.push({ name: `${alias}_wake`, sql: sql.raw(`SELECT pg_notify(${notifyChannelSql(this.schema)}, '${name}') FROM ${alias} WHERE start_after <= ${this.schema}.job_now() LIMIT 1`) });
    }
    return parts;
  }

  /**
   * Up to `concurrency` jobs of the queue run side by side, fetched by pg-boss workers that each
   * take up to {@link JOBS_PER_FETCH} jobs at a time and settle each on its own (a failure retries
   * that job only). While fetches come back full there is a backlog, and a worker fetches again
   * at once instead of waiting the polling interval (pg-boss burst mode): with one job per fetch
   * and polling, a worker drained at most one job per interval, and 200 opinions took 100 s to
   * post (scripts/bench-delivery.ts). A worker's next fetch waits for the slowest job of its
   * batch, so a high concurrency is several workers with small batches rather than one large
   * batch: the workers fetch on their own, and one slow job holds back only its batch.
   */
  async work<T extends JsonObject = JsonObject>(name: string, handler: JobHandler<T>, options: { concurrency?: number } = {}): Promise<void> {
    const boss = this.started();
    this.policy(name);
    const concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
    const workers = Math.ceil(concurrency / JOBS_PER_FETCH);
    const batchSize = Math.ceil(concurrency / workers);
    await boss.work<T, unknown, { batchSize: number; localConcurrency: number; pollingIntervalSeconds: number; notifyPollingIntervalSeconds: number; burstWhenBatchFull: boolean; perJobResults: true }>(
      name,
      {
        batchSize,
        localConcurrency: workers,
        pollingIntervalSeconds: this.options.pollingIntervalSeconds ?? 2,
        // Retries come due by time, not by a NOTIFY: keep polling as often with LISTEN on.
        notifyPollingIntervalSeconds: this.options.pollingIntervalSeconds ?? 2,
        burstWhenBatchFull: batchSize > 1,
        perJobResults: true,
      },
      async (jobs: BossJob<T>[]) => {
        const settled = await Promise.allSettled(jobs.map((job) => handler({ id: job.id, name: job.name, data: job.data, attempt: job.retryCount + 1 })));
        // A rejection fails that attempt only, and pg-boss schedules its retry; the message is kept for failed().
        return Promise.all(
          settled.map(async (result, i) => {
            const job = jobs[i] as BossJob<T>;
            this.options.metrics?.jobAttempt(name, result.status === 'fulfilled' ? 'completed' : 'failed');
            const attempt = { id: job.id, retryCount: job.retryCount };
            if (result.status === 'fulfilled') {
              // Settled here, retried while the database is unreachable: a completion lost with the
              // connection would leave the job active until its lease runs out (15 min for an assembly).
              await settleWhileUnavailable(() => boss.complete(name, attempt));
              return { id: job.id, status: 'completed' as const };
            }
            const err = result.reason as { name?: string; message?: string } | undefined;
            const output = { name: err?.name ?? 'Error', message: err?.message ?? String(result.reason) };
            if (result.reason instanceof RetryLaterError) await this.failNotBefore(boss, name, job, output, result.reason.retryAt);
            else await settleWhileUnavailable(() => boss.fail(name, attempt, output));
            // pg-boss's own settle of the disposition then finds the attempt no longer active and changes nothing.
            return { id: job.id, status: 'failed' as const, output };
          }),
        );
      },
    );
  }

  /**
   * Fails one attempt and holds its retry until `retryAt` (RetryLaterError), capped at the
   * queue's retryDelayMaxSeconds from now. pg-boss has no "retry at" of its own, so the attempt
   * is settled here, fenced to the attempt this worker holds (pg-boss computes the backoff as
   * usual and the job is in `retry`), and the retry's `start_after` is then moved to the later of
   * the backoff and `retryAt`, fenced the same way. The backoff is at least a second
   * (retryDelaySeconds >= 1), so no worker can fetch the retry in between; if this process dies
   * in between, the retry simply comes at the backoff. pg-boss's own settle of the returned
   * disposition then finds the attempt no longer active and changes nothing. Plain SQL on pg-boss's
   * connection: the same on PGlite and PostgreSQL.
   */
  private async failNotBefore(boss: PgBoss, name: string, job: BossJob<JsonObject>, output: JsonObject, retryAt: Date): Promise<void> {
    const maxDelaySeconds = this.policy(name).retryDelayMaxSeconds ?? DEFAULTS.retryDelayMaxSeconds;
    const at = new Date(Math.min(retryAt.getTime(), Date.now() + maxDelaySeconds * 1000));
    await boss.fail(name, { id: job.id, retryCount: job.retryCount }, output);
    await boss
      .getDb()
      .executeSql(
        `UPDATE ${this.schema}.job SET start_after = GREATEST(start_after, $3::timestamptz), keep_until = GREATEST(keep_until, $3::timestamptz + (keep_until - start_after))
          WHERE name = $1 AND id = $2::uuid AND state = 'retry' AND retry_count = $4`,
        [name, job.id, at.toISOString(), job.retryCount],
      );
  }

  async failed(name?: string): Promise<FailedJob[]> {
    const boss = this.started();
    const where = name === undefined ? '' : 'AND name = $1';
    const { rows } = await boss.getDb().executeSql(
      `SELECT id, name, data, retry_count, output, created_on, completed_on
         FROM ${this.schema}.job WHERE state = 'failed' ${where}
        ORDER BY completed_on DESC NULLS LAST LIMIT 500`,
      name === undefined ? [] : [name],
    );
    return (rows as FailedRow[]).map((r) => ({
      id: r.id,
      name: r.name,
      data: r.data ?? {},
      attempts: Number(r.retry_count) + 1,
      lastError: errorMessage(r.output),
      createdAt: new Date(r.created_on),
      failedAt: r.completed_on ? new Date(r.completed_on) : undefined,
    }));
  }

  /**
   * Jobs per declared queue and state, in one statement over pg-boss's job table (the states a
   * job is in until it completes, and the dead letters: `failed`, kept for re-drive). For metrics
   * scrapes: completed jobs are not counted.
   */
  async counts(): Promise<QueueCounts[]> {
    const boss = this.started();
    const names = [...this.policies.keys()];
    const { rows } = await boss.getDb().executeSql(
      `SELECT name,
              count(*) FILTER (WHERE state = 'created')::int AS queued,
              count(*) FILTER (WHERE state = 'retry')::int AS retrying,
              count(*) FILTER (WHERE state = 'active')::int AS active,
              count(*) FILTER (WHERE state = 'failed')::int AS dead_lettered
         FROM ${this.schema}.job
        WHERE name = ANY($1::text[]) AND state IN ('created', 'retry', 'active', 'failed')
        GROUP BY name`,
      [names],
    );
    const byName = new Map((rows as { name: string; queued: number; retrying: number; active: number; dead_lettered: number }[]).map((r) => [r.name, r]));
    return names.map((queue) => {
      const r = byName.get(queue);
      return { queue, queued: Number(r?.queued ?? 0), retrying: Number(r?.retrying ?? 0), active: Number(r?.active ?? 0), deadLettered: Number(r?.dead_lettered ?? 0) };
    });
  }

  /** A round trip on the queue's own connection (its pool on PostgreSQL), for readiness probes. */
  async ping(): Promise<void> {
    await this.started().getDb().executeSql('SELECT 1', []);
  }

  /** Re-drives a failed job: it gets one more attempt now (and lands in `failed()` again if that fails too). */
  async retry(jobId: string): Promise<void> {
    const boss = this.started();
    const { rows } = await boss.getDb().executeSql(`SELECT name FROM ${this.schema}.job WHERE id = $1::uuid AND state = 'failed'`, [jobId]);
    const row = (rows as { name: string }[])[0];
    if (!row) throw new Error(`no failed job ${jobId}`);
    await boss.retry(row.name, jobId);
  }

  private insertText(table: string, name: string): { before: string; after: string } {
    let text = this.insertTexts.get(name);
    if (!text) {
      const [before, after, ...rest] = insertJobs(this.schema, { table, name, returnId: false, notify: false }).split('$1');
      if (before === undefined || after === undefined || rest.length > 0) throw new Error('unexpected pg-boss job insert statement');
      text = { before, after: `${after} RETURNING start_after` };
      this.insertTexts.set(name, text);
    }
    return text;
  }

  private started(): PgBoss {
    if (!this.boss) throw new Error('job queue not started');
    return this.boss;
  }

  private policy(name: string): QueuePolicy {
    const policy = this.policies.get(name);
    if (!policy) throw new Error(`queue '${name}' is not declared in PgBossQueueOptions.queues`);
    return policy;
  }
}

interface FailedRow {
  id: string;
  name: string;
  data: JsonObject | null;
  retry_count: number | string;
  output: unknown;
  created_on: string | Date;
  completed_on: string | Date | null;
}

/** pg-boss stores the thrown error serialised (message, stack, ...); only the message is shown. */
function errorMessage(output: unknown): string | undefined {
  if (output && typeof output === 'object' && 'message' in output && typeof output.message === 'string') return output.message;
  if (typeof output === 'string') return output;
  return undefined;
}

/** Delays between settle attempts while the database is unreachable (about 15 s in all: a restart or a failover). */
export const SETTLE_RETRY_DELAYS_MS = [250, 500, 1_000, 2_000, 4_000, 8_000];

/**
 * Runs `settle` (completing or failing one attempt, fenced to it), again after a pause when the
 * database could not be reached (a terminated connection, a restart). Other errors, and the last
 * unreachable one, are swallowed: pg-boss's own settle follows, and the lease is the floor.
 */
async function settleWhileUnavailable(settle: () => Promise<unknown>): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await settle();
      return;
    } catch (err) {
      const delay = SETTLE_RETRY_DELAYS_MS[i];
      if (!isStoreUnavailable(err) || delay === undefined) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
