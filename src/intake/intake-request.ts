import { z } from 'zod';
import { KINDS, PRIORITIES, QUESTION_ASKER_DISPLAY, REVIEW_TYPES } from '../fhir/constants.ts';

/**
 * The body of `POST /second-opinions`: what a referring EHR sends. References point at
 * resources on the referrer's own FHIR server, relative (`Patient/123`) or absolute.
 */
export const text = (max: number) => z.string().trim().min(1, 'must not be empty').max(max);

/** A reference to a resource of one of `types` on the referrer's EHR. */
export const referenceTo = (...types: string[]) => {
  const pattern = new RegExp(`(^|/)(${types.join('|')})/[A-Za-z0-9\\-.]{1,64}(/_history/[A-Za-z0-9\\-.]{1,64})?$`);
  return text(2048).refine((ref) => pattern.test(ref), {
    message: `must be a reference to ${types.join(' or ')} (e.g. ${types[0]}/123, relative to the referrer's FHIR base, or an absolute URL)`,
  });
};

/**
 * A document on the referrer's EHR, `{reference, display?}`: intake's `records.documents` and
 * `firstOpinion.documents`, and the body of `POST /second-opinions/{id}/records`.
 */
export const DocumentRefSchema = z.strictObject({ reference: referenceTo('DocumentReference'), display: text(256).optional() });
export type DocumentRef = z.output<typeof DocumentRefSchema>;

/** The resource types a record named on the referrer's EHR may be: documents, plus reports and studies where relevant. */
export const RECORD_TYPES = ['DocumentReference', 'DiagnosticReport', 'ImagingStudy'] as const;
export type RecordType = (typeof RECORD_TYPES)[number];

/**
 * A record on the referrer's EHR, `{reference, display?}`: a DocumentReference, a DiagnosticReport
 * or an ImagingStudy. Intake's `records.documents` and the body of `POST /second-opinions/{id}/records`;
 * the first opinion's documents stay DocumentReferences.
 */
export const RecordRefSchema = z.strictObject({ reference: referenceTo(...RECORD_TYPES), display: text(256).optional() });
export type RecordRef = z.output<typeof RecordRefSchema>;

/**
 * Values that become FHIR primitives other than `string` are held to their R4 rules here
 * (https://hl7.org/fhir/R4/datatypes.html), where the field can be named: the validator every
 * write goes through would otherwise refuse the resource the use case built (a 500).
 */
/** `uri`: no whitespace inside. */
export const uri = (max: number) => text(max).regex(/^\S+$/, 'must be a URI: no spaces');
/** `code`: single spaces between non-space characters, no tabs or line breaks. */
export const code = (max: number) => text(max).regex(/^\S+( \S+)*$/, 'must be a code: single spaces only, no tabs, line breaks or other white space');
/** `dateTime` with a time: seconds, at most 9 fractional digits, a zone from -14:00 to +14:00. */
const FHIR_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))$/;

export const Coding = z.strictObject({
  system: uri(1024),
  code: code(256),
  display: text(1024).optional(),
});

const Identifier = z.strictObject({
  system: uri(1024).optional(),
  value: text(256),
});

const DateOrDateTime = z.union([z.iso.date(), z.iso.datetime({ offset: true }).regex(FHIR_DATE_TIME)], {
  error: 'must be a date (YYYY-MM-DD) or a date-time with seconds and a time zone (at most 9 decimals, zone -14:00 to +14:00)',
});

/** Who may ask a referral question (CodeSystem question-asker). */
export const QUESTION_ASKERS = Object.keys(QUESTION_ASKER_DISPLAY) as (keyof typeof QUESTION_ASKER_DISPLAY)[];
export type QuestionAsker = keyof typeof QUESTION_ASKER_DISPLAY;
/** At most this many questions per referral: each one must be answered by every consultant. */
export const MAX_QUESTIONS = 20;

/** One of the patient's or the physician's own questions; its index is its position in `questions`. */
export const ReferralQuestionSchema = z.strictObject({ text: text(2000), askedBy: z.enum(QUESTION_ASKERS) });
export type ReferralQuestion = z.output<typeof ReferralQuestionSchema>;

export const IntakeRequestSchema = z
  .strictObject({
    requestId: text(256),
    patient: z.strictObject({
      reference: referenceTo('Patient'),
      identifier: z.array(Identifier).default([]),
      display: text(256).optional(),
    }),
    requester: z.strictObject({
      reference: referenceTo('Practitioner', 'PractitionerRole'),
      display: text(256),
    }),
    kind: z.enum(KINDS),
    question: text(10_000),
    questions: z.array(ReferralQuestionSchema).max(MAX_QUESTIONS, `at most ${MAX_QUESTIONS} questions`).default([]),
    reason: z.array(Coding).max(20).default([]),
    firstOpinion: z
      .strictObject({
        diagnosis: z.array(Coding).max(20).default([]),
        plan: text(10_000).optional(),
        documents: z.array(DocumentRefSchema).max(100).default([]),
      })
      .optional(),
    priority: z.enum(PRIORITIES),
    reviewType: z.enum(REVIEW_TYPES),
    consultants: z
      .array(text(64))
      .min(1, 'name at least one consultant')
      .max(5, 'at most 5 consultants')
      .refine((ids) => new Set(ids).size === ids.length, { message: 'must not name a consultant twice' }),
    records: z
      .strictObject({
        documents: z.array(RecordRefSchema).max(500).optional(),
        search: z
          .strictObject({
            category: z.array(text(512)).max(20).optional(),
            type: z.array(text(512)).max(50).optional(),
            since: z.iso.date().optional(),
          })
          .optional(),
      })
      .refine((r) => (r.documents?.length ?? 0) > 0 || r.search !== undefined, { message: 'name documents and/or a search' }),
    blinded: z.boolean().default(false),
    consent: z.strictObject({ reference: referenceTo('Consent') }).optional(),
    /** The referrer attests that the patient consented; counts only where CONSENT_ATTESTATION_ALLOWED is on and no `consent` is named. */
    consentAttested: z.boolean().default(false),
    dueDate: DateOrDateTime.optional(),
  });

export type IntakeRequest = z.output<typeof IntakeRequestSchema>;
