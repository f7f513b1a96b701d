import { z } from 'zod';
import { DELIVERY_STATUSES } from '../../delivery/list-deliveries.ts';
import { ROLES } from '../../network/network-schema.ts';
import { PUSH_STATUSES } from '../../record-push/push-admin.ts';
import { EXAMPLE_OPERATION_OUTCOME } from './examples.ts';

/**
 * What the JSON API answers, written as zod schemas for the OpenAPI document only: the answers
 * are built by the use cases (typed in TypeScript there), not parsed. The shapes follow those
 * types (ReferralSummary, Worklist, ...); objects are open (`looseObject`) so a field added to an
 * answer does not make the document wrong, only less complete.
 */

/** The FHIR OperationOutcome every refusal of the JSON API and the FHIR doors carries. */
export const OperationOutcomeSchema = z
  .strictObject({
    resourceType: z.literal('OperationOutcome'),
    id: z.string().optional(),
    issue: z
      .array(
        z.looseObject({
          severity: z.enum(['fatal', 'error', 'warning', 'information']),
          code: z.string().meta({ description: 'FHIR issue type (http://hl7.org/fhir/issue-type): invalid, required, value, structure, not-found, forbidden, login, conflict, ...' }),
          details: z.looseObject({ text: z.string() }).optional().meta({ description: 'What is wrong, in words' }),
          diagnostics: z.string().optional(),
          expression: z.array(z.string()).optional().meta({ description: 'The field at fault, as a FHIRPath-style expression (`consultants[1]`, `patient.reference`)' }),
        }),
      )
      .min(1),
  })
  .meta({ id: 'OperationOutcome', description: 'A FHIR R4 OperationOutcome: one issue per problem, each naming its field in `expression` where there is one.', examples: [EXAMPLE_OPERATION_OUTCOME] });

/** Any FHIR R4 resource (the FHIR doors; Tasks and ServiceRequests in JSON answers). */
export const FhirResourceSchema = z
  .looseObject({ resourceType: z.string(), id: z.string().optional() })
  .meta({ id: 'FhirResource', description: 'A FHIR R4 resource. Types, profiles and search parameters are listed by the CapabilityStatement at GET /fhir/metadata.' });

/** The refusal of the token endpoint (RFC 6749 §5.2). */
export const OAuthErrorSchema = z
  .looseObject({ error: z.enum(['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope']), error_description: z.string().optional() })
  .meta({ id: 'OAuthError' });

export const TokenResponseSchema = z
  .looseObject({ access_token: z.string(), token_type: z.literal('bearer'), expires_in: z.number().int(), scope: z.string() })
  .meta({ id: 'TokenResponse' });

/** `POST /auth/token`: SMART Backend Services (client_credentials with a signed client assertion). */
export const TokenRequestSchema = z.strictObject({
  grant_type: z.literal('client_credentials'),
  client_assertion_type: z.literal('urn:ietf:params:oauth:client-assertion-type:jwt-bearer'),
  client_assertion: z.string().meta({ description: 'A JWT signed (RS384 or ES384) with the client\'s private key: iss and sub the client_id, aud the token endpoint URL, a unique jti, exp at most 5 minutes ahead; kid in the header.' }),
  scope: z.string().optional().meta({ description: 'Space-separated SMART system scopes; granted: those requested that the network file allows the client (all it allows when left out).' }),
  client_id: z.string().optional(),
  practitioner: z.string().optional().meta({ description: 'Practitioner/<id>: a token restricted to the referrals that clinician requested.' }),
});

export const HealthSchema = z.strictObject({
  status: z.enum(['ok', 'ready', 'unavailable']),
  /** Not ready: the dependencies that did not answer. */
  unavailable: z.array(z.enum(['database', 'job-queue'])).optional(),
});

const Reference = z.looseObject({ reference: z.string(), display: z.string().optional() });
const Question = z.looseObject({ text: z.string(), askedBy: z.string() });
const FollowUp = z.looseObject({
  question: z.string(),
  text: z.string().optional(),
  askedAt: z.string(),
  due: z.string(),
  overdue: z.boolean(),
  answer: z.looseObject({ id: z.string(), text: z.string().optional(), answeredAt: z.string() }).optional(),
  delivery: z.looseObject({ status: z.string(), attempts: z.number() }).optional(),
});

export const ParticipantListSchema = z.looseObject({
  participants: z.array(
    z.looseObject({
      id: z.string(),
      name: z.string(),
      roles: z.array(z.enum(ROLES)),
      specialties: z.array(z.looseObject({})),
      organization: z.looseObject({ reference: z.string(), display: z.string().optional(), identifier: z.array(z.looseObject({ system: z.string().optional(), value: z.string().optional() })).optional() }),
    }),
  ),
});

