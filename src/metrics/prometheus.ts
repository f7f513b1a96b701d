import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ScrapeSources, ServiceMetrics, TokenRefusalReason } from './metrics.ts';

/** Every metric of the service starts so (default process metrics keep their standard names). */
export const METRIC_PREFIX = 'second_opinion_';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const ROLES = new Set(['referrer', 'consultant', 'physician', 'auditor', 'admin', 'operator']);
const REFUSALS = new Set<TokenRefusalReason>(['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope', 'rate_limited']);

export interface PrometheusMetrics {
  /** The port the use cases report to. */
  metrics: ServiceMetrics;
  /** This service instance's own registry (several services in one process each have theirs). */
  registry: Registry;
  /** The exposition text of one scrape (reads the queue and overdue counts first). */
  scrape(): Promise<{ contentType: string; body: string }>;
}

/**
 * The metrics of one service instance on its own prom-client Registry, with the default
 * process metrics. Job counts and overdue Tasks are read when scraped (one query each); a
 * source that fails leaves its series out of that scrape (a readiness failure says why).
 */
export function createPrometheusMetrics(sources: ScrapeSources, options: { queues: readonly string[] }): PrometheusMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const queues = new Set(options.queues);

  const httpDuration = new Histogram({
    name: `${METRIC_PREFIX}http_request_duration_seconds`,
    help: 'HTTP requests answered, by route template (never the raw path), method and status',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const deliveries = new Counter({
    name: `${METRIC_PREFIX}delivery_attempts_total`,
    help: 'Post-back attempts to referring EHRs, by kind (opinion, follow-up-answer) and outcome (delivered, retrying, failed, skipped)',
    labelNames: ['kind', 'outcome'] as const,
    registers: [registry],
  });
  const assemblySeconds = new Histogram({
    name: `${METRIC_PREFIX}record_set_assembly_seconds`,
    help: 'Record-set assembly attempts, by outcome (assembled, retrying, failed, skipped)',
    labelNames: ['outcome'] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const assemblyBytes = new Histogram({
    name: `${METRIC_PREFIX}record_set_assembly_bytes`,
    help: 'Attachment bytes of each record set assembled',
    buckets: [10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000],
    registers: [registry],
  });
  const tokensIssued = new Counter({
    name: `${METRIC_PREFIX}tokens_issued_total`,
    help: 'Access tokens issued by /auth/token, by the role of the client (one count per role it holds)',
    labelNames: ['role'] as const,
    registers: [registry],
  });
  const tokensRefused = new Counter({
    name: `${METRIC_PREFIX}token_refusals_total`,
    help: 'Token requests refused, by reason (the OAuth error code, or rate_limited)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const jobAttempts = new Counter({
    name: `${METRIC_PREFIX}job_attempts_total`,
    help: 'Job attempts settled by this replica, by queue and outcome (completed, failed)',
    labelNames: ['queue', 'outcome'] as const,
    registers: [registry],
  });
  new Gauge({
    name: `${METRIC_PREFIX}jobs`,
    help: 'Jobs in the queue (all replicas), by queue and state (queued, retrying, active, dead_lettered); read when scraped',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const counts = await sources.jobCounts().catch(() => undefined);
      for (const c of counts ?? []) {
        if (!queues.has(c.queue)) continue;
        this.set({ queue: c.queue, state: 'queued' }, c.queued);
        this.set({ queue: c.queue, state: 'retrying' }, c.retrying);
        this.set({ queue: c.queue, state: 'active' }, c.active);
        this.set({ queue: c.queue, state: 'dead_lettered' }, c.deadLettered);
      }
    },
  });
  const pastRetention = new Gauge({
    name: `${METRIC_PREFIX}audit_events_past_retention`,
    help: 'AuditEvents older than the audit retention still in the store (not exported by npm run audit:export yet), as of the last retention check',
    registers: [registry],
  });
  new Gauge({
    name: `${METRIC_PREFIX}overdue_tasks`,
    help: 'Open consult Tasks marked overdue (business status) by the overdue sweep; read when scraped',
    registers: [registry],
    async collect() {
      this.reset();
      const count = await sources.overdueTasks().catch(() => undefined);
      if (count !== undefined) this.set(count);
    },
  });

  const metrics: ServiceMetrics = {
    httpRequest(route, method, status, seconds) {
      httpDuration.observe({ route, method: METHODS.has(method) ? method : 'other', status: String(status) }, seconds);
    },
    deliveryAttempt(kind, outcome) {
      deliveries.inc({ kind, outcome });
    },
    recordSetAssembly(outcome, seconds, bytes) {
      assemblySeconds.observe({ outcome }, seconds);
      if (outcome === 'assembled' && bytes !== undefined) assemblyBytes.observe(bytes);
    },
    tokenIssued(roles) {
      for (const role of roles) tokensIssued.inc({ role: ROLES.has(role) ? role : 'other' });
    },
    tokenRefused(reason) {
      tokensRefused.inc({ reason: REFUSALS.has(reason) ? reason : 'invalid_request' });
    },
    jobAttempt(queue, outcome) {
      jobAttempts.inc({ queue: queues.has(queue) ? queue : 'other', outcome });
    },
    auditEventsPastRetention(count) {
      pastRetention.set(count);
    },
  };

  return {
    metrics,
    registry,
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
