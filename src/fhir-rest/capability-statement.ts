import type { CapabilityStatement, CapabilityStatementRestResource, CapabilityStatementRestResourceOperation, ResourceType } from '@medplum/fhirtypes';
import { PROFILE } from '../fhir/constants.ts';
import { BACKPORT_EXTENSION, BACKPORT_OPERATION, BACKPORT_PROFILE, BACKPORT_SERVER_CAPABILITIES, TASK_TOPIC } from '../subscriptions/backport.ts';
import { CONFORMANCE_DOCUMENTATION, CONFORMANCE_SEARCH_PARAMETERS, CONFORMANCE_TYPES } from './conformance-resources.ts';
import { COMMON_PARAMETERS, INCLUDES, revincludesOf, SEARCH_PARAMETERS, type SearchParamKind } from './search-parameters.ts';

/** Which of our profiles each type conforms to (a test checks every resource profile we build is here). */
export const SUPPORTED_PROFILES: Partial<Record<ResourceType, string[]>> = {
  ServiceRequest: [PROFILE.serviceRequest],
  Task: [PROFILE.task],
  Bundle: [PROFILE.recordSet],
  DocumentReference: [PROFILE.consultNote],
  ClinicalImpression: [PROFILE.firstOpinion],
  Communication: [PROFILE.followUpCommunication],
  MeasureReport: [PROFILE.concordanceReport],
  Subscription: [BACKPORT_PROFILE.subscription],
};

type Interaction = 'read' | 'vread' | 'history-instance' | 'search-type' | 'update' | 'patch' | 'create' | 'delete';
/** The order interactions are listed in (the spec's order of the restful-interaction codes). */
const INTERACTION_ORDER: readonly Interaction[] = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];
type SystemInteraction = 'transaction' | 'batch' | 'search-system' | 'history-system';

/**
 * What each `/fhir` route of ROUTE_RULES (access/route-rules.ts) is in the CapabilityStatement,
 * keyed `METHOD path` as there. `types: 'served'` means every type of the search-parameter table.
 * capability-statement.test.ts fails when a `/fhir` route has no entry here (or an entry no route),
 * so a new FHIR door is listed as soon as it exists.
 */
export type FhirRouteCapability =
  | { kind: 'interaction'; code: Interaction; types: 'served' | readonly ResourceType[]; documentation?: string; conditional?: boolean }
  | { kind: 'system-interaction'; code: SystemInteraction; documentation?: string }
  | { kind: 'operation'; name: string; definition: string; types?: readonly ResourceType[] }
  /** Not an interaction: the CapabilityStatement itself, discovery, refusals of what is not supported. */
  | { kind: 'not-an-interaction'; why: string };

export const FHIR_ROUTE_CAPABILITIES: Readonly<Record<string, FhirRouteCapability>> = {
  'GET /fhir/metadata': { kind: 'not-an-interaction', why: 'the CapabilityStatement (capabilities)' },
  'GET /fhir/.well-known/smart-configuration': { kind: 'not-an-interaction', why: 'SMART discovery' },
  'GET /fhir/Binary/:id': { kind: 'interaction', code: 'read', types: ['Binary'] },
  'GET /fhir/:type/:id/_history/:vid': { kind: 'interaction', code: 'vread', types: 'served' },
  'GET /fhir/:type/:id/_history': { kind: 'interaction', code: 'history-instance', types: 'served' },
  'GET /fhir/:type/:id': { kind: 'interaction', code: 'read', types: 'served' },
  'GET /fhir/:type': { kind: 'interaction', code: 'search-type', types: 'served' },
  'POST /fhir': {
    kind: 'system-interaction',
    code: 'transaction',
    documentation: 'Refer: a ServiceRequest, one Task per clinic (focus = the ServiceRequest, owner = the clinic) and optionally a ClinicalImpression (the first opinion), all POST; nothing else',
  },
  'PUT /fhir/Task/:id': {
    kind: 'interaction',
    code: 'update',
    types: ['Task'],
    documentation:
      'The owning clinic moves its Task by its status (accept, decline, start, request information, complete with a contained consult note, confirm cancellation); the referrer cancels it (statusReason) or answers a request for information (on-hold -> in-progress, the answer as a new note). If-Match: W/"version". Other changes: 422',
  },
  'PUT /fhir/ServiceRequest/:id': {
    kind: 'interaction',
    code: 'update',
    types: ['ServiceRequest'],
    documentation: 'The referrer revokes its referral: status revoked, the reason as one new note (R4 has no statusReason here). If-Match: W/"version". Other changes: 422',
  },
  'PATCH /fhir/Task/:id': { kind: 'interaction', code: 'patch', types: ['Task'], documentation: 'JSON Patch (application/json-patch+json) or FHIRPath Patch (Parameters, application/fhir+json; plain paths), handled as the update' },
  // Topic-based Subscriptions (R5 Backport IG): the caller's own, on the one Task topic.
  'POST /fhir/Subscription': { kind: 'interaction', code: 'create', types: ['Subscription'] },
  'GET /fhir/Subscription': { kind: 'interaction', code: 'search-type', types: ['Subscription'] },
  'GET /fhir/Subscription/$status': { kind: 'not-an-interaction', why: 'the type-level form of $status (listed once, as the operation)' },
  'GET /fhir/Subscription/:id/$status': { kind: 'operation', name: 'status', definition: BACKPORT_OPERATION.status, types: ['Subscription'] },
  'GET /fhir/Subscription/:id/$events': { kind: 'operation', name: 'events', definition: BACKPORT_OPERATION.events, types: ['Subscription'] },
  'GET /fhir/Subscription/:id': { kind: 'interaction', code: 'read', types: ['Subscription'] },
  'DELETE /fhir/Subscription/:id': { kind: 'interaction', code: 'delete', types: ['Subscription'] },
  'POST /fhir/ServiceRequest': {
    kind: 'interaction',
    code: 'create',
    types: ['ServiceRequest'],
    conditional: true,
    documentation: 'Refer: the ServiceRequest alone (performer = the clinics; the service makes one Task per clinic). If-None-Exist: identifier=[system|]value of the placer identifier',
  },
  'GET /fhir/Measure/:id/$evaluate-measure': { kind: 'operation', name: 'evaluate-measure', definition: 'http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure', types: ['Measure'] },
  'ALL /fhir/{*rest}': { kind: 'not-an-interaction', why: 'refuses the methods no route answers (405)' },
  // Our conformance resources (conformance-resources.ts): public, read and search only.
  ...Object.fromEntries(
    CONFORMANCE_TYPES.flatMap((type) => [
      [`GET /fhir/${type}`, { kind: 'interaction', code: 'search-type', types: [type] }],
      [`GET /fhir/${type}/:id`, { kind: 'interaction', code: 'read', types: [type] }],
    ]),
  ),
};