export const PlacedReferralSchema = z
  .looseObject({ id: z.string().meta({ description: 'The referral (ServiceRequest) id' }), serviceRequest: FhirResourceSchema, tasks: z.array(FhirResourceSchema).meta({ description: 'One Task per consulting clinic' }) })
  .meta({ id: 'PlacedReferral' });

const TaskOutcome = z.looseObject({ id: z.string(), status: z.string(), businessStatus: z.string().optional() });

export const ReferralSummarySchema = z
  .looseObject({
    id: z.string(),
    requestId: z.string(),
    status: z.string(),
    kind: z.string().optional(),
    priority: z.string().optional(),
    reviewType: z.string().optional(),
    blinded: z.boolean(),
    authoredOn: z.string().optional(),
    questions: z.array(Question),
    consultants: z.array(
      z.looseObject({
        participant: z.string().optional(),
        organization: z.string().optional(),
        name: z.string().optional(),
        task: z.looseObject({ id: z.string(), status: z.string(), businessStatus: z.string().optional(), businessStatusText: z.string().optional(), due: z.string().optional(), overdue: z.boolean() }),
        opinion: z.looseObject({ documentReference: z.string(), diagnosisAgreement: z.string().optional(), planAgreement: z.string().optional(), summary: z.string().optional() }).optional(),
        delivery: z.looseObject({ id: z.string(), status: z.string(), attempts: z.number(), lastError: z.string().optional() }).optional(),
        followUps: z.array(FollowUp),
      }),
    ),
    recordSet: z.looseObject({ status: z.string(), recordsRevision: z.number(), versions: z.array(z.string()), bundleId: z.string().optional() }),
  })
  .meta({ id: 'ReferralSummary', description: 'Where the referral stands: each clinic\'s Task, opinion, post-back and follow-up questions, and the record set.' });

/** One opinion in the comparison: the first opinion (`source` `first-opinion`) or a consultant's. */
const ComparedOpinion = z.looseObject({
  source: z.string().meta({ description: '`first-opinion`, or the consultant\'s participant id' }),
  name: z.string(),
  date: z.string().optional(),
  diagnosis: z.array(z.looseObject({ system: z.string().optional(), code: z.string().optional(), display: z.string().optional() })),
  plan: z.string().optional().meta({ description: 'The first opinion\'s plan, or the consultant\'s summary' }),
  diagnosisAgreement: z.string().optional(),
  planAgreement: z.string().optional(),
  options: z.array(z.looseObject({ option: z.string(), preferred: z.boolean(), rationale: z.string().optional(), risks: z.array(z.string()), recovery: z.string().optional() })),
  preferredOption: z.string().optional(),
  keyRisks: z.array(z.string()),
  recovery: z.string().optional(),
  missingInformation: z.array(z.string()),
  followUp: z.string().optional(),
  documentReference: z.string().optional(),
  followUps: z.array(FollowUp).optional(),
  concordance: z.looseObject({ diagnosis: z.string(), plan: z.string() }).optional(),
});

export const ComparisonSchema = z
  .looseObject({
    referral: z.looseObject({
      id: z.string(),
      requestId: z.string().optional().meta({ description: 'The referrer\'s own request id' }),
      patient: z.looseObject({ reference: z.string().optional(), identifier: z.looseObject({ system: z.string().optional(), value: z.string().optional() }).optional(), display: z.string().optional() }).optional(),
      kind: z.string().optional(),
      authoredOn: z.string().optional(),
      question: z.string().optional(),
    }),
    questions: z.array(z.looseObject({ index: z.number().int(), text: z.string(), askedBy: z.string(), answers: z.array(z.looseObject({ source: z.string(), name: z.string(), text: z.string().optional(), notAnswerable: z.string().optional() })) })),
    first: ComparedOpinion.optional(),
    opinions: z.array(ComparedOpinion),
    pending: z.array(z.looseObject({ source: z.string(), name: z.string(), status: z.string() })),
    agreement: z.array(z.looseObject({ point: z.string(), agree: z.boolean(), detail: z.string() })).optional(),
  })
  .meta({ id: 'Comparison', description: 'The first opinion and every returned opinion side by side, point by point; the patient and the referral; consultants not in yet.' });

