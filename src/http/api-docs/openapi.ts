import { z } from 'zod';
import { createDocument, type ZodOpenApiOperationObject, type ZodOpenApiPathsObject, type ZodOpenApiResponseObject, type ZodOpenApiResponsesObject } from 'zod-openapi';
import { ROUTE_RULES, type RouteAccess, type RouteRule } from '../../access/route-rules.ts';
import { DeclineSchema, NoBodySchema, RequestInfoSchema } from '../../consults/consult-actions.ts';
import { CancelRequestSchema, InfoAnswerSchema } from '../../consults/referrer-actions.ts';
import { ConsentWithdrawalSchema } from '../../consults/withdraw-consent.ts';
import { FHIR_JSON } from '../../fhir/constants.ts';
import { AnswerSchema as FollowUpAnswerSchema } from '../../followups/answer-question.ts';
import { QuestionSchema } from '../../followups/ask-question.ts';
import { AddConsultantsRequestSchema } from '../../intake/add-consultants.ts';
import { AddRecordsRequestSchema } from '../../intake/add-records.ts';
import { IntakeRequestSchema } from '../../intake/intake-request.ts';
import { OpinionSchema } from '../../opinions/opinion.ts';
import * as examples from './examples.ts';
import * as r from './responses.ts';

/**
 * The OpenAPI 3.1 description of the service's HTTP API, served at GET /openapi.json and
 * rendered at GET /docs. Request bodies are the zod schemas the routes validate with (zod-openapi
 * turns them into JSON Schema through zod 4's own `.meta()` and JSON Schema output, so no second
 * description can drift from them); paths, roles and scopes come from the access rules
 * (access/route-rules.ts), so a route cannot be documented with other rights than it has. The FHIR
 * doors are listed, not modelled: their resources, profiles and search parameters are in the
 * CapabilityStatement (GET /fhir/metadata).
 */

/** Where an operation is listed in the reference page. */
export const TAGS = [
  { name: 'Referrer', description: 'The referring hospital\'s EHR: place a referral, follow it, add records and clinics, cancel, answer requests, ask follow-up questions.' },
  { name: 'Consultant', description: 'The consulting clinic: its worklist and the actions on its Task, up to the opinion.' },
  { name: 'Directory', description: 'The participants of the network.' },
  { name: 'Operations', description: 'Auditors and administrators: post-backs, record-set pushes, EHR connection checks.' },
  { name: 'Authorization', description: 'SMART Backend Services: discovery, token endpoint, public keys.' },
  { name: 'FHIR', description: 'The FHIR R4 doors. Listed only: GET /fhir/metadata (the CapabilityStatement) describes their resources, interactions, profiles and search parameters.' },
  { name: 'Service', description: 'Health and this description.' },
] as const;
type Tag = (typeof TAGS)[number]['name'];

/** The routes the document leaves out, with why (the test holds the rest to the app's routes). */
export const UNDOCUMENTED: Readonly<Record<string, string>> = {
  'ALL /fhir/{*rest}': 'the 405 answer to any other method or path under /fhir: not an operation',
};

interface Body {
  schema: z.ZodType;
  example?: unknown;
  /** False when the action takes no body (an empty JSON object is accepted too). */
  required?: boolean;
}

interface Spec {
  tag: Tag;
  description?: string;
  query?: z.ZodObject;
  body?: Body;
  /** The success answer. */
  ok: { status: number; description: string; schema?: z.ZodType; type?: string; also?: Record<string, z.ZodType> };
  /** Refusals besides 401/403, which follow from the access rule. */
  errors?: number[];
}

const ERROR_TEXT: Record<number, string> = {
  400: 'Bad input: the OperationOutcome names each field at fault in `expression`',
  401: 'No valid bearer token',
  403: 'The token\'s participant lacks the role or the scope this route needs (the same answer for every id)',
  404: 'Not found, or not visible to this caller',
  405: 'Method not allowed here',
  409: 'The resource is not in a state that allows this',
  412: 'If-Match names a version that is no longer current',
  413: 'The body is larger than the service accepts',
  415: 'The body is not JSON',
  422: 'Understood but refused by a business rule (a past due date, an unknown clinic, ...)',
  429: 'Too many requests: wait for Retry-After',
};

