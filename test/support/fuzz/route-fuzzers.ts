/**
 * What the fuzz campaign sends to each route of `ROUTE_RULES` (src/access/route-rules.ts): a
 * generator for every path parameter, the query parameters the route reads, and a body for
 * every route that takes one, keyed by the row's method and path. A row without an entry here
 * fails the campaign, so a new route is fuzzed from the day it is added.
 */
import fc from 'fast-check';
import type { RouteRule } from '../../../src/access/route-rules.ts';
import { COMMON_PARAMETERS, SEARCH_PARAMETERS, type SearchParamKind } from '../../../src/fhir-rest/search-parameters.ts';
import { EXAMPLE_OPINION } from '../opinions.ts';
import { referralParts, toTransaction } from '../fhir-referrals.ts';
import { makeSecondOpinionRequest, type ReferralChart } from '../referrals.ts';
import { type Hostile, hostileText, hugeText, RAW_FRAGMENTS } from './hostile.ts';
import { fieldNames, type Mutation, mutations } from './json-mutation.ts';
import { forgedCursor, hostileHeaders, QUERY_VALUES, queryString, segment } from './request-parts.ts';
import { type TokenFormPlan, tokenFormPlan } from './token-form.ts';

/** Ids of the world the cases run in, known once it is set up. */
export interface FuzzWorld {
  /** Referrals (ServiceRequest ids) in several states. */
  referrals: string[];
  /** Tasks in several states. */
  tasks: string[];
  /** Per Task action (`accept`, `opinion`, ...), the Tasks it may succeed on, once. */
  live: Record<string, string[]>;
  /** opinion_delivery ids (consult-note ids). */
  deliveries: string[];
  /** SHA-256 of stored attachments. */
  binaries: string[];
  /** Readable resources: [type, id]. */
  resources: [string, string][];
  /** A paging cursor taken from a next link. */
  cursor: string;
  /** The intake body of a referral already placed: the same `requestId` again is 200 unchanged or 409 changed. */
  placedIntake: Record<string, unknown>;
  /** The sandbox chart and FHIR base the FHIR intake bodies name (example ids when absent). */
  fhirChart?: { chart: ReferralChart; baseUrl: string };
}

const EXAMPLE_FHIR_CHART: NonNullable<FuzzWorld['fhirChart']> = {
  chart: { patientId: 'pat-1', practitionerId: 'dr-nilsen', firstOpinionNoteId: 'first-opinion-note', consentId: 'consent-1', documents: [{ key: 'op-note-2024', id: 'op-note-2024' }] },
  baseUrl: 'http://localhost:8090/fhir/R4',
};

/** The valid bodies the JSON cases start from. */
export type BaseName = 'intake-placed' | 'intake-fresh' | 'fhir-transaction' | 'fhir-service-request' | 'records' | 'consultants' | 'cancel' | 'consent-withdrawal' | 'info' | 'empty' | 'decline' | 'request-info' | 'opinion' | 'resource' | 'question' | 'answer';

export type BodyPlan =
  | { kind: 'none' }
  | { kind: 'json'; base: BaseName; mutations: Mutation[] }
  /** The body exactly as written (not JSON, truncated JSON, a huge body). */
  | { kind: 'raw'; text: string }
  | { kind: 'form'; plan: TokenFormPlan };

/** One request of the campaign: data only, so fast-check can print it and replay it from its seed and path. */
export interface FuzzCase {
  method: string;
  /** Path and query string as sent on the wire. */
  url: string;
  /** Whose bearer token goes in Authorization (`none`: no header). */
  caller: string;
  headers: Record<string, string | string[]>;
  body: BodyPlan;
}

export interface RouteFuzzer {
  /** Methods to send (the row's own unless it says ALL). */
  methods?: string[];
  /** A value for each `:param` (and `rest` for `{*rest}`) of the path. */
  params?: (w: FuzzWorld) => fc.Arbitrary<Record<string, string>>;
  /** The query parameters the route reads, with values of their kind (unknown and hostile ones are added to every route). */
  query?: (w: FuzzWorld) => Record<string, fc.Arbitrary<string>>;
  /** The body, for every route that takes one. */
  body?: fc.Arbitrary<BodyPlan>;
  /** Runs after every other route: its successes end the world's referrals, which the Task actions need open. */
  last?: true;
}

