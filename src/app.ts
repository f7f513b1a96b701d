import express, { type Express } from 'express';
import type { AuditLog } from './audit/audit-log.ts';
import { createGuard } from './access/route-guard.ts';
import { createAuthMiddleware } from './auth/middleware.ts';
import { createAuthRouter, isTokenRequest } from './auth/routes.ts';
import { TokenLimits } from './auth/token-limits.ts';
import type { AuthDeps } from './auth/auth-deps.ts';
import type { Config } from './config/config.ts';
import { capabilityStatement } from './fhir-rest/capability-statement.ts';
import { FHIR_JSON } from './fhir/constants.ts';
import { ConformanceCatalog } from './fhir-rest/conformance-resources.ts';
import { createConformanceRouter, createFhirRouter, createFhirTaskRouter, createMeasureRouter } from './fhir-rest/routes.ts';
import { createFhirIntakeRouter } from './fhir-rest/intake/routes.ts';
import { createSubscriptionRouter } from './subscriptions/routes.ts';
import { createErrorHandler, notFoundHandler } from './http/errors.ts';
import { createHealthRouter, type ReadinessChecks } from './http/health.ts';
import { createHomeRouter } from './http/home.ts';
import { createApiDocsRouter } from './http/api-docs/routes.ts';
import { requestMetrics } from './http/request-metrics.ts';
import type { ServiceMetrics } from './metrics/metrics.ts';
import { createMetricsRouter, type Scrape } from './metrics/routes.ts';
import { requestContext } from './http/request-context.ts';
import { refuseMalformedUrl } from './http/refuse-malformed-url.ts';
import { requireUtf8Body } from './http/require-utf8-body.ts';
import { rateLimitByAddress, rateLimitByClient } from './http/rate-limit.ts';
import { RateLimiter } from './limits/rate-limiter.ts';
import { securityHeaders } from './http/security-headers.ts';
import { createIntakeRouter } from './intake/routes.ts';
import type { JobQueue } from './jobs/job-queue.ts';
import type { Logger } from './log/logger.ts';
import type { Network } from './network/network.ts';
import { createParticipantCheckRouter, createParticipantsRouter } from './network/routes.ts';
import { FhirDirectory } from './network/fhir-directory.ts';
import { checkEhrConnection } from './outbound/check-ehr.ts';
import { outboundKeyBaseDir } from './outbound/endpoints.ts';
import type { ResourceStore, ResourceValidator } from './store/resource-store.ts';
import type { BlobStore } from './store/blob-store.ts';
import { createBinaryRouter } from './records/routes.ts';
import { createConsultRouter } from './consults/routes.ts';
import { createDeliveryAdminRouter } from './delivery/routes.ts';
import { createFollowUpRouter } from './followups/routes.ts';
import { createRecordPushAdminRouter } from './record-push/routes.ts';
import type { OutboundKeys } from './outbound/outbound-keys.ts';
import type { FhirClient } from './outbound/fhir-client.ts';
import { createClientJwksRouter } from './outbound/routes.ts';

export interface AppDeps {
  config: Config;
  log: Logger;
  store: ResourceStore;
  /** Checks what the FHIR write doors store (Subscriptions) against R4 and our profiles. */
  validator: ResourceValidator;
  network: Network;
  auth: AuthDeps;
  jobs: JobQueue;
  /** Where reads of referrals, record sets and documents are audited. */
  audit: AuditLog;
  /** Attachment bytes, served at /fhir/Binary/{id}. */
  blobs: BlobStore;
  /** The FHIR client of each participant's EHR, by participant id (the FHIR intake reads the Organizations a referral names by the EHR's reference). */
  ehrClients: ReadonlyMap<string, FhirClient>;
  /** The keys the service signs its client assertions to EHRs with, published at the client JWK Set URL. */
  outboundKeys: OutboundKeys;
  /** What readiness checks, by dependency name (`database`, `job-queue`): each throws while it is unreachable. */
  readiness: ReadinessChecks;
  /** The metrics port, and how to scrape (METRICS=bearer: served here to operators). */
  metrics?: { port: ServiceMetrics; scrape?: Scrape };
  now: () => Date;
  software: { name: string; version: string };
}

/**
 * Builds the Express app from its dependencies. Express is only the adapter: each route
 * parses, calls one use case, and sends. Public routes come first, then the bearer-token
 * middleware guards everything after it.
 */