const JSON_TYPE = 'application/json';
const referralId = 'The referral (ServiceRequest) id';
const taskId = 'The clinic\'s Task id';

const consultAction = (description: string, body?: Body, errors: number[] = []): Spec => ({
  tag: 'Consultant',
  description: `${description} Answers the updated Task (its version in ETag); send If-Match: W/"<version>" to refuse a stale update (412).`,
  body: body ?? { schema: NoBodySchema, required: false },
  ok: { status: 200, description: 'The updated Task', schema: r.FhirResourceSchema, type: FHIR_JSON },
  errors: [400, 404, 409, 412, 415, ...errors],
});

/** What the access rules do not say about each route of the JSON API: bodies, answers, refusals. */
export const OPERATIONS: Readonly<Record<string, Spec>> = {
  'GET /healthz': { tag: 'Service', ok: { status: 200, description: 'The process is alive', schema: r.HealthSchema } },
  'GET /readyz': { tag: 'Service', description: 'Ready when the database and the job queue answer and migrations are done; otherwise 503 with Retry-After, naming the dependencies that did not answer (`unavailable`). Checked on every call: it comes back by itself.', ok: { status: 200, description: 'Ready', schema: r.HealthSchema } },
  'GET /metrics': { tag: 'Service', description: 'Prometheus text exposition: request durations by route template, jobs per queue and state, post-back and record-assembly outcomes, overdue Tasks, tokens issued and refused, process metrics. No ids and no patient data in any label. Served here with METRICS=bearer (the default); with METRICS=port on a port of its own instead, with METRICS=off nowhere.', ok: { status: 200, description: 'The metrics', type: 'text/plain; version=0.0.4' } },
  'GET /openapi.json': { tag: 'Service', ok: { status: 200, description: 'This document', schema: z.looseObject({ openapi: z.string() }) } },
  'GET /docs': { tag: 'Service', ok: { status: 200, description: 'The reference page rendering this document (HTML, no external requests)', type: 'text/html' } },
  'GET /docs/{asset}': { tag: 'Service', ok: { status: 200, description: 'A script, style sheet or icon of the reference page', type: '*/*' }, errors: [404] },
  'POST /auth/token': {
    tag: 'Authorization',
    description: 'SMART Backend Services token request: client_credentials with a client assertion signed by the client\'s registered key (private_key_jwt). Errors are OAuth errors (RFC 6749 §5.2), not OperationOutcomes.',
    ok: { status: 200, description: 'An access token (a JWT) to send as `Authorization: Bearer`', schema: r.TokenResponseSchema },
  },
  'GET /.well-known/smart-configuration': { tag: 'Authorization', ok: { status: 200, description: 'SMART configuration (token endpoint, algorithms, scopes)', schema: z.looseObject({ token_endpoint: z.string() }) } },
  'GET /fhir/.well-known/smart-configuration': { tag: 'Authorization', ok: { status: 200, description: 'The same, under the FHIR base', schema: z.looseObject({ token_endpoint: z.string() }) } },
  'GET /.well-known/jwks.json': { tag: 'Authorization', ok: { status: 200, description: 'JWK Set', schema: z.looseObject({ keys: z.array(z.looseObject({})) }) } },
  'GET /.well-known/client-jwks.json': { tag: 'Authorization', ok: { status: 200, description: 'JWK Set', schema: z.looseObject({ keys: z.array(z.looseObject({})) }) } },
  'GET /participants': { tag: 'Directory', query: r.ParticipantQuerySchema, ok: { status: 200, description: 'The participants (no keys or endpoints)', schema: r.ParticipantListSchema }, errors: [400] },
  'POST /second-opinions': {
    tag: 'Referrer',
    description: 'Places a referral: a ServiceRequest and one Task per clinic. The records are then fetched from the referrer\'s EHR in the background (see recordSet in the summary). The same requestId again answers 200 with the referral already placed.',
    body: { schema: IntakeRequestSchema, example: examples.EXAMPLE_INTAKE_REQUEST },
    ok: { status: 201, description: 'Placed (200: already placed with this requestId); Location is the summary URL', schema: r.PlacedReferralSchema },
    errors: [400, 413, 415, 422],
  },
  'GET /second-opinions/{id}': { tag: 'Referrer', ok: { status: 200, description: 'The referral\'s summary', schema: r.ReferralSummarySchema }, errors: [404] },
  'GET /second-opinions/{id}/comparison': {
    tag: 'Referrer',
    description: 'JSON, or an HTML page with Accept: text/html.',
    ok: { status: 200, description: 'The opinions side by side', schema: r.ComparisonSchema, also: { 'text/html': z.string() } },
    errors: [404],
  },
  'POST /second-opinions/{id}/records': {
    tag: 'Referrer',
    body: { schema: AddRecordsRequestSchema, example: examples.EXAMPLE_ADD_RECORDS },
    ok: { status: 202, description: 'Accepted: a new record-set assembly runs (200 when every record was already named and none was left out by the last assembly)', schema: r.AddedRecordsSchema },
    errors: [400, 404, 409, 415, 422],
  },
  'POST /second-opinions/{id}/consultants': {
    tag: 'Referrer',
    body: { schema: AddConsultantsRequestSchema, example: examples.EXAMPLE_ADD_CONSULTANTS },
    ok: { status: 201, description: 'The new Tasks', schema: r.PlacedReferralSchema },
    errors: [400, 404, 409, 415, 422],
  },
  'POST /second-opinions/{id}/cancel': {
    tag: 'Referrer',
    body: { schema: CancelRequestSchema, example: examples.EXAMPLE_CANCEL },
    ok: { status: 200, description: 'The referral and its Tasks after the cancellation', schema: r.CancelledReferralSchema },
    errors: [400, 404, 409, 415],
  },
  'POST /second-opinions/{id}/info': {
    tag: 'Referrer',
    description: 'Answers the clinics waiting for information (request-info): a text and/or more documents.',
    body: { schema: InfoAnswerSchema, example: examples.EXAMPLE_INFO_ANSWER },
    ok: { status: 200, description: 'The Tasks resumed', schema: r.InfoAnsweredSchema },
    errors: [400, 404, 409, 415, 422],
  },
  'POST /second-opinions/{id}/consent-withdrawal': {
    tag: 'Referrer',
    description: 'The patient withdrew consent for some clinics (or all, without `consultants`): their Tasks end and their access to the records is revoked.',
    body: { schema: ConsentWithdrawalSchema, example: examples.EXAMPLE_CONSENT_WITHDRAWAL, required: false },
    ok: { status: 200, description: 'The clinics whose access ended', schema: r.ConsentWithdrawnSchema },
    errors: [400, 404, 415, 422],
  },
  'POST /second-opinions/{id}/consultants/{participant}/questions': {
    tag: 'Referrer',
    description: 'A follow-up question to a clinic after its opinion (within the configured window and number of questions).',
    body: { schema: QuestionSchema, example: examples.EXAMPLE_FOLLOW_UP_QUESTION },
    ok: { status: 201, description: 'The question (a Communication); Location is its FHIR URL', schema: r.AskedQuestionSchema },
    errors: [400, 404, 409, 415, 422],
  },
  'GET /consults': { tag: 'Consultant', description: 'The clinic\'s Tasks, ready to work on, newest change first, with what it may do next.', query: r.WorklistQuerySchema, ok: { status: 200, description: 'A page of the worklist', schema: r.WorklistSchema }, errors: [400] },
  'POST /consults/{taskId}/receive': consultAction('Acknowledges the Task (received).'),
  'POST /consults/{taskId}/accept': consultAction('Accepts the Task.'),
  'POST /consults/{taskId}/start': consultAction('Starts work on it (in-progress).'),
  'POST /consults/{taskId}/confirm-cancellation': consultAction('Confirms the referrer\'s cancellation.'),
  'POST /consults/{taskId}/decline': consultAction('Declines, with a reason shown to the referrer.', { schema: DeclineSchema, example: examples.EXAMPLE_DECLINE }),
  'POST /consults/{taskId}/request-info': consultAction('Puts the Task on hold asking the referrer for information.', { schema: RequestInfoSchema, example: examples.EXAMPLE_REQUEST_INFO }),
  'POST /consults/{taskId}/opinion': consultAction('Submits the opinion: a consult note (DocumentReference) is written and posted back to the referrer\'s EHR; the Task completes.', { schema: OpinionSchema, example: examples.EXAMPLE_OPINION }, [422]),
  'POST /consults/{taskId}/answers': {
    tag: 'Consultant',
    description: 'Answers a follow-up question (named by its Communication id, as the worklist lists it); the answer is posted back to the referrer\'s EHR.',
    body: { schema: FollowUpAnswerSchema, example: examples.EXAMPLE_FOLLOW_UP_ANSWER },
    ok: { status: 201, description: 'The answer (a Communication); Location is its FHIR URL', schema: r.GivenAnswerSchema },
    errors: [400, 404, 409, 415, 422],
  },
  'GET /admin/deliveries': { tag: 'Operations', query: r.DeliveryQuerySchema, ok: { status: 200, description: 'Newest first', schema: r.DeliveryListSchema }, errors: [400] },
  'POST /admin/deliveries/{id}/retry': { tag: 'Operations', ok: { status: 202, description: 'Queued again', schema: r.DeliveryViewSchema }, errors: [404, 409] },
  'GET /admin/record-pushes': { tag: 'Operations', query: r.PushQuerySchema, ok: { status: 200, description: 'Newest first', schema: r.PushListSchema }, errors: [400] },
  'POST /admin/record-pushes/{id}/retry': { tag: 'Operations', ok: { status: 202, description: 'Queued again', schema: r.PushViewSchema }, errors: [404, 409] },
  'GET /admin/participants/{id}/check': {
    tag: 'Operations',
    description: 'Runs the connection checklist against the participant\'s EHR (as `npm run check-ehr`); 200 whatever the lines say.',
    query: r.CheckQuerySchema,
    ok: { status: 200, description: 'The checklist', schema: r.EhrChecklistSchema },
    errors: [400, 404],
  },
};