const ATTACHMENT = { contentType: 'text/plain', title: 'Scan notes', data: Buffer.from('The scan shows no loosening.').toString('base64') };

/** The valid bodies, built when a case is sent (a fresh intake needs a fresh requestId). */
export function baseBody(name: BaseName, world: FuzzWorld): Hostile {
  // One document every referral names already (200, nothing added), one none does yet (202, a new assembly).
  const documents = [{ reference: 'DocumentReference/op-note-2024', display: 'Operative note' }, { reference: 'DocumentReference/discharge-2024', display: 'Discharge summary' }];
  switch (name) {
    case 'intake-placed':
      return world.placedIntake as Hostile;
    case 'intake-fresh':
      return makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] }, questions: QUESTIONS }) as Hostile;
    case 'fhir-transaction':
    case 'fhir-service-request': {
      const { chart, baseUrl } = world.fhirChart ?? EXAMPLE_FHIR_CHART;
      const parts = referralParts(chart, baseUrl);
      if (name === 'fhir-transaction') return toTransaction(parts) as unknown as Hostile;
      return { ...parts.serviceRequest, supportingInfo: parts.serviceRequest.supportingInfo?.slice(1) } as unknown as Hostile;
    }
    case 'records':
      return { documents };
    case 'consultants':
      return { consultants: ['riverside-imaging'], consentAttested: true };
    case 'cancel':
      return { reason: 'The patient chose another clinic' };
    case 'consent-withdrawal':
      return { consultants: ['lakeside-consults'], reason: 'The patient withdrew consent for this clinic' };
    case 'info':
      return { text: 'A 350 cc cohesive gel implant', documents };
    case 'empty':
      return {};
    case 'decline':
      return { reason: 'Outside our scope' };
    case 'request-info':
      return { question: 'Which implant was used?', recordTypes: [{ system: 'http://loinc.org', code: '11504-8', display: 'Surgical operation note' }] };
    case 'opinion':
      // The fuzzed referrals carry no questions: an answer would be refused; the empty list still gives mutations a place.
      return { ...EXAMPLE_OPINION, attachments: [ATTACHMENT], answers: [] } as Hostile;
    case 'resource':
      return { resourceType: 'Task', status: 'requested', intent: 'order' };
    case 'question':
      return { text: 'Would an MRI change your view?' };
    case 'answer':
      return { question: world.resources?.find(([type]) => type === 'Communication')?.[1] ?? 'no-such-question', text: 'An MRI would not change it.' };
  }
}

/** The patient's and the physician's questions a fresh intake carries. */
const QUESTIONS = [
  { text: 'Will I be able to swim again?', askedBy: 'patient' as const },
  { text: 'Is a smaller implant reasonable?', askedBy: 'physician' as const },
];
/** Field names for look-alike keys; an opinion's answer fields too, though the base sends none. */
const names = (base: BaseName) =>
  base === 'opinion'
    ? [...fieldNames(baseBody(base, { placedIntake: {} } as FuzzWorld)), 'question', 'text', 'notAnswerable']
    : fieldNames(base === 'intake-placed' || base === 'intake-fresh' ? makeSecondOpinionRequest({ questions: QUESTIONS }) : baseBody(base, { placedIntake: {} } as FuzzWorld));

/**
 * JSON bodies from `bases`: mutated mostly, sometimes valid as they are, sometimes not JSON at
 * all, sometimes absent. A route whose body is `{}` (`lean`) gets a mutated one less often: every
 * mutation of `{}` is refused by the schema, and the case should reach the Task instead.
 */
function json(bases: BaseName[], lean = false): fc.Arbitrary<BodyPlan> {
  const base = fc.constantFrom(...bases);
  return fc.oneof(
    { weight: lean ? 3 : 12, arbitrary: base.chain((b) => mutations(names(b)).map((m): BodyPlan => ({ kind: 'json', base: b, mutations: m }))) },
    { weight: lean ? 3 : 1, arbitrary: base.map((b): BodyPlan => ({ kind: 'json', base: b, mutations: [] })) },
    { weight: 1, arbitrary: fc.oneof(fc.constantFrom(...RAW_FRAGMENTS).map((r) => r.text), hostileText, fc.constant(hugeText(1_048_577))).map((text): BodyPlan => ({ kind: 'raw', text })) },
    { weight: lean ? 3 : 1, arbitrary: fc.constant<BodyPlan>({ kind: 'none' }) },
  );
}