/** CapabilityStatement search parameter type of each kind in the search-parameter table. */
const SEARCH_PARAM_TYPE = {
  reference: 'reference',
  token: 'token',
  identifier: 'token',
  id: 'token',
  coding: 'token',
  'last-updated': 'date',
  string: 'string',
} as const satisfies Record<SearchParamKind, 'reference' | 'token' | 'date' | 'string'>;

const DOCUMENTATION: Partial<Record<ResourceType, string>> = {
  AuditEvent: 'Audit trail of reads and disclosures (IHE BALP coding): only for participants with the auditor role',
  Binary: 'Attachment bytes of record-set documents: read only, for the participants the record set is disclosed to; supports Range',
  Organization: 'The network directory: one per participant, built from the network file; any participant, no scope needed',
  Endpoint: "The network directory: each participant's FHIR server (hl7-fhir-rest); any participant, no scope needed",
  ClinicalImpression: 'The first opinion: not served on its own; carried in the referral (GET /second-opinions/{id}/comparison)',
  MeasureReport: 'Not stored: the answer of Measure/second-opinion-concordance/$evaluate-measure (periodStart, periodEnd, subject, kind), for the caller\'s own organization',
  ...CONFORMANCE_DOCUMENTATION,
  Subscription: `Topic ${TASK_TOPIC} (a consult Task was created or changed status): rest-hook channel, payload id-only or empty; filters Task?owner= and Task?requester=, within the Tasks the caller may read`,
};

/** What a type's entry says beyond the tables: the Subscription's topic and its one search parameter. */
const EXTRA: Partial<Record<ResourceType, Pick<CapabilityStatementRestResource, 'extension' | 'searchParam'>>> = {
  ...Object.fromEntries(
    CONFORMANCE_TYPES.map((type) => [type, { searchParam: CONFORMANCE_SEARCH_PARAMETERS.map((p) => ({ name: p.name, definition: p.definition, type: p.type, documentation: p.documentation })) }]),
  ),
  Subscription: {
    extension: [{ url: BACKPORT_EXTENSION.topicCanonical, valueCanonical: TASK_TOPIC }],
    searchParam: [{ name: 'status', definition: 'http://hl7.org/fhir/SearchParameter/Subscription-status', type: 'token' }],
  },
};

const SERVED = Object.keys(SEARCH_PARAMETERS) as ResourceType[];

/** The types the routes name, in a stable order: the search-parameter table's, then the rest. */
function typesOfRoutes(): ResourceType[] {
  const named = Object.values(FHIR_ROUTE_CAPABILITIES).flatMap((c) => ('types' in c && c.types && c.types !== 'served' ? c.types : []));
  return [...new Set([...SERVED, ...named, ...(Object.keys(SUPPORTED_PROFILES) as ResourceType[])])];
}

function appliesTo(types: 'served' | readonly ResourceType[] | undefined, type: ResourceType): boolean {
  return types === 'served' ? SERVED.includes(type) : (types ?? []).includes(type);
}

