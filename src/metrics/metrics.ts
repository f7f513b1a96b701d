/**
 * The metrics port: what the use cases, jobs and HTTP adapter report, as plain calls. Only
 * metrics/prometheus.ts knows prom-client; everything else depends on this interface, and a
 * caller that is given none reports to {@link NO_METRICS}.
 *
 * Labels are closed sets written here (outcomes, reasons, roles, queue names, route templates):
 * never an id, a client id, a path with ids in it, or anything a caller sent.
 */

/** Which post-back to a referring EHR. */
export type DeliveryKind = 'opinion' | 'follow-up-answer';

/**
 * How one post-back attempt ended: `delivered`; `retrying` (failed, another attempt is
 * scheduled); `failed` (failed and given up: the Task says delivery failed); `skipped` (nothing
 * to do: already delivered, or the opinion is gone).
 */
export type DeliveryOutcome = 'delivered' | 'retrying' | 'failed' | 'skipped';

/** How one record-set assembly attempt ended (the same words as the post-backs). */
export type AssemblyOutcome = 'assembled' | 'retrying' | 'failed' | 'skipped';

/**
 * Why the token endpoint refused: the OAuth error code, or `rate_limited` for the abuse limits
 * (429 `slow_down`, a locked-out client).
 */
export type TokenRefusalReason = 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unauthorized_client' | 'unsupported_grant_type' | 'invalid_scope' | 'rate_limited';

export interface ServiceMetrics {
  /** One HTTP request answered: its route template (never the raw path), method and status. */
  httpRequest(route: string, method: string, status: number, seconds: number): void;
  /** One post-back attempt to a referring EHR. */
  deliveryAttempt(kind: DeliveryKind, outcome: DeliveryOutcome): void;
  /** One record-set assembly attempt; `bytes`: the attachment bytes of the record sets it assembled. */
  recordSetAssembly(outcome: AssemblyOutcome, seconds: number, bytes?: number): void;
  /** An access token issued to a client holding these roles. */
  tokenIssued(roles: readonly string[]): void;
  tokenRefused(reason: TokenRefusalReason): void;
  /** One job attempt settled by this replica's worker (`failed`: the handler threw; the queue retries or gives up). */
  jobAttempt(queue: string, outcome: 'completed' | 'failed'): void;
  /** AuditEvents older than the audit retention still in the store, as of the last retention check. */
  auditEventsPastRetention(count: number): void;
}

/** Reports nothing (unit tests, CLI tools). */
export const NO_METRICS: ServiceMetrics = {
  httpRequest() {},
  deliveryAttempt() {},
  recordSetAssembly() {},
  tokenIssued() {},
  tokenRefused() {},
  jobAttempt() {},
  auditEventsPastRetention() {},
};

/** Job counts of one queue, read on scrape. */
export interface QueueCounts {
  queue: string;
  /** Waiting for a worker (first attempt), including jobs scheduled for later. */
  queued: number;
  /** An attempt failed; the retry waits for its backoff. */
  retrying: number;
  active: number;
  /** Used up their retries (or failed permanently): the dead-letter view, until re-driven or expired. */
  deadLettered: number;
}

/** What a scrape reads from the store: one query each, run only when metrics are scraped. */
export interface ScrapeSources {
  jobCounts(): Promise<QueueCounts[]>;
  overdueTasks(): Promise<number>;
}

/** A seconds stopwatch on the monotonic clock (durations must not follow a test's fixed `now`). */
export function stopwatch(): () => number {
  const start = process.hrtime.bigint();
  return () => Number(process.hrtime.bigint() - start) / 1e9;
}