const ids = (pick: (w: FuzzWorld) => string[], name = 'id') => (w: FuzzWorld) => segment(pick(w)).map((v) => ({ [name]: v }));
const TYPES = Object.keys(SEARCH_PARAMETERS);

/** A FHIR type and id: a readable pair mostly, else each on its own (another type's id, a type not served, hostile text). */
const fhirTarget = (w: FuzzWorld) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...w.resources).map(([type, id]) => ({ type, id })) },
    { weight: 2, arbitrary: fc.record({ type: segment([...TYPES, 'Patient', 'Binary', 'OperationOutcome']), id: segment(w.resources.map(([, id]) => id)) }) },
  );

/** Search parameters of every served type, with values of their kind. */
function searchQuery(w: FuzzWorld): Record<string, fc.Arbitrary<string>> {
  const byKind: Record<SearchParamKind, fc.Arbitrary<string>> = { reference: QUERY_VALUES.reference, token: QUERY_VALUES.token, identifier: QUERY_VALUES.identifier, id: segment(w.resources.map(([, id]) => id)), coding: QUERY_VALUES.token, 'last-updated': QUERY_VALUES.date, string: QUERY_VALUES.hostile };
  const out: Record<string, fc.Arbitrary<string>> = { _count: QUERY_VALUES.count, _lastUpdated: QUERY_VALUES.date, _cursor: fc.oneof(fc.constant(w.cursor), forgedCursor), _format: QUERY_VALUES.format,
    _include: fc.constantFrom('Task:focus', 'Task:input', 'Task:output', 'Task:owner', 'Task:focus:ServiceRequest', 'Task:requester', 'ServiceRequest:subject', 'Task', '*', ''),
    _revinclude: fc.constantFrom('Task:focus', 'Task:focus:ServiceRequest', 'Task:owner', 'Provenance:target', ':', ''),
    _summary: fc.constantFrom('count', 'false', 'true', 'text', 'data', ''),
    _elements: fc.constantFrom('status', 'status,owner', 'occurrence', 'id,meta', 'sta%20tus', '', ','),
  };
  for (const defs of Object.values(SEARCH_PARAMETERS)) for (const d of defs) out[d.name] = byKind[d.kind];
  // A parameter every search understands and nothing here generates is a gap in the campaign.
  for (const common of COMMON_PARAMETERS) if (!out[common]) throw new Error(`no generator for the search parameter ${common}`);
  return out;
}

const referral = ids((w) => w.referrals);
/** A Task id for `action`: one it may succeed on now and then, else any (mostly refused). */
const taskFor = (action: string) => (w: FuzzWorld) =>
  fc.oneof({ weight: 1, arbitrary: fc.constantFrom(...(w.live[action] ?? w.tasks)) }, { weight: 3, arbitrary: segment(w.tasks) }).map((taskId) => ({ taskId }));
const consultAction = (action: string, base: BaseName): RouteFuzzer => ({ params: taskFor(action), body: json([base], base === 'empty') });