function resourceEntry(type: ResourceType): CapabilityStatementRestResource {
  const caps = Object.values(FHIR_ROUTE_CAPABILITIES);
  const mine = caps.flatMap((c) => (c.kind === 'interaction' && appliesTo(c.types, type) ? [c] : []));
  const interaction = mine
    .map((c) => ({ code: c.code, ...(c.documentation ? { documentation: c.documentation } : {}) }))
    .sort((a, b) => INTERACTION_ORDER.indexOf(a.code) - INTERACTION_ORDER.indexOf(b.code));
  const conditionalCreate = mine.some((c) => c.code === 'create' && c.conditional);
  const operation: CapabilityStatementRestResourceOperation[] = caps.flatMap((c) => (c.kind === 'operation' && c.types?.includes(type) ? [{ name: c.name, definition: c.definition }] : []));
  const params = SEARCH_PARAMETERS[type];
  const searchable = interaction.some((i) => i.code === 'search-type');
  const versioned = interaction.some((i) => i.code === 'vread');
  const includes = (INCLUDES[type] ?? []).map((d) => `${type}:${d.name}`);
  const revincludes = revincludesOf(type).map((r) => `${r.source}:${r.def.name}`);
  return {
    type,
    ...(EXTRA[type]?.extension ? { extension: EXTRA[type].extension } : {}),
    ...(DOCUMENTATION[type] ? { documentation: DOCUMENTATION[type] } : {}),
    ...(SUPPORTED_PROFILES[type] ? { supportedProfile: SUPPORTED_PROFILES[type] } : {}),
    ...(interaction.length ? { interaction } : {}),
    ...(conditionalCreate ? { conditionalCreate: true } : {}),
    ...(versioned ? { versioning: 'versioned' as const, readHistory: true, updateCreate: false, conditionalRead: 'not-match' as const } : {}),
    ...(searchable && includes.length ? { searchInclude: includes } : {}),
    ...(searchable && revincludes.length ? { searchRevInclude: revincludes } : {}),
    ...(searchable && params
      ? {
          searchParam: [
            ...params.map((p) => ({ name: p.name, definition: p.definition, type: SEARCH_PARAM_TYPE[p.kind], documentation: p.documentation })),
            { name: '_lastUpdated', definition: 'http://hl7.org/fhir/SearchParameter/Resource-lastUpdated', type: 'date' as const, documentation: 'eq, ne, gt, lt, ge, le prefixes; repeat to AND' },
          ],
        }
      : {}),
    ...(searchable && !params && EXTRA[type]?.searchParam ? { searchParam: EXTRA[type].searchParam } : {}),
    ...(operation.length ? { operation } : {}),
  };
}

/**
 * `GET /fhir/metadata`: exactly what this endpoint supports, generated from the tables the code
 * runs on: the `/fhir` routes (FHIR_ROUTE_CAPABILITIES, checked against ROUTE_RULES), the
 * search-parameter and include tables, our profiles, and the SMART Backend Services token endpoint.
 */
export function capabilityStatement(publicUrl: string, software: { name: string; version: string }, date: string): CapabilityStatement {
  const caps = Object.values(FHIR_ROUTE_CAPABILITIES);
  const systemInteractions = caps.flatMap((c) => (c.kind === 'system-interaction' ? [{ code: c.code, ...(c.documentation ? { documentation: c.documentation } : {}) }] : []));
  const systemOperations = caps.flatMap((c) => (c.kind === 'operation' && !c.types ? [{ name: c.name, definition: c.definition }] : []));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date,
    kind: 'instance',
    instantiates: [BACKPORT_SERVER_CAPABILITIES],
    software,
    implementation: { description: 'Second-opinion referral service', url: `${publicUrl}/fhir` },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        documentation:
          `Search result parameters: ${COMMON_PARAMETERS.join(', ')} (_summary=count; _elements keeps the listed top-level elements and the mandatory ones, tagged SUBSETTED). ` +
          'Relative references (Patient/123, ServiceRequest/abc) are taken as well as absolute ones; a relative patient reference names that patient on the EHR of the caller (a clinic: of any referrer). ' +
          'Task:input and Task:output follow the record set and the opinion a Task carries (R4 defines no search parameter on them). ' +
          'Unsupported parameters are reported in an OperationOutcome entry (search.mode outcome); send "Prefer: handling=strict" to have them refused.',
        security: {
          cors: false,
          service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
          description: 'SMART Backend Services (client_credentials with a private_key_jwt client assertion, RS384 or ES384)',
          extension: [
            {
              url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
              extension: [{ url: 'token', valueUri: `${publicUrl}/auth/token` }],
            },
          ],
        },
        resource: typesOfRoutes().map(resourceEntry),
        ...(systemInteractions.length ? { interaction: systemInteractions } : {}),
        ...(systemOperations.length ? { operation: systemOperations } : {}),
      },
    ],
  };
}
