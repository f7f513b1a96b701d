/**
 * The sandbox EHR: a real FHIR R4 server (fhir-router MemoryRepository behind node:http) with a
 * SMART Backend Services token endpoint, a second "object storage" origin, a seeded synthetic
 * chart, request recording and a fault switch. Used by `npm run sandbox`, the flow tests and the
 * records benchmark.
 *
 *   const ehr = await startSandboxEhr({ port: 0 });
 *   // ehr.baseUrl = http://127.0.0.1:PORT/fhir/R4, ehr.tokenUrl = http://127.0.0.1:PORT/auth/token
 *   // ehr.seeded.patientId, seededDocument(ehr.seeded, 'op-note-2024').id: the seeded ids
 *   await ehr.stop();
 *
 * It is as strict as real hospital servers (Medplum, Epic, HAPI), so a test that passes here
 * would pass there: its own UUIDs for everything, SMART scopes enforced per interaction,
 * expiring signed storage links that refuse a bearer, and optionally its own Organization ids,
 * references checked on write and `meta.profile` needing StructureDefinition read. Each of
 * these switches can be turned off for a test that needs leniency:
 *
 *   await startSandboxEhr({ strict: { enforceScopes: false } });
 *
 * strict.ts lists the switches and which are on by default.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { unauthorized } from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import { defaultSandboxClients, type SandboxClient } from './clients.ts';
import { ensureSandboxDefinitions } from './definitions.ts';
import { applyByteFault, createFaultSwitch, type ActiveFault, type FaultSwitch } from './faults.ts';
import { createFhirApi, outcomeReply, type HttpReply } from './fhir-api.ts';
import { seedSandbox, storeConsent, type Blob, type SeededIds, type SeedOptions } from './seed.ts';
import type { SandboxOrganizationKey } from './seed-resources.ts';
import { createObjectStorage } from './storage.ts';
import { strictGate } from './strict-gates.ts';
import { resolveStrict, type StrictOption, type StrictSwitches } from './strict.ts';
import { createTokenService, type TokenService } from './token.ts';

/** Options of {@link startSandboxEhr}. */
export interface SandboxEhrOptions {
  /** EHR port; 0 (default) picks a free one. */
  port?: number;
  /** Storage origin port; default 0 (a free one). */
  storagePort?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Registered client systems; default: the service's outbound client (examples/keys/service-outbound.private.jwk.json). */
  clients?: SandboxClient[];
  seed?: SeedOptions;
  /** FHIR and Binary requests need a bearer token from `/auth/token` (default true). */
  requireAuth?: boolean;
  /** `expires_in` of issued tokens, seconds; default 300. */
  tokenTtlSeconds?: number;
  /** Page size of searches without `_count`; default 50. */
  defaultPageSize?: number;
  /** Strictness switches (strict.ts): `true` all on, `false` all off, or some over DEFAULT_STRICT (the default). */
  strict?: StrictOption;
  /** Lifetime of signed storage links under `signedLinks`, seconds; default 3600. */
  signedLinkTtlSeconds?: number;
  /** Keep the body of every request to the FHIR origin in `requests[i].body` (a demo shows what a client sent); default false. */
  recordBodies?: boolean;
}

/** One request the sandbox received (on either origin), for assertions. */
export interface RecordedRequest {
  origin: 'ehr' | 'storage';
  method: string;
  /** Path with query, e.g. `/fhir/R4/Binary/bin-op-note-2024`. */
  path: string;
  headers: IncomingHttpHeaders;
  /** Whether an Authorization header was present (whatever its value). */
  authorization: boolean;
  /** When the request arrived (Date.now()): retry timing (Retry-After) is checked against it. */
  receivedAt: number;
  /** Status sent; undefined while in flight or when the connection was reset. */
  status?: number;
  /** The fault rule applied, if any. */
  fault?: ActiveFault;
  /** The request body as text, with `recordBodies` (FHIR origin only). */
  body?: string;
}

