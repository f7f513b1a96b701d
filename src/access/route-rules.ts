/**
 * Who may call which route, written once as data. The route guard (access/route-guard.ts)
 * enforces these rows for every door mounted on the HTTP server; a route registered without a
 * row fails the access-matrix test, and `guard()` refuses to build a guard for a route it does
 * not know. What a caller may then see of a given referral is the other half of the rules: the
 * access lists (access/audience.ts) read through `readerOf` (access/reader.ts), summarised in
 * `RESOURCE_AUDIENCES` (access/resource-audiences.ts).
 */
import type { ResourceType } from '@medplum/fhirtypes';
import type { AuditAction } from '../audit/audit-event.ts';
import type { Interaction } from '../auth/scopes.ts';
import type { Role } from '../network/network-schema.ts';

export type RouteMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'ALL';

/** Who may call a route. */
export type RouteAccess =
  /** No token needed (health, discovery, the token endpoint, the CapabilityStatement, the API description). */
  | { kind: 'public' }
  /** Any participant with a valid token. */
  | { kind: 'authenticated' }
  /**
   * Participants holding one of `roles` and (when given) a scope granting `scope`. Refusals are
   * 403, the same for every id, so they reveal nothing. With `audit`, a refusal is also an
   * AuditEvent naming the requested resource (`param` holds its id): the route reads PHI.
   */
  | { kind: 'roles'; roles: readonly Role[]; scope?: { type: string; interaction: Interaction }; audit?: { action: AuditAction; type: string; param: string } }
  /** The FHIR read API: rules per resource type (`FHIR_TYPE_ACCESS`), checked and audited by the API itself. */
  | { kind: 'fhir' };

export interface RouteRule {
  method: RouteMethod;
  /** The path as registered with Express (`:id` parameters). */
  path: string;
  access: RouteAccess;
  /** What the route is for, for the access table in docs/security.md. */
  what: string;
}

const referrer = (what: string, path: string): RouteRule => ({ method: 'POST', path, what, access: { kind: 'roles', roles: ['referrer'], scope: { type: 'ServiceRequest', interaction: 'c' } } });
const referralRead = (what: string, path: string): RouteRule => ({
  method: 'GET',
  path,
  what,
  access: { kind: 'roles', roles: ['referrer', 'physician'], scope: { type: 'ServiceRequest', interaction: 'r' }, audit: { action: 'read', type: 'ServiceRequest', param: 'id' } },
});
const consultAction = ([action, what]: [string, string]): RouteRule => ({
  method: 'POST',
  path: `/consults/:taskId/${action}`,
  what: `Consultant: ${what}`,
  access: { kind: 'roles', roles: ['consultant'], scope: { type: 'Task', interaction: 'u' } },
});
/**
 * The FHIR Subscription door: any participant Tasks are about, with the Subscription
 * scope of the interaction. Reads of one Subscription (read, `$status`, `$events`) reveal which
 * Tasks changed: a refusal is audited like a refused PHI read.
 */
const subscriptionRoute = (method: RouteMethod, path: string, interaction: Interaction, what: string, audit?: AuditAction): RouteRule => ({
  method,
  path,
  what: `FHIR Subscription: ${what}`,
  access: { kind: 'roles', roles: ['referrer', 'consultant', 'physician'], scope: { type: 'Subscription', interaction }, ...(audit ? { audit: { action: audit, type: 'Subscription', param: 'id' } } : {}) },
});
const open = (method: RouteMethod, path: string, what: string): RouteRule => ({ method, path, what, access: { kind: 'public' } });