export const AddedRecordsSchema = z.looseObject({ id: z.string(), recordsRevision: z.number().int(), added: z.array(Reference) });
export const CancelledReferralSchema = z.looseObject({ id: z.string(), status: z.string(), tasks: z.array(TaskOutcome) });
export const InfoAnsweredSchema = z.looseObject({ id: z.string(), recordsRevision: z.number().int().optional(), added: z.array(Reference), tasks: z.array(TaskOutcome) });
export const ConsentWithdrawnSchema = z.looseObject({
  id: z.string(),
  status: z.string(),
  consultants: z.array(z.looseObject({ participant: z.string(), task: z.looseObject({ id: z.string(), status: z.string(), statusReason: z.string().optional() }), revoked: z.array(z.string()) })),
});
export const AskedQuestionSchema = z.looseObject({ id: z.string(), taskId: z.string(), consultant: z.string(), askedAt: z.string(), due: z.string(), asked: z.number().int(), limit: z.number().int(), communication: FhirResourceSchema, url: z.string() });
export const GivenAnswerSchema = z.looseObject({ id: z.string(), question: z.string(), taskId: z.string(), answeredAt: z.string(), delivery: z.literal('pending'), communication: FhirResourceSchema, url: z.string() });

export const WorklistSchema = z
  .looseObject({
    items: z.array(
      z.looseObject({
        task: z.looseObject({ id: z.string(), status: z.string(), businessStatus: z.string().optional(), due: z.string().optional(), overdue: z.boolean(), version: z.string().optional(), url: z.string() }),
        referral: z.looseObject({ id: z.string(), kind: z.string().optional(), question: z.string().optional(), questions: z.array(Question), priority: z.string().optional(), reviewType: z.string().optional(), blinded: z.boolean() }),
        patient: z.looseObject({ reference: z.string().optional(), display: z.string().optional() }),
        recordSet: z.string().optional().meta({ description: 'URL of the record-set Bundle to read (…/fhir/Bundle/{id})' }),
        followUps: z.array(FollowUp),
        actions: z.array(z.string()).meta({ description: 'What the clinic may do now: POST /consults/{taskId}/{action}' }),
      }),
    ),
    next: z.string().optional().meta({ description: 'Opaque cursor of the next page (pass as _cursor)' }),
  })
  .meta({ id: 'Worklist' });

const Outbound = { status: z.string(), attempts: z.number().int(), lastError: z.string().optional(), lastOutcome: OperationOutcomeSchema.optional() };
export const DeliveryListSchema = z.looseObject({
  items: z.array(z.looseObject({ id: z.string(), kind: z.enum(['opinion', 'follow-up-answer']), taskId: z.string(), serviceRequestId: z.string(), participant: z.string(), ...Outbound, updatedAt: z.string() })),
});
export const DeliveryViewSchema = z.looseObject({ id: z.string(), kind: z.enum(['opinion', 'follow-up-answer']), taskId: z.string(), ...Outbound });
export const PushListSchema = z.looseObject({
  items: z.array(z.looseObject({ id: z.string(), participant: z.string(), taskId: z.string(), serviceRequestId: z.string(), bundleId: z.string(), ...Outbound, updatedAt: z.string() })),
});
export const PushViewSchema = z.looseObject({ id: z.string(), ...Outbound });
export const EhrChecklistSchema = z.looseObject({
  participantId: z.string(),
  baseUrl: z.string(),
  ok: z.boolean(),
  checks: z.array(z.looseObject({ id: z.string(), title: z.string(), status: z.string(), observed: z.string(), fix: z.string().optional() })),
});

/** Query parameters (documentation: the routes parse them by hand, naming the parameter at fault). */
export const WorklistQuerySchema = z.strictObject({
  status: z.string().optional().meta({ description: 'Task statuses, comma-separated (requested, received, accepted, in-progress, on-hold, completed, ...)' }),
  overdue: z.enum(['true', 'false']).optional(),
  _count: z.string().regex(/^\d+$/).optional().meta({ description: 'Page size, 1 to 100 (default 20)' }),
  _cursor: z.string().optional().meta({ description: 'The `next` of the previous page' }),
});
export const ParticipantQuerySchema = z.strictObject({ role: z.enum(ROLES).optional() });
export const DeliveryQuerySchema = z.strictObject({ status: z.enum(DELIVERY_STATUSES).optional(), _count: z.string().regex(/^\d+$/).optional() });
export const PushQuerySchema = z.strictObject({ status: z.enum(PUSH_STATUSES).optional(), _count: z.string().regex(/^\d+$/).optional() });
export const CheckQuerySchema = z.strictObject({
  patient: z.string().optional().meta({ description: 'Patient/<id> on the EHR: enables the document search, attachment fetch and Consent search' }),
  consent: z.string().optional().meta({ description: 'Consent/<id> on the EHR: read it' }),
  write: z.enum(['true', 'false']).optional().meta({ description: 'Try a conditional create of a Communication and read it back' }),
});
