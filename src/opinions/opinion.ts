/**
 * The consultant's opinion as submitted (`POST /consults/{taskId}/opinion`): the
 * same points as the first opinion, so opinions can be compared side by side.
 */
import { z } from 'zod';
import { Coding, text } from '../intake/intake-request.ts';

export const AGREEMENT = ['agree', 'agree-with-modifications', 'disagree'] as const;
export type Agreement = (typeof AGREEMENT)[number];

export const AGREEMENT_DISPLAY: Record<Agreement, string> = {
  agree: 'Agree',
  'agree-with-modifications': 'Agree with modifications',
  disagree: 'Disagree',
};

/** Content types an opinion's attachments may have. */
export const ATTACHMENT_TYPES = ['application/pdf', 'image/png', 'image/jpeg', 'text/plain'] as const;
/** Largest attachment of an opinion, decoded (the body limit applies to the whole request too). */
export const MAX_OPINION_ATTACHMENT_BYTES = 5 * 1024 * 1024;

const Recommendation = z.strictObject({
  option: text(500),
  preferred: z.boolean().default(false),
  rationale: text(4000).optional(),
  risks: z.array(text(1000)).max(20).default([]),
  recovery: text(1000).optional(),
});

const Attachment = z
  .strictObject({
    contentType: z.enum(ATTACHMENT_TYPES),
    title: text(256).optional(),
    data: z.base64('must be base64'),
  })
  .refine((a) => Buffer.byteLength(a.data, 'base64') <= MAX_OPINION_ATTACHMENT_BYTES, { message: `must be at most ${MAX_OPINION_ATTACHMENT_BYTES} bytes`, path: ['data'] });

/**
 * The answer to one of the referral's questions, by its index: a `text`, or, when
 * it cannot be answered, `notAnswerable` saying why. Exactly one of the two.
 */
export const AnswerSchema = z
  .strictObject({
    question: z.number().int().min(0).max(1000),
    text: text(10_000).optional(),
    notAnswerable: text(2000).optional(),
  })
  .refine((a) => (a.text === undefined) !== (a.notAnswerable === undefined), { message: 'give either text (the answer) or notAnswerable (why it cannot be answered), not both' });
export type Answer = z.output<typeof AnswerSchema>;

export const OpinionSchema = z
  .strictObject({
    diagnosisAgreement: z.enum(AGREEMENT),
    planAgreement: z.enum(AGREEMENT),
    diagnosis: z.array(Coding).max(20).default([]),
    summary: text(20_000),
    recommendations: z.array(Recommendation).max(10).default([]),
    missingInformation: z.array(text(1000)).max(20).default([]),
    followUp: text(4000).optional(),
    /** One per question of the referral (its `questions`), by index; checked against them in answers.ts. */
    answers: z.array(AnswerSchema).max(50).default([]),
    attachments: z.array(Attachment).max(5).default([]),
  })
  .refine((o) => o.recommendations.filter((r) => r.preferred).length <= 1, { message: 'at most one recommendation may be preferred', path: ['recommendations'] });

export type Opinion = z.output<typeof OpinionSchema>;
/** The structured points only (what the consult note's extension keeps). */
export type OpinionPoints = Omit<Opinion, 'attachments'>;