export const ROUTE_RULES: readonly RouteRule[] = [
  open('GET', '/', 'What the service is, with links to its documentation, metadata and health endpoints'),
  open('GET', '/healthz', 'Liveness'),
  open('GET', '/readyz', 'Readiness'),
  open('POST', '/auth/token', 'SMART Backend Services token request'),
  open('GET', '/.well-known/smart-configuration', 'SMART discovery'),
  open('GET', '/fhir/.well-known/smart-configuration', 'SMART discovery (under the FHIR base)'),
  open('GET', '/.well-known/jwks.json', 'The public key access tokens are signed with'),
  open('GET', '/.well-known/client-jwks.json', 'The public keys of the service\'s client assertions to EHRs (the JWK Set URL EHRs register)'),
  open('GET', '/fhir/metadata', 'CapabilityStatement'),
  open('GET', '/openapi.json', 'OpenAPI 3.1 description of the HTTP API'),
  open('GET', '/docs', 'API reference page (renders /openapi.json)'),
  open('GET', '/docs/:asset', 'Script, style sheet and icons of the API reference page'),
  // Our CodeSystems, ValueSets and StructureDefinitions (fhir-rest/conformance-resources.ts): not PHI, resolvable by anyone.
  ...(['CodeSystem', 'ValueSet', 'StructureDefinition', 'Measure'] as const).flatMap((type) => [
    open('GET', `/fhir/${type}`, `Our ${type}s, searched by url (conformance resources)`),
    open('GET', `/fhir/${type}/:id`, `One of our ${type}s`),
  ]),
  { method: 'GET', path: '/participants', what: 'The network directory', access: { kind: 'authenticated' } },
  // Counts and timings only, no PHI and no ids; served here only with METRICS=bearer (docs/operations.md).
  { method: 'GET', path: '/metrics', what: 'Prometheus metrics (METRICS=bearer; with METRICS=port they are on their own port instead)', access: { kind: 'roles', roles: ['operator'] } },
  referrer('Refer: a new second-opinion request', '/second-opinions'),
  referralRead('Referral summary', '/second-opinions/:id'),
  referralRead('First and returned opinions side by side', '/second-opinions/:id/comparison'),
  referrer('Referrer: add records to the referral', '/second-opinions/:id/records'),
  referrer('Referrer: add consulting clinics to the referral', '/second-opinions/:id/consultants'),
  referrer('Referrer: cancel the referral', '/second-opinions/:id/cancel'),
  referrer('Referrer: answer a request for information', '/second-opinions/:id/info'),
  referrer('Referrer: record that the patient withdrew consent for some or all consultants', '/second-opinions/:id/consent-withdrawal'),
  referrer('Referrer: ask a consultant a follow-up question after its opinion', '/second-opinions/:id/consultants/:participant/questions'),
  { method: 'GET', path: '/consults', what: 'Consultant: its worklist', access: { kind: 'roles', roles: ['consultant'], scope: { type: 'Task', interaction: 's' } } },
  ...(
    [
      ['receive', 'acknowledge its Task (received)'],
      ['accept', 'accept its Task'],
      ['start', 'start work on it'],
      ['confirm-cancellation', 'confirm the referrer\'s cancellation'],
      ['decline', 'decline it, with a reason'],
      ['request-info', 'ask the referrer for information'],
      ['opinion', 'submit the opinion (completes the Task)'],
      ['answers', 'answer a follow-up question'],
    ] as [string, string][]
  ).map(consultAction),
  {
    method: 'GET',
    path: '/admin/deliveries',
    what: 'Post-backs of opinions and of answers to follow-up questions, with the last error and the EHR\'s OperationOutcome',
    access: { kind: 'roles', roles: ['auditor', 'admin'] },
  },
  {
    method: 'POST',
    path: '/admin/deliveries/:id/retry',
    what: 'Re-drive a post-back that gave up',
    access: { kind: 'roles', roles: ['auditor', 'admin'] },
  },
  {
    method: 'GET',
    path: '/admin/record-pushes',
    what: "Record sets pushed to clinics' own FHIR servers, with the last error and the server's OperationOutcome",
    access: { kind: 'roles', roles: ['auditor', 'admin'] },
  },
  {
    method: 'POST',
    path: '/admin/record-pushes/:id/retry',
    what: 'Re-drive a record-set push that gave up',
    access: { kind: 'roles', roles: ['auditor', 'admin'] },
  },
  {
    method: 'GET',
    path: '/admin/participants/:id/check',
    what: "Connection check of a participant's EHR (the checklist of `npm run check-ehr`)",
    access: { kind: 'roles', roles: ['admin'] },
  },
  {
    method: 'GET',
    path: '/fhir/Binary/:id',
    what: 'Attachment bytes of a record set',
    access: { kind: 'roles', roles: ['referrer', 'physician', 'consultant'], scope: { type: 'Binary', interaction: 'r' }, audit: { action: 'read', type: 'Binary', param: 'id' } },
  },
  referrer('Refer over FHIR: a transaction Bundle (ServiceRequest, its Tasks, the first opinion)', '/fhir'),
  referrer('Refer over FHIR: the ServiceRequest alone (the service makes the Tasks)', '/fhir/ServiceRequest'),
  // Task over FHIR: the use case checks the side's scope (the clinic: Task.u; the referrer's cancel: ServiceRequest.c, as the JSON doors).
  { method: 'PUT', path: '/fhir/Task/:id', what: 'FHIR update of a Task: the consult actions (clinic) or cancel and answers to requests for information (referrer), by its status', access: { kind: 'roles', roles: ['consultant', 'referrer'] } },
  { method: 'PATCH', path: '/fhir/Task/:id', what: 'FHIR JSON Patch or FHIRPath Patch of a Task: as the update', access: { kind: 'roles', roles: ['consultant', 'referrer'] } },
  {
    method: 'PUT',
    path: '/fhir/ServiceRequest/:id',
    what: 'FHIR update of a ServiceRequest: the referrer revokes its referral (status revoked, the reason as a new note)',
    access: { kind: 'roles', roles: ['referrer'], scope: { type: 'ServiceRequest', interaction: 'c' } },
  },
  subscriptionRoute('POST', '/fhir/Subscription', 'c', 'subscribe to Task changes (topic-based, R5 Backport)'),
  subscriptionRoute('GET', '/fhir/Subscription', 's', 'its own Subscriptions'),
  subscriptionRoute('GET', '/fhir/Subscription/$status', 'r', 'status of several of its own ($status?id=)', 'operation'),
  subscriptionRoute('GET', '/fhir/Subscription/:id/$status', 'r', 'status and events so far ($status)', 'operation'),
  subscriptionRoute('GET', '/fhir/Subscription/:id/$events', 'r', 'missed events, by number ($events)', 'operation'),
  subscriptionRoute('GET', '/fhir/Subscription/:id', 'r', 'read one of its own', 'read'),
  subscriptionRoute('DELETE', '/fhir/Subscription/:id', 'd', 'delete one of its own'),
  // Counts, not PHI: no scope on a clinical type, no audit; the use case keeps each caller to its own organization's opinions.
  {
    method: 'GET',
    path: '/fhir/Measure/:id/$evaluate-measure',
    what: 'Concordance figures (MeasureReport): how often opinions changed the diagnosis or the plan; a referrer\'s referrals, a clinic\'s own opinions, or all for an auditor',
    access: { kind: 'roles', roles: ['referrer', 'consultant', 'auditor'] },
  },
  { method: 'GET', path: '/fhir/:type/:id/_history/:vid', what: 'FHIR vread', access: { kind: 'fhir' } },
  { method: 'GET', path: '/fhir/:type/:id/_history', what: 'FHIR history', access: { kind: 'fhir' } },
  { method: 'GET', path: '/fhir/:type/:id', what: 'FHIR read', access: { kind: 'fhir' } },
  { method: 'GET', path: '/fhir/:type', what: 'FHIR search', access: { kind: 'fhir' } },
  { method: 'ALL', path: '/fhir/{*rest}', what: '405: no such interaction on this path (GET /fhir/metadata lists them)', access: { kind: 'authenticated' } },
];

