import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';
import type { Db } from '../store/database.ts';
import type { StatementPart } from '../store/write-batch.ts';

/**
 * The durable job queue the use cases depend on (docs/architecture.md).
 * Job data carries ids and versions, never whole resources or PHI: a handler re-reads the
 * current state before it acts, so a late or repeated run does no harm.
 */

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface EnqueueOptions {
  /**
   * At most one queued, retrying or running job per key and queue (e.g. the ServiceRequest id);
   * only on queues declared `exclusive`, where it is required.
   */
  singletonKey?: string;
  /** Not before this time. */
  startAfter?: Date;
  /** Overrides the queue's retry limit for this job (retries after the first attempt). */
  retryLimit?: number;
}

export interface Job<T extends JsonObject = JsonObject> {
  id: string;
  name: string;
  data: T;
  /** 1 on the first run, 2 on the first retry, ... */
  attempt: number;
}

/**
 * Does the work of one job. Throwing (or rejecting) makes the attempt fail, and the queue
 * retries it with backoff: never catch-and-log inside a handler. Throw a {@link RetryLaterError}
 * to say when the next attempt may come at the earliest (an upstream's `Retry-After`).
 */
export type JobHandler<T extends JsonObject = JsonObject> = (job: Job<T>) => Promise<void>;

/**
 * Fails this attempt like any error, and asks that the retry not start before `retryAt`: the
 * queue waits for the later of its own backoff and `retryAt`, capped at the queue's
 * `retryDelayMaxSeconds` from now (a server asking for a day does not stall the job past the
 * policy). It still uses one retry; on the last attempt the job fails as usual. The message is
 * the cause's, so the dead-letter view reads the same.
 */
export class RetryLaterError extends Error {
  readonly retryAt: Date;

  constructor(retryAt: Date, options: { cause: unknown }) {
    super(options.cause instanceof Error ? options.cause.message : 'retry later', { cause: options.cause });
    this.name = 'RetryLaterError';
    this.retryAt = retryAt;
  }

  /** A time is all it adds to the log line; the cause is serialized on its own. */
  [LOG_FIELDS](): LogFields {
    return { retryAt: this.retryAt.toISOString() };
  }
}

export interface EnqueuePartsOptions {
  /**
   * The name of an earlier part of the same statement (a write batch's `claim`): the jobs are
   * written only if that part returned a row.
   */
  onlyIf?: string;
}

/** A job that used up its retries: the dead-letter view a person reads before re-driving it. */
export interface FailedJob {
  id: string;
  name: string;
  /** Ids and versions only (see above). */
  data: JsonObject;
  /** How many times it ran. */
  attempts: number;
  /** The last error's message (no stack, no payload). */
  lastError: string | undefined;
  createdAt: Date;
  failedAt: Date | undefined;
}

/** Per-queue retry policy. Backoff is exponential with jitter: about `retryDelaySeconds * 2^n`, capped. */
export interface QueuePolicy {
  name: string;
  /**
   * `exclusive`: every job carries a `singletonKey`, and a key has at most one job queued,
   * retrying or running (a second enqueue returns undefined). `standard` (default): no keys.
   * Fixed when the queue is first created.
   */
  policy?: 'standard' | 'exclusive';
  /** Retries after the first attempt. Default 10. */
  retryLimit?: number;
  /** Base delay before the first retry (whole seconds, >= 1). Default 5. */
  retryDelaySeconds?: number;
  /** Cap on one delay (whole seconds). Default 3600. */
  retryDelayMaxSeconds?: number;
  /**
   * Lease: a job running longer than this is treated as abandoned (its worker crashed or hung),
   * counted as a failed attempt and retried, possibly on another replica. Default 900.
   */
  expireInSeconds?: number;
}

export interface JobQueue {
  /**
   * Enqueues inside the caller's DB transaction (pass the transaction's drizzle handle), so
   * the job exists if and only if that transaction commits (outbox semantics).
   * Returns the job id, or undefined when `singletonKey` already has a job pending (exclusive queues).
   */
  enqueue(tx: Db, name: string, data: JsonObject, options?: EnqueueOptions): Promise<string | undefined>;
  /**
   * The same enqueue as parts of one of the caller's own SQL statements (data-modifying CTEs,
   * named `<alias>` and `<alias>_*`), so the jobs cost no statement of their own: they exist if
   * and only if that statement's transaction commits. A singleton key that already has a job
   * pending adds no job, as with `enqueue`.
   */
  enqueueParts(alias: string, name: string, jobs: readonly { data: JsonObject; options?: EnqueueOptions }[], options?: EnqueuePartsOptions): StatementPart[];
  /** Starts handling jobs of `name` on this replica; several replicas share the work. */
  work<T extends JsonObject = JsonObject>(name: string, handler: JobHandler<T>, options?: { concurrency?: number }): Promise<void>;
  /** Jobs that used up their retries, newest first. */
  failed(name?: string): Promise<FailedJob[]>;
  /** Re-drives a failed job: it runs again with a fresh retry budget. */
  retry(jobId: string): Promise<void>;
  start(): Promise<void>;
  /** Graceful (default): waits for running handlers, up to a timeout. Not graceful: their jobs fail now and are retried. */
  stop(options?: { graceful?: boolean }): Promise<void>;
}