/** A running sandbox EHR. */
export interface SandboxEhr {
  /** EHR origin, e.g. `http://127.0.0.1:8090`. */
  url: string;
  /** FHIR base: `${url}/fhir/R4`. */
  baseUrl: string;
  /** SMART token endpoint: `${url}/auth/token`. */
  tokenUrl: string;
  /** The storage origin serving signed absolute attachment links. */
  storageUrl: string;
  /** The FHIR store, for tests to inspect or change. */
  repo: MemoryRepository;
  /** Attachment bytes by Binary / object id. */
  blobs: Map<string, Blob>;
  faults: FaultSwitch;
  requests: RecordedRequest[];
  tokens: TokenService;
  seeded: SeededIds;
  /** The strictness switches in force. */
  strict: StrictSwitches;
  /**
   * A signed storage link to an object (a document's `binaryId`), valid `ttlSeconds` (default:
   * the sandbox's link lifetime; negative: already expired, for tests).
   */
  signedUrl(objectId: string, ttlSeconds?: number): string;
  /**
   * Stores one more active Consent for the seeded patient naming these organizations (keys of
   * SANDBOX_ORGANIZATIONS) and returns its id; see `storeConsent` in seed.ts.
   */
  addConsent(recipients: readonly SandboxOrganizationKey[], options?: { id?: string; days?: number }): Promise<string>;
  /** Milliseconds from call to ready (listen + seed). */
  startupMs: number;
  /** Closes both origins (open connections are dropped). */
  stop(): Promise<void>;
}