/** One entry per row of ROUTE_RULES, keyed `METHOD path`. */
export const ROUTE_FUZZERS: Record<string, RouteFuzzer> = {
  'GET /': {},
  'GET /healthz': {},
  'GET /readyz': {},
  'GET /metrics': {},
  'POST /auth/token': { body: tokenFormPlan.map((plan): BodyPlan => ({ kind: 'form', plan })) },
  'GET /.well-known/smart-configuration': {},
  'GET /fhir/.well-known/smart-configuration': {},
  'GET /.well-known/jwks.json': {},
  'GET /.well-known/client-jwks.json': {},
  'GET /fhir/metadata': { query: () => ({ _format: QUERY_VALUES.format }) },
  'GET /openapi.json': {},
  'GET /docs': {},
  'GET /docs/:asset': { params: ids(() => ['init.js', 'swagger-ui.css', 'favicon-16x16.png', 'package.json', 'index.html', '..', '.env'], 'asset') },
  ...Object.fromEntries(
    (['CodeSystem', 'ValueSet', 'StructureDefinition', 'Measure'] as const).flatMap((type): [string, RouteFuzzer][] => [
      [`GET /fhir/${type}`, { query: () => ({ url: fc.constantFrom(`https://second-opinion.org/fhir/${type}/participant-role`, 'https://second-opinion.org/fhir/StructureDefinition/second-opinion-task|0.1.0', '', ',', '|', 'urn:x'), name: fc.constantFrom('second', 'SECOND', '', 'é'), _summary: fc.constantFrom('count', 'true', 'false') }) }],
      [`GET /fhir/${type}/:id`, { params: ids(() => ['participant-role', 'second-opinion-kind', 'second-opinion-task', 'second-opinion-concordance', 'nope', '..']) }],
    ]),
  ),
  'GET /fhir/Measure/:id/$evaluate-measure': {
    params: ids(() => ['second-opinion-concordance', 'nope', '..']),
    query: () => ({
      periodStart: fc.constantFrom('2026-01-01', '2026-02-30', '2026', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00', '', 'x'.repeat(300)),
      periodEnd: fc.constantFrom('2026-12-31', '2025-01-01', '2100-12-31T23:59:59+14:00', '', '12/31/2026'),
      subject: fc.constantFrom('Organization/st-olaf', 'Organization/lakeside', 'Organization/nobody', 'Patient/p1', 'Organization/', ''),
      kind: fc.constantFrom('revision', 'https://second-opinion.org/fhir/CodeSystem/second-opinion-kind|revision', 'REVISION', '', '|'),
    }),
  },
  'GET /participants': { query: () => ({ role: QUERY_VALUES.role }) },
  'POST /second-opinions': { body: json(['intake-placed', 'intake-placed', 'intake-fresh']) },
  'POST /fhir': { body: json(['fhir-transaction']) },
  'POST /fhir/ServiceRequest': { body: json(['fhir-service-request']) },
  'GET /second-opinions/:id': { params: referral },
  'GET /second-opinions/:id/comparison': { params: referral },
  'POST /second-opinions/:id/records': { params: referral, body: json(['records']) },
  'POST /second-opinions/:id/consultants': { params: referral, body: json(['consultants']) },
  'POST /second-opinions/:id/cancel': { params: referral, body: json(['cancel']), last: true },
  'POST /second-opinions/:id/info': { params: referral, body: json(['info']) },
  'POST /second-opinions/:id/consent-withdrawal': { params: referral, body: json(['consent-withdrawal', 'empty']), last: true },
  'POST /second-opinions/:id/consultants/:participant/questions': {
    params: (w) => fc.record({ id: segment(w.referrals), participant: segment(['lakeside-consults', 'riverside-imaging', 'northfield-pathology', 'st-olaf', 'nobody']) }),
    body: json(['question']),
  },
  'GET /consults': { query: (w) => ({ status: QUERY_VALUES.token, overdue: QUERY_VALUES.overdue, _count: QUERY_VALUES.count, _cursor: fc.oneof(fc.constant(w.cursor), forgedCursor) }) },
  'POST /consults/:taskId/receive': consultAction('receive', 'empty'),
  'POST /consults/:taskId/accept': consultAction('accept', 'empty'),
  'POST /consults/:taskId/start': consultAction('start', 'empty'),
  'POST /consults/:taskId/confirm-cancellation': consultAction('confirm-cancellation', 'empty'),
  'POST /consults/:taskId/decline': consultAction('decline', 'decline'),
  'POST /consults/:taskId/request-info': consultAction('request-info', 'request-info'),
  'POST /consults/:taskId/opinion': consultAction('opinion', 'opinion'),
  'POST /consults/:taskId/answers': consultAction('answers', 'answer'),
  'GET /admin/deliveries': { query: () => ({ status: fc.constantFrom('failed', 'pending', 'delivered', 'Failed', '', 'failed,pending'), _count: QUERY_VALUES.count }) },
  'POST /admin/deliveries/:id/retry': { params: ids((w) => [...w.deliveries, ...w.tasks]), body: json(['empty'], true) },
  'GET /admin/record-pushes': { query: () => ({ status: fc.constantFrom('failed', 'pending', 'pushed', 'superseded', 'Failed', '', 'failed,pending'), _count: QUERY_VALUES.count }) },
  'POST /admin/record-pushes/:id/retry': { params: ids((w) => [...w.deliveries, ...w.tasks]), body: json(['empty'], true) },
  'GET /admin/participants/:id/check': {
    params: ids(() => ['st-olaf', 'lakeside-consults', 'audit-office', 'nobody']),
    query: () => ({ patient: QUERY_VALUES.reference, consent: fc.constantFrom('Consent/c-1', 'c-1', 'Consent/', 'Consent/a%20b'), write: fc.constantFrom('true', 'false', 'yes', '') }),
  },
  'POST /fhir/Subscription': { body: json(['resource']) },
  'GET /fhir/Subscription': { query: () => ({ status: QUERY_VALUES.token, _count: QUERY_VALUES.count }) },
  'GET /fhir/Subscription/$status': { query: () => ({ id: fc.constantFrom('no-such-subscription', 'a,b', ',', '', '../x', 'x'.repeat(65)), status: QUERY_VALUES.token }) },
  'GET /fhir/Subscription/:id/$status': { params: ids((w) => w.resources.map(([, id]) => id)) },
  'GET /fhir/Subscription/:id/$events': { params: ids((w) => w.resources.map(([, id]) => id)), query: () => ({ eventsSinceNumber: QUERY_VALUES.count, eventsUntilNumber: QUERY_VALUES.count, content: fc.constantFrom('id-only', 'empty', 'full-resource', '') }) },
  'GET /fhir/Subscription/:id': { params: ids((w) => w.resources.map(([, id]) => id)) },
  'DELETE /fhir/Subscription/:id': { params: ids((w) => w.resources.map(([, id]) => id)), body: json(['empty'], true) },
  'GET /fhir/Binary/:id': { params: ids((w) => w.binaries), query: () => ({ _format: QUERY_VALUES.format }) },
  'PUT /fhir/Task/:id': { params: ids((w) => w.tasks), body: json(['resource']) },
  'PATCH /fhir/Task/:id': { params: ids((w) => w.tasks), body: json(['resource']) },
  'PUT /fhir/ServiceRequest/:id': { params: ids((w) => w.referrals), body: json(['fhir-service-request', 'resource']), last: true },
  'GET /fhir/:type/:id/_history/:vid': { params: (w) => fc.tuple(fhirTarget(w), segment(['1', '2', '3', '01', '2147483648', '99999999999999999999'])).map(([t, vid]) => ({ ...t, vid })), query: () => ({ _format: QUERY_VALUES.format }) },
  'GET /fhir/:type/:id/_history': { params: fhirTarget, query: () => ({ _format: QUERY_VALUES.format }) },
  'GET /fhir/:type/:id': { params: fhirTarget, query: () => ({ _format: QUERY_VALUES.format }) },
  'GET /fhir/:type': { params: () => segment(TYPES).map((type) => ({ type })), query: searchQuery },
  'ALL /fhir/{*rest}': {
    methods: ['POST', 'PUT', 'PATCH', 'DELETE', 'GET'],
    params: (w) => fc.array(segment([...TYPES, ...w.resources.map(([, id]) => id), '_history', '1', '$validate', '_search']), { minLength: 1, maxLength: 5 }).map((s) => ({ rest: s.join('/') })),
    body: json(['resource']),
  },
};

/** The parameter names of an Express path (`:id`, and `rest` for `{*rest}`). */
export function pathParams(path: string): string[] {
  return [...path.matchAll(/:(\w+)|\{\*(\w+)\}/g)].map((m) => (m[1] ?? m[2]) as string);
}

/** The cases of one route: `callers` mostly those its row lets in, else anyone (or no one). */
export function routeCases(rule: RouteRule, fuzzer: RouteFuzzer, world: FuzzWorld, callers: { allowed: string[]; all: string[] }): fc.Arbitrary<FuzzCase> {
  const methods = fuzzer.methods ?? [rule.method];
  const allowed = callers.allowed.length ? callers.allowed : ['none'];
  return fc.record({
    method: fc.constantFrom(...methods),
    params: fuzzer.params?.(world) ?? fc.constant({} as Record<string, string>),
    query: queryString(fuzzer.query?.(world) ?? {}),
    caller: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...allowed) }, { weight: 1, arbitrary: fc.constantFrom(...callers.all, 'none') }),
    headers: hostileHeaders,
    body: fuzzer.body ?? fc.constant<BodyPlan>({ kind: 'none' }),
  }).map(({ method, params, query, caller, headers, body }) => {
    const path = rule.path.replace(/:(\w+)|\{\*(\w+)\}/g, (_, a?: string, b?: string) => params[(a ?? b) as string] ?? '');
    return { method, url: query ? `${path}?${query}` : path, caller, headers, body: method === 'GET' ? { kind: 'none' } : body };
  });
}