/**
 * Who may read each type served at /fhir, beyond the SMART scope `system/<Type>.r|s`: `any`
 * participant reads what its access lists give it; AuditEvents belong to no participant and are
 * read whole by the auditor role; the network directory (`directory`: Organization, Endpoint,
 * built from the network file) is read by any participant with no scope, as `/participants`.
 */
export const FHIR_TYPE_ACCESS: Readonly<Partial<Record<ResourceType, { roles: 'any'; directory?: true } | { roles: readonly Role[]; readsAll: true }>>> = {
  AuditEvent: { roles: ['auditor'], readsAll: true },
  Organization: { roles: 'any', directory: true },
  Endpoint: { roles: 'any', directory: true },
};

const PATHS = ROUTE_RULES.filter((r) => !r.path.includes('{')).map((r) => ({ rule: r, segments: r.path.split('/') }));

/**
 * The rules whose path a URL path fits, in the table's order, for what runs before or without
 * Express's routing (naming a bad parameter, logging a refused request): `segments` is the path
 * split on `/`; the segment at `anyAt` (when given) may be anything.
 */
export function rulesFitting(segments: readonly string[], anyAt = -1): { rule: RouteRule; segments: readonly string[] }[] {
  return PATHS.filter((p) => p.segments.length === segments.length && p.segments.every((s, i) => i === anyAt || s.startsWith(':') || s === segments[i]));
}

/** The rule of a route; undefined when the route has none (a bug the access-matrix test reports). */
export function ruleFor(method: string, path: string): RouteRule | undefined {
  return ROUTE_RULES.find((r) => r.path === path && (r.method === method || r.method === 'ALL'));
}