const FHIR_PREFIX = '/fhir/R4';
const PUBLIC_FHIR_PATHS = /^\/(metadata|\.well-known\/smart-configuration)(\?|$)/;

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, reply: HttpReply, fault: ActiveFault | undefined): void {
  const body = reply.attachment ? applyByteFault(reply.body as Buffer, fault) : reply.body;
  res.writeHead(reply.status, { ...reply.headers, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/**
 * Starts the sandbox EHR and its storage origin, then seeds the chart. Faults apply to both
 * origins; byte faults (corruptBytes, wrongLength) only to raw attachment downloads.
 */
export async function startSandboxEhr(options: SandboxEhrOptions = {}): Promise<SandboxEhr> {
  const started = performance.now();
  const host = options.host ?? '127.0.0.1';
  const requireAuth = options.requireAuth ?? true;
  ensureSandboxDefinitions();
  const repo = new MemoryRepository();
  const blobs = new Map<string, Blob>();
  const faults = createFaultSwitch();
  const requests: RecordedRequest[] = [];
  const strict = resolveStrict(options.strict);
  const urls = { url: '', baseUrl: '', tokenUrl: '', storageUrl: '' };
  const storage = createObjectStorage({ storageUrl: () => urls.storageUrl, blobs, signedLinks: strict.signedLinks, ttlSeconds: options.signedLinkTtlSeconds });
  const tokens = createTokenService({
    clients: options.clients ?? defaultSandboxClients(),
    tokenUrl: () => urls.tokenUrl,
    ttlSeconds: options.tokenTtlSeconds,
    grantRegisteredOnly: strict.enforceScopes,
    jwksUriOnly: strict.jwksUriOnly,
  });
  const fhirApi = createFhirApi({ repo, blobs, baseUrl: () => urls.baseUrl, tokenUrl: () => urls.tokenUrl, defaultPageSize: options.defaultPageSize, presign: storage.presign });

  async function ehrReply(req: IncomingMessage, path: string, raw: Buffer): Promise<HttpReply> {
    const method = req.method ?? 'GET';
    if (path.split('?')[0] === '/auth/token') {
      if (method !== 'POST') return { status: 405, headers: { allow: 'POST' }, body: '' };
      const { status, body } = await tokens.issue(new URLSearchParams(raw.toString('utf8')));
      return { status, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' }, body: JSON.stringify(body) };
    }
    if (path !== FHIR_PREFIX && !path.startsWith(`${FHIR_PREFIX}/`) && !path.startsWith(`${FHIR_PREFIX}?`)) {
      return outcomeReply({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found', details: { text: 'Not found' } }] }, 404);
    }
    const fhirPath = path.slice(FHIR_PREFIX.length) || '/';
    const isPublic = PUBLIC_FHIR_PATHS.test(fhirPath);
    const token = requireAuth && !isPublic ? tokens.check(req.headers.authorization) : undefined;
    if (requireAuth && !isPublic && !token) {
      const reply = outcomeReply(unauthorized, 401);
      reply.headers['www-authenticate'] = 'Bearer realm="sandbox-ehr", error="invalid_token"';
      return reply;
    }
    let body: unknown;
    if (raw.length) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return outcomeReply({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'structure', details: { text: 'Body is not JSON' } }] }, 400);
      }
    }
    const apiRequest = { method, path: fhirPath, headers: req.headers, body };
    const refused = isPublic ? undefined : await strictGate(apiRequest, { repo, strict, baseUrl: urls.baseUrl, scope: token?.scope });
    if (refused) return outcomeReply(refused.outcome, refused.status);
    return fhirApi(apiRequest);
  }

  function handler(origin: RecordedRequest['origin']) {
    return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      const method = req.method ?? 'GET';
      const path = req.url ?? '/';
      const record: RecordedRequest = { origin, method, path, headers: req.headers, authorization: req.headers.authorization !== undefined, receivedAt: Date.now() };
      requests.push(record);
      res.on('finish', () => (record.status = res.statusCode));
      try {
        const raw = await readBody(req);
        if (options.recordBodies && origin === 'ehr' && raw.length) record.body = raw.toString('utf8');
        const fault = faults.take(method, path);
        if (fault) record.fault = fault;
        if (fault?.resetConnection) return void req.socket.destroy();
        if (fault?.delayMs) await sleep(fault.delayMs);
        if (res.destroyed) return;
        if (fault?.status) {
          if (fault.body !== undefined) return send(res, { status: fault.status, headers: { 'content-type': 'application/fhir+json', ...fault.headers }, body: JSON.stringify(fault.body) }, undefined);
          const code = fault.status >= 500 ? 'exception' : 'processing';
          const reply = outcomeReply({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text: `Injected fault: HTTP ${fault.status}` } }] }, fault.status);
          return send(res, { ...reply, headers: { ...reply.headers, ...fault.headers } }, undefined);
        }
        const reply = origin === 'ehr' ? await ehrReply(req, path, raw) : storage.handle(method, path, req.headers.authorization);
        if (fault?.beforeResponse) {
          await fault.beforeResponse();
          if (res.destroyed) return;
        }
        if (fault?.dropResponse) return void req.socket.destroy();
        send(res, reply, fault);
      } catch {
        if (!res.headersSent) send(res, outcomeReply({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', details: { text: 'Internal error' } }] }, 500), undefined);
      }
    };
  }

  const ehrServer = createServer(handler('ehr'));
  const storageServer = createServer(handler('storage'));
  const ehrPort = await listen(ehrServer, options.port ?? 0, host);
  const storagePort = await listen(storageServer, options.storagePort ?? 0, host);
  urls.url = `http://${host}:${ehrPort}`;
  urls.baseUrl = `${urls.url}${FHIR_PREFIX}`;
  urls.tokenUrl = `${urls.url}/auth/token`;
  urls.storageUrl = `http://${host}:${storagePort}`;

  const seeded = await seedSandbox(
    { repo, blobs, storageUrlFor: storage.plainUrl, signedUrlFor: (id) => storage.signedUrl(id), serverIds: strict.serverIds, ownOrganizations: strict.ownOrganizations },
    options.seed,
  );
  return {
    ...urls,
    repo,
    blobs,
    faults,
    requests,
    tokens,
    seeded,
    strict,
    signedUrl: storage.signedUrl,
    addConsent: (recipients, opts) => storeConsent({ repo, serverIds: strict.serverIds }, seeded, recipients, opts),
    startupMs: performance.now() - started,
    stop: async () => {
      await Promise.all([close(ehrServer), close(storageServer)]);
    },
  };
}