export function createApp(deps: AppDeps): Express {
  const { config, log } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', config.trustProxy);
  app.use(securityHeaders({ publicUrl: config.publicUrl, hstsMaxAgeSeconds: config.hstsMaxAgeSeconds }));
  app.use(requestContext(log));
  if (deps.metrics) app.use(requestMetrics(deps.metrics.port));

  // Public: health, SMART discovery and token endpoint, the client JWK Set, CapabilityStatement, API reference.
  // Every route after health counts against the per-address limit, but the token endpoint, which has its own.
  app.use(createHealthRouter({ checks: deps.readiness }));
  app.use(createHomeRouter({ publicUrl: config.publicUrl, software: deps.software }));
  app.use(rateLimitByAddress(new RateLimiter(config.rateLimits.api.perAddress), { except: isTokenRequest }));
  app.use(createAuthRouter({ ...deps.auth, ...(deps.metrics ? { metrics: deps.metrics.port } : {}), tokenLimits: new TokenLimits(config.rateLimits.token, log) }));
  app.use(createClientJwksRouter({ keys: deps.outboundKeys, now: deps.now }));
  const metadata = JSON.stringify(capabilityStatement(config.publicUrl, deps.software, deps.now().toISOString()));
  app.get('/fhir/metadata', (_req, res) => {
    res.type(FHIR_JSON).send(metadata);
  });

  // Bad input is refused before the API's routes parse it (the token endpoint answers OAuth errors itself).
  app.use(refuseMalformedUrl, requireUtf8Body);
  // Public too: our CodeSystems, ValueSets, StructureDefinitions and Measure (not PHI), so every canonical we use resolves.
  app.use(createConformanceRouter({ catalog: ConformanceCatalog.load(), fhirBaseUrl: `${config.publicUrl}/fhir` }));
  // The OpenAPI document of the JSON API and its reference page (built on first request, then kept).
  app.use(createApiDocsRouter({ publicUrl: config.publicUrl, software: deps.software }));

  // Everything below needs a valid bearer token, and each route its row of the access rules.
  app.use(createAuthMiddleware(deps.auth));
  app.use(rateLimitByClient(new RateLimiter(config.rateLimits.api.perClient)));
  const guard = createGuard(deps.audit);
  app.use(createParticipantsRouter({ guard, network: deps.network }));
  if (deps.metrics?.scrape) app.use(createMetricsRouter({ guard, scrape: deps.metrics.scrape }));
  app.use(
    createIntakeRouter({
      guard,
      intake: { store: deps.store, network: deps.network, dueDays: config.dueDays, now: deps.now, jobs: deps.jobs },
      summary: {
        store: deps.store,
        participantByOrganization: (reference) => deps.network.findByOrganization(reference),
        now: deps.now,
        audit: deps.audit,
      },
      publicUrl: config.publicUrl,
      bodyLimitBytes: config.bodyLimitBytes,
    }),
  );
  app.use(createConsultRouter({ guard, store: deps.store, network: deps.network, jobs: deps.jobs, audit: deps.audit, now: deps.now, publicUrl: config.publicUrl, bodyLimitBytes: config.bodyLimitBytes }));
  app.use(createFollowUpRouter({ guard, store: deps.store, network: deps.network, jobs: deps.jobs, followUps: config.followUps, now: deps.now, publicUrl: config.publicUrl, bodyLimitBytes: config.bodyLimitBytes }));
  app.use(createDeliveryAdminRouter({ guard, store: deps.store, jobs: deps.jobs, now: deps.now }));
  app.use(createRecordPushAdminRouter({ guard, store: deps.store, jobs: deps.jobs, now: deps.now }));
  const checkDeps = { network: deps.network, keyBaseDir: outboundKeyBaseDir(config.networkFile), audit: deps.audit, maxAttachmentBytes: config.maxAttachmentBytes, door: 'GET /admin/participants/{id}/check' };
  app.use(createParticipantCheckRouter({ guard, check: (caller, input) => checkEhrConnection(caller, input, checkDeps) }));
  app.use(createBinaryRouter({ guard, store: deps.store, blobs: deps.blobs, audit: deps.audit }));
  // FHIR intake: before the read API, whose catch-all refuses other writes.
  app.use(
    createFhirIntakeRouter({
      guard,
      intake: { store: deps.store, network: deps.network, dueDays: config.dueDays, now: deps.now, jobs: deps.jobs },
      participants: () => deps.network.participants,
      fhirBaseUrl: `${config.publicUrl}/fhir`,
      ehrClient: (participantId) => deps.ehrClients.get(participantId),
      bodyLimitBytes: config.bodyLimitBytes,
    }),
  );
  app.use(createFhirTaskRouter({ guard, store: deps.store, network: deps.network, jobs: deps.jobs, audit: deps.audit, now: deps.now, bodyLimitBytes: config.bodyLimitBytes }));
  app.use(
    createSubscriptionRouter({
      guard,
      store: deps.store,
      validator: deps.validator,
      network: deps.network,
      jobs: deps.jobs,
      now: deps.now,
      fhirBaseUrl: `${config.publicUrl}/fhir`,
      minHeartbeatSeconds: config.subscriptions.minHeartbeatSeconds,
      maxTimeoutSeconds: Math.max(1, Math.floor(config.webhook.timeoutMs / 1000)),
      audit: deps.audit,
      bodyLimitBytes: config.bodyLimitBytes,
    }),
  );
  app.use(createMeasureRouter({ guard, store: deps.store, network: deps.network, validator: deps.validator, now: deps.now }));
  app.use(createFhirRouter({ store: deps.store, fhirBaseUrl: `${config.publicUrl}/fhir`, audit: deps.audit, directory: new FhirDirectory(deps.network, deps.now()) }));

  app.use(notFoundHandler);
  app.use(createErrorHandler(log));
  return app;
}
