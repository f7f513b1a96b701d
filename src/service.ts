import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createApp } from './app.ts';
import type { AuthDeps } from './auth/auth-deps.ts';
import { ExampleKeyError, findExampleKeys, type KeyInUse } from './auth/example-keys.ts';
import { loadSigningKey, type ServiceSigningKey } from './auth/signing-key.ts';
import type { Config } from './config/config.ts';
import { createValidator } from './fhir/validator.ts';
import { answerClientError } from './http/client-error.ts';
import { createHttpServer, drainHttpServer } from './http/http-server.ts';
import { AuditLog } from './audit/audit-log.ts';
import { startAuditRetentionCheck } from './audit/retention-check.ts';
import type { Logger } from './log/logger.ts';
import { PgBossQueue } from './jobs/pg-boss-queue.ts';
import type { Job, JobHandler, JsonObject, QueuePolicy } from './jobs/job-queue.ts';
import { QUEUE, queuePolicies as buildQueuePolicies, type AssembleRecordSetJob, type DeliverFollowUpAnswerJob, type DeliverOpinionJob, type NotifySubscriptionJob, type NotifyWebhookJob, type PushRecordSetJob } from './jobs/queues.ts';
import { deliverOpinion } from './delivery/deliver-opinion.ts';
import { deliverFollowUpAnswer } from './followups/deliver-answer.ts';
import { sendTaskNotification, taskNotificationObserver } from './notify/task-notifications.ts';
import { countOverdueTasks, startOverdueSweep } from './consults/overdue-sweep.ts';
import { startMetricsServer } from './http/metrics-server.ts';
import { NO_METRICS } from './metrics/metrics.ts';
import { createPrometheusMetrics } from './metrics/prometheus.ts';
import { sendSubscriptionNotification, startHeartbeatSweep } from './subscriptions/subscription-delivery.ts';
import { loadNetwork, type Network } from './network/network.ts';
import { createParticipantFhirClients, outboundKeyBaseDir } from './outbound/endpoints.ts';
import { exampleNetworkHint, OutageNotices } from './outbound/outage-notices.ts';
import { loadOutboundKeys, type OutboundKeys } from './outbound/outbound-keys.ts';
import { assembleRecordSet } from './records/assemble-record-set.ts';
import { pushRecordSet } from './record-push/push-record-set.ts';
import { DisclosureGate } from './access/disclosure-gate.ts';
import { openBlobBackend } from './store/blob-backend.ts';
import { BlobStore } from './store/blob-store.ts';
import { startBlobSweep } from './store/blob-sweep.ts';
import { createDatabaseJtiStore } from './store/assertion-jti-store.ts';
import { type Database, openDatabase } from './store/database.ts';
import { ResourceStore, type ResourceValidator } from './store/resource-store.ts';

export interface RunningService {
  /** Base URL the server listens on (http://host:port). */
  url: string;
  server: Server;
  database: Database;
  jobs: PgBossQueue;
  /** Where an open metrics port serves `/metrics` (METRICS=port). */
  metricsUrl?: string;
  /** Graceful stop: stop accepting, let in-flight requests finish (up to the timeout), close the store. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** An already open database (tests); otherwise opened from the config. */
  database?: Database;
  now?: () => Date;
  /** The FHIR validator every write goes through; defaults to R4 + our profiles. */
  validator?: ResourceValidator;
  /** Replaces the queues' retry policies (tests: short retry delays). Default QUEUE_POLICIES. */
  queuePolicies?: readonly QueuePolicy[];
  /** How often idle workers poll for due jobs (retries), seconds. Default 2. */
  jobPollingIntervalSeconds?: number;
}