/** `/second-opinions/:id` -> `/second-opinions/{id}`. */
export function openApiPath(expressPath: string): string {
  return expressPath.replace(/:([A-Za-z]+)/g, '{$1}');
}

const keyOf = (rule: RouteRule) => `${rule.method} ${openApiPath(rule.path)}`;

/** `system/ServiceRequest.c`: the SMART v2 scope a rule's scope check is met by (or any broader one). */
function scopeText(access: RouteAccess): string | undefined {
  return access.kind === 'roles' && access.scope ? `system/${access.scope.type}.${access.scope.interaction}` : undefined;
}

function accessText(access: RouteAccess): string {
  switch (access.kind) {
    case 'public':
      return 'Public: no token.';
    case 'authenticated':
      return 'Any participant with a valid token.';
    case 'fhir':
      return 'A token with the SMART scope of the type read (`system/<Type>.r` to read, `.s` to search); what each caller sees is limited to the referrals it takes part in. AuditEvent: the auditor role.';
    case 'roles': {
      const scope = scopeText(access);
      return `Roles: ${access.roles.join(', ')}.${scope ? ` Scope: ${scope} (or a broader one, e.g. system/${access.scope?.type}.cruds or system/*.*).` : ''}${access.audit ? ' Refusals are audited.' : ''}`;
    }
  }
}

function operationId(rule: RouteRule): string {
  const words = rule.path.replace(/[{}*:$]/g, ' ').split(/[^A-Za-z0-9]+/).filter(Boolean);
  return rule.method.toLowerCase() + words.map((w) => w[0]?.toUpperCase() + w.slice(1)).join('');
}

const outcomeResponse = (status: number) => ({ description: ERROR_TEXT[status] ?? 'Refused', content: { [FHIR_JSON]: { schema: r.OperationOutcomeSchema } } });

function responsesFor(rule: RouteRule, spec: Spec | undefined, fhirMetadataUrl: string): ZodOpenApiResponsesObject {
  if (!spec) {
    // A FHIR door: its resources are described by the CapabilityStatement.
    const responses: ZodOpenApiResponsesObject = {
      [rule.method === 'POST' ? '201' : rule.method === 'DELETE' ? '204' : '200']: { description: `A FHIR R4 answer; see ${fhirMetadataUrl}`, content: rule.method === 'DELETE' ? undefined : { [FHIR_JSON]: { schema: r.FhirResourceSchema } } },
      '400': outcomeResponse(400),
      '404': outcomeResponse(404),
    };
    if (rule.access.kind !== 'public') Object.assign(responses, { '401': outcomeResponse(401), '403': outcomeResponse(403) });
    return responses;
  }
  const content: Record<string, { schema: z.ZodType }> = {};
  if (spec.ok.schema || spec.ok.type) content[spec.ok.type ?? JSON_TYPE] = { schema: spec.ok.schema ?? z.string() };
  for (const [type, schema] of Object.entries(spec.ok.also ?? {})) content[type] = { schema };
  const responses: Record<string, ZodOpenApiResponseObject> = { [String(spec.ok.status)]: { description: spec.ok.description, content } };
  if (rule.path === '/auth/token') {
    responses['400'] = { description: 'An OAuth error (invalid_request, invalid_client, invalid_scope, unsupported_grant_type)', content: { [JSON_TYPE]: { schema: r.OAuthErrorSchema } } };
    responses['429'] = { description: ERROR_TEXT[429] as string, content: { [JSON_TYPE]: { schema: r.OAuthErrorSchema } } };
    return responses;
  }
  if (rule.path === '/readyz') responses['503'] = { description: 'Not ready: `unavailable` names the database, the job queue or both', content: { [JSON_TYPE]: { schema: r.HealthSchema } } };
  const refusals = new Set(spec.errors ?? []);
  if (rule.access.kind !== 'public') refusals.add(401);
  if (rule.access.kind === 'roles') refusals.add(403);
  for (const status of [...refusals].sort()) responses[String(status)] = outcomeResponse(status);
  return responses;
}

function operationFor(rule: RouteRule, fhirMetadataUrl: string): ZodOpenApiOperationObject {
  const spec = OPERATIONS[keyOf(rule)];
  const scope = scopeText(rule.access);
  const fhirDoor = !spec;
  const description = [spec?.description, fhirDoor ? `A FHIR R4 interaction. Resources, profiles and search parameters: the CapabilityStatement at ${fhirMetadataUrl}.` : undefined, accessText(rule.access)].filter(Boolean).join('\n\n');
  const pathParams = [...rule.path.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1] as string);
  const operation: ZodOpenApiOperationObject = {
    operationId: operationId(rule),
    summary: rule.what,
    description,
    tags: [spec?.tag ?? 'FHIR'],
    security: rule.access.kind === 'public' ? [] : [{ smart: scope ? [scope] : [] }],
    responses: responsesFor(rule, spec, fhirMetadataUrl),
    ...(rule.access.kind === 'roles' ? { 'x-roles': [...rule.access.roles] } : {}),
  };
  if (pathParams.length || spec?.query) {
    operation.requestParams = {
      ...(pathParams.length
        ? { path: z.object(Object.fromEntries(pathParams.map((p) => [p, z.string().meta({ description: p === 'taskId' ? taskId : p === 'id' && rule.path.startsWith('/second-opinions') ? referralId : p === 'participant' ? 'The clinic\'s participant id (GET /participants)' : `The ${p}` })]))) }
        : {}),
      ...(spec?.query ? { query: spec.query } : {}),
    };
  }
  if (rule.path === '/auth/token') {
    operation.requestBody = { required: true, content: { 'application/x-www-form-urlencoded': { schema: r.TokenRequestSchema } } };
  } else if (spec?.body) {
    const example = spec.body.example === undefined ? {} : { examples: { example: { summary: 'Example', value: spec.body.example } } };
    operation.requestBody = { required: spec.body.required ?? true, content: { [JSON_TYPE]: { schema: spec.body.schema, ...example } } };
  } else if (fhirDoor && ['POST', 'PUT', 'PATCH'].includes(rule.method)) {
    const content: Record<string, { schema: z.ZodType }> = { [FHIR_JSON]: { schema: r.FhirResourceSchema } };
    if (rule.method === 'PATCH') content['application/json-patch+json'] = { schema: z.array(z.looseObject({ op: z.string(), path: z.string() })) };
    operation.requestBody = { required: true, content };
  }
  return operation;
}

/** The routes the document describes: every access rule but those in UNDOCUMENTED. */
export function documentedRules(): RouteRule[] {
  return ROUTE_RULES.filter((rule) => !UNDOCUMENTED[`${rule.method} ${rule.path}`]);
}

/** Builds the document (about 20 ms); `openApiJson` builds it once per base URL. */
export function buildOpenApiDocument(publicUrl: string, software: { name: string; version: string }): ReturnType<typeof createDocument> {
  const fhirMetadataUrl = `${publicUrl}/fhir/metadata`;
  const paths: ZodOpenApiPathsObject = {};
  const scopes: Record<string, string> = {};
  for (const rule of documentedRules()) {
    const path = openApiPath(rule.path);
    const item = (paths[path] ??= {}) as Record<string, ZodOpenApiOperationObject>;
    item[rule.method.toLowerCase()] = operationFor(rule, fhirMetadataUrl);
    const scope = scopeText(rule.access);
    if (scope) scopes[scope] = `${scope.split('/')[1]?.split('.')[0]}: ${{ c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' }[scope.slice(-1)]}`;
  }
  scopes['system/*.rs'] = 'Read and search every type the caller may see (the FHIR read API)';
  return createDocument(
    {
      openapi: '3.1.0',
      info: {
        title: 'Second-opinion referrals API',
        version: software.version,
        description: [
          `The JSON API of ${software.name}: referrers place second-opinion referrals, consulting clinics work on them, operators watch what goes back.`,
          'Every call but the public ones needs a bearer token from POST /auth/token (SMART Backend Services: a client assertion signed with the client\'s key). Each operation names the roles (x-roles: from the participant\'s entry in the network file) and the SMART scope it needs.',
          'Refusals are FHIR OperationOutcomes (application/fhir+json) naming the field at fault; the token endpoint answers OAuth errors.',
          `The FHIR R4 API under /fhir is described by its CapabilityStatement: ${fhirMetadataUrl}. Anything else under /fhir answers 405.`,
        ].join('\n\n'),
      },
      servers: [{ url: publicUrl }],
      tags: TAGS.map((t) => ({ ...t })),
      externalDocs: { description: 'FHIR CapabilityStatement', url: fhirMetadataUrl },
      paths,
      components: {
        // The request bodies, named: the zod schemas the routes parse with.
        schemas: { IntakeRequest: IntakeRequestSchema, Opinion: OpinionSchema, AddRecordsRequest: AddRecordsRequestSchema, AddConsultantsRequest: AddConsultantsRequestSchema },
        securitySchemes: {
          smart: {
            type: 'oauth2',
            description: 'SMART Backend Services (client_credentials with a private_key_jwt client assertion). Roles come from the participant in the network file; scopes from the token.',
            flows: { clientCredentials: { tokenUrl: '/auth/token', scopes } },
          },
        },
      },
    },
    {
      // Open objects (looseObject) render `additionalProperties: {}`, which JSON Schema means by default anyway; left out, renderers show no made-up properties.
      override: ({ jsonSchema }) => {
        const extra = (jsonSchema as { additionalProperties?: unknown }).additionalProperties;
        if (extra && typeof extra === 'object' && Object.keys(extra).length === 0) delete (jsonSchema as { additionalProperties?: unknown }).additionalProperties;
      },
    },
  );
}

let cached: { key: string; json: string } | undefined;

/** The document as JSON text, built on first use and kept (the routes and the base URL do not change while the service runs). */
export function openApiJson(publicUrl: string, software: { name: string; version: string }): string {
  const key = `${publicUrl}\n${software.name}\n${software.version}`;
  if (cached?.key !== key) cached = { key, json: JSON.stringify(buildOpenApiDocument(publicUrl, software)) };
  return cached.json;
}