const PACKAGE = JSON.parse(readFileSync(path.join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { name: string; version: string };

/**
 * Start-up in one place: network -> signing key -> store (migrations) -> job queue -> validator -> HTTP.
 * `stop()` undoes it in reverse. main.ts wires it to signals; tests call it directly.
 */
export async function startService(config: Config, log: Logger, options: StartOptions = {}): Promise<RunningService> {
  const network = await loadNetwork(config.networkFile);
  if (network.isExample) {
    log.warn({ networkFile: 'examples/network.json' }, 'using the shipped EXAMPLE network and example client keys: for trying the service only, set NETWORK_FILE for real use');
  }
  const signingKey = await loadSigningKey(config);
  const now = options.now ?? (() => new Date());
  // Outbound keys are read here, before anything is opened: a bad key fails the boot, not the first job.
  // Key file paths are relative to the network file; the example network's to the repository root.
  const outboundKeys = await loadOutboundKeys(network, { keyBaseDir: outboundKeyBaseDir(config.networkFile) });
  if (config.nodeEnv === 'production') await refuseExampleKeys(signingKey, network, outboundKeys);
  // One warning per outage of a participant's server, naming it, instead of one per job attempt.
  const outages = new OutageNotices({ log, hint: network.isExample ? exampleNetworkHint : undefined });
  const fhirClients = await createParticipantFhirClients(network, {
    keys: outboundKeys,
    outages,
    // Which key signs follows the service's clock (rotation dates).
    now: () => now().getTime(),
    // A scope-enforcing EHR refuses what its token does not cover: say what is missing, once, before a job fails on it.
    onScopeReport: ({ participantId, stage, missing }) =>
      log.warn({ event: 'outbound.scope-missing', participant: participantId, stage, missing }, stage === 'requested' ? 'the scope requested from this EHR leaves out what the service needs there' : 'the EHR granted a scope that leaves out what the service needs there'),
  });
  // An attempt is a token call and two creates (plus one token retry): a shorter lease could let a
  // retry run beside a slow attempt still in flight, leaving exactly-once to the EHR's If-None-Exist alone.
  const slowestAttemptMs = 4 * Math.max(0, ...network.list('referrer').map((p) => p.fhir?.timeoutMs ?? 30_000));
  if (config.deliveryAttemptTimeoutSeconds * 1000 < slowestAttemptMs) {
    log.warn({ deliveryAttemptTimeoutSeconds: config.deliveryAttemptTimeoutSeconds, slowestAttemptSeconds: slowestAttemptMs / 1000 }, 'DELIVERY_ATTEMPT_TIMEOUT_SECONDS is shorter than a post-back attempt can take (4 x the referrers\' fhir.timeoutMs): a retry may overlap a slow attempt');
  }
  const queuePolicies = options.queuePolicies ?? buildQueuePolicies({ delivery: config.deliveryRetry, deliveryAttemptTimeoutSeconds: config.deliveryAttemptTimeoutSeconds, assemblyAttemptTimeoutSeconds: config.assemblyAttemptTimeoutSeconds, assemblyRetry: config.assemblyRetry, webhook: { retryLimit: config.webhook.retryLimit, retryDelaySeconds: config.webhook.retryDelaySeconds, timeoutMs: config.webhook.timeoutMs } });
  const database = options.database ?? (await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: config.databasePoolSize }));
  let migrated = false;
  // Metrics: one registry per service instance. Job and overdue counts are read when scraped.
  let jobsForScrape: PgBossQueue | undefined;
  let storeForScrape: ResourceStore | undefined;
  const prometheus =
    config.metrics.mode === 'off'
      ? undefined
      : createPrometheusMetrics(
          {
            jobCounts: async () => (jobsForScrape ? jobsForScrape.counts() : []),
            overdueTasks: async () => (storeForScrape ? countOverdueTasks(storeForScrape) : 0),
          },
          { queues: queuePolicies.map((q) => q.name) },
        );
  const metrics = prometheus?.metrics ?? NO_METRICS;
  const jobs = new PgBossQueue(database.raw, {
    metrics,
    queues: queuePolicies,
    superviseIntervalSeconds: config.jobSuperviseIntervalSeconds,
    ...(options.jobPollingIntervalSeconds !== undefined ? { pollingIntervalSeconds: options.jobPollingIntervalSeconds } : {}),
    onError: (err) => log.error({ err }, 'job queue background error'),
  });
  try {
    await database.migrate();
    migrated = true;
    await jobs.start();
  } catch (err) {
    await jobs.stop({ graceful: false }).catch(() => undefined);
    if (!options.database) await database.close();
    throw err;
  }
  const validator = options.validator ?? createValidator();
  // Every Task change a participant may read is announced on its webhook (outbox: same transaction).
  const store = new ResourceStore(database.db, validator, now, { observers: [taskNotificationObserver({ jobs, network, now })] });
  jobsForScrape = jobs;
  storeForScrape = store;
  // Audited reads and pushes pass the disclosure gate (consent withdrawn); the withdrawal it may record is audited in turn.
  let audit: AuditLog | undefined;
  const gate = new DisclosureGate({ store, clients: fhirClients, network, audit: () => audit as AuditLog, now, recheckTtlMs: config.consentRecheckSeconds * 1000 });
  audit = new AuditLog({ store, network, now, publicUrl: config.publicUrl, gate });
  const assemblyPolicy = queuePolicies.find((q) => q.name === QUEUE.assembleRecordSet);
  const blobs = new BlobStore(database.db, await openBlobBackend(config.blobStore), { now });
  const assemblyDeps = {
    store,
    blobs,
    clients: fhirClients,
    network,
    publicUrl: config.publicUrl,
    maxAttachmentBytes: config.maxAttachmentBytes,
    attachmentConcurrency: config.attachmentConcurrency,
    consentAttestationAllowed: config.consentAttestationAllowed,
    validator,
    audit,
    retryLimit: assemblyPolicy?.retryLimit ?? 10,
    jobs,
    now,
    metrics,
  };
  await jobs.work<AssembleRecordSetJob>(QUEUE.assembleRecordSet, logged(log, outages, 'record set assembly', (d) => ({ serviceRequestId: d.serviceRequestId }), (job) => assembleRecordSet(job, assemblyDeps)), { concurrency: 2 });
  const deliveryPolicy = queuePolicies.find((q) => q.name === QUEUE.deliverOpinion);
  const deliveryDeps = { store, clients: fhirClients, audit, network, retryLimit: deliveryPolicy?.retryLimit ?? 30, now, metrics };
  await jobs.work<DeliverOpinionJob>(QUEUE.deliverOpinion, logged(log, outages, 'opinion delivery', (d) => ({ deliveryId: d.deliveryId }), (job) => deliverOpinion(job, deliveryDeps)), { concurrency: config.deliveryConcurrency });
  const followUpPolicy = queuePolicies.find((q) => q.name === QUEUE.deliverFollowUpAnswer);
  const followUpDeliveryDeps = { ...deliveryDeps, retryLimit: followUpPolicy?.retryLimit ?? 30 };
  await jobs.work<DeliverFollowUpAnswerJob>(QUEUE.deliverFollowUpAnswer, logged(log, outages, 'follow-up answer delivery', (d) => ({ followUpId: d.followUpId }), (job) => deliverFollowUpAnswer(job, followUpDeliveryDeps)), { concurrency: 4 });
  const pushPolicy = queuePolicies.find((q) => q.name === QUEUE.pushRecordSet);
  const pushDeps = { store, clients: fhirClients, network, validator, audit, gate, retryLimit: pushPolicy?.retryLimit ?? 30, now };
  await jobs.work<PushRecordSetJob>(QUEUE.pushRecordSet, logged(log, outages, 'record set push', (d) => ({ pushId: d.pushId }), (job) => pushRecordSet(job, pushDeps)), { concurrency: 2 });
  const notifyDeps = { network, fhirBaseUrl: `${config.publicUrl}/fhir`, timeoutMs: config.webhook.timeoutMs, now };
  await jobs.work<NotifyWebhookJob>(QUEUE.notifyWebhook, logged(log, outages, 'webhook notification', (d) => ({ participantId: d.participantId, taskId: d.taskId }), (job) => sendTaskNotification(job, notifyDeps)), { concurrency: 4 });
  const subscriptionPolicy = queuePolicies.find((q) => q.name === QUEUE.notifySubscription);
  const subscriptionSendDeps = { db: database.db, validator, fhirBaseUrl: `${config.publicUrl}/fhir`, timeoutMs: config.webhook.timeoutMs, retryLimit: subscriptionPolicy?.retryLimit ?? 20, now };
  await jobs.work<NotifySubscriptionJob>(QUEUE.notifySubscription, logged(log, outages, 'subscription notification', (d) => ({ subscriptionId: d.subscriptionId, type: d.type, eventNumber: d.eventNumber }), (job) => sendSubscriptionNotification(job, subscriptionSendDeps)), { concurrency: 4 });
  const auth: AuthDeps = { config, network, signingKey, jtiStore: createDatabaseJtiStore(database.db, { now }), now, log };
  const app = createApp({
    config,
    log,
    store,
    validator,
    network,
    auth,
    jobs,
    audit,
    blobs,
    ehrClients: fhirClients,
    outboundKeys,
    now,
    software: { name: PACKAGE.name, version: PACKAGE.version },
    readiness: {
      database: async () => {
        if (!migrated) throw new Error('migrations pending');
        await database.ping();
      },
      'job-queue': () => jobs.ping(),
    },
    ...(prometheus ? { metrics: { port: metrics, ...(config.metrics.mode === 'bearer' ? { scrape: prometheus.scrape } : {}) } } : {}),
  });

  // The overdue sweep: every replica runs it; it is idempotent (see overdue-sweep.ts).
  const overdueSweep = startOverdueSweep({ store, now }, config.overdueSweepIntervalSeconds, log);
  // Subscription heartbeats: every replica sweeps; claiming a due heartbeat is one UPDATE (no doubles).
  const heartbeats = startHeartbeatSweep({ store, jobs, now }, config.subscriptions.heartbeatSweepSeconds, (err) => log.error({ err }, 'subscription heartbeat sweep failed'));
  // Bytes without a blob row (a put that died midway): every replica sweeps, see blob-sweep.ts.
  const blobSweep = startBlobSweep({ blobs, now }, config.blobSweep, log);
  // AuditEvents past the retention and not archived yet: a warning and a gauge, never a deletion (audit/retention-check.ts).
  const retentionCheck = startAuditRetentionCheck({ db: database.db, now, retention: config.auditRetention, metrics }, config.auditRetentionCheckIntervalSeconds, log);

  const undoStart = async () => {
    await overdueSweep.stop();
    await heartbeats.stop();
    await blobSweep.stop();
    await retentionCheck.stop();
    await blobs.backend.close();
    await jobs.stop({ graceful: false }).catch(() => undefined);
    if (!options.database) await database.close();
  };
  const server = createHttpServer(app, config.http).listen(config.port, config.host);
  server.on('clientError', answerClientError);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
  } catch (err) {
    // Not listening (e.g. the port is taken): undo what was started, then fail the boot.
    await undoStart();
    throw err;
  }
  let metricsServer: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  if (prometheus && config.metrics.mode === 'port') {
    try {
      metricsServer = await startMetricsServer(prometheus.scrape, { port: config.metrics.port, host: config.host });
    } catch (err) {
      // The metrics port is taken: the same.
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await undoStart();
      throw err;
    }
  }
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  log.info({ port, store: database.kind }, 'listening');

  let stopping: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    server,
    database,
    jobs,
    ...(metricsServer ? { metricsUrl: metricsServer.url } : {}),
    stop() {
      stopping ??= (async () => {
        // One budget for the whole drain: requests first (they may enqueue jobs), then jobs.
        const deadline = Date.now() + config.shutdownTimeoutSeconds * 1000;
        await drainHttpServer(server, deadline);
        await metricsServer?.close();
        await overdueSweep.stop();
        await heartbeats.stop();
        await blobSweep.stop();
        await retentionCheck.stop();
        // Running jobs get what is left of the budget (at least 1 s), then go back to the queue.
        // The queue stops before the store closes (on PGlite it shares the one session).
        await jobs.stop({ graceful: true, timeoutMs: Math.max(1_000, deadline - Date.now()) });
        await blobs.backend.close();
        await database.close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}

/**
 * A job handler with one log line per attempt: ids and the outcome, or the error as the logger
 * serializes it (class, code, status, stack frames; never a message that could carry PHI).
 * A failure is rethrown, so the queue retries it with backoff; a job that ended failed without
 * throwing (a permanent outbound failure, the last attempt) logs the error that ended it.
 * While a participant's server is known to be unreachable, its no-answer failures are logged
 * at debug: the outage has its own warning (outage-notices.ts).
 */
function logged<T extends JsonObject>(log: Logger, outages: Pick<OutageNotices, 'covers'>, what: string, ids: (data: T) => Record<string, string>, run: (job: Job<T>) => Promise<{ outcome: string; error?: unknown }>): JobHandler<T> {
  return async (job) => {
    const fields = { jobId: job.id, ...ids(job.data), attempt: job.attempt };
    try {
      const result = await run(job);
      if (result.outcome === 'failed' && result.error !== undefined) log[outages.covers(result.error) ? 'debug' : 'warn']({ ...fields, outcome: result.outcome, err: result.error }, `${what} attempt failed`);
      else log.info({ ...fields, outcome: result.outcome }, what);
    } catch (err) {
      // A server already announced as unreachable (outage-notices.ts): the attempt's line is detail.
      log[outages.covers(err) ? 'debug' : 'warn']({ ...fields, err }, `${what} attempt failed`);
      throw err;
    }
  };
}

/**
 * NODE_ENV=production: refuses to start when the signing key, a client registration of the network
 * file or an outbound key is one of the example keys (whose private halves are published),
 * whatever its file name or kid; one error naming every place.
 */
async function refuseExampleKeys(signingKey: ServiceSigningKey, network: Network, outboundKeys: OutboundKeys): Promise<void> {
  const keys: KeyInUse[] = [{ where: 'SIGNING_KEY_FILE', jwk: signingKey.publicJwk }];
  network.participants.forEach((p, pi) =>
    p.clients.forEach((c, ci) => (c.jwks?.keys ?? []).forEach((jwk, ki) => keys.push({ where: `network file participants[${pi}] (${p.id}).clients[${ci}].jwks.keys[${ki}] (client ${c.clientId})`, jwk: jwk as KeyInUse['jwk'] }))),
  );
  for (const [participantId, list] of outboundKeys) for (const k of list) keys.push({ where: `network file ${participantId} ${k.entry} (outbound key)`, jwk: k.publicJwk });
  const found = await findExampleKeys(keys);
  if (found.length > 0) throw new ExampleKeyError(found);
}
