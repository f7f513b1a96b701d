/**
 * The patient's and the physician's own questions on the referral: kept as
 * ServiceRequest notes after the clinical question, each marked by the `referral-question`
 * extension saying who asked it, so an EHR shows them as notes. A question's index is its
 * position among the notes so marked; the opinion answers each by that index.
 */
import type { Annotation, ServiceRequest } from '@medplum/fhirtypes';
import { EXTENSION, QUESTION_ASKER_DISPLAY, SYSTEM } from '../fhir/constants.ts';
import { QUESTION_ASKERS, type QuestionAsker, type ReferralQuestion } from './intake-request.ts';

/** The notes that carry the questions, in order. */
export function questionNotes(questions: readonly ReferralQuestion[]): Annotation[] {
  return questions.map((q) => ({
    extension: [{ url: EXTENSION.referralQuestion, valueCoding: { system: SYSTEM.questionAsker, code: q.askedBy, display: QUESTION_ASKER_DISPLAY[q.askedBy] } }],
    text: q.text,
  }));
}

/** Whether a note is one of the referral's questions (rather than the clinical question or another note). */
export function isQuestionNote(note: Annotation): boolean {
  return (note.extension ?? []).some((e) => e.url === EXTENSION.referralQuestion);
}

/** Who asked a question note; undefined for a note that is no question or carries an unknown code. */
export function askerOf(note: Annotation): QuestionAsker | undefined {
  const code = note.extension?.find((e) => e.url === EXTENSION.referralQuestion)?.valueCoding?.code;
  return (QUESTION_ASKERS as readonly string[]).includes(code ?? '') ? (code as QuestionAsker) : undefined;
}

/** The referral's questions, by index (their order among the marked notes). */
export function readReferralQuestions(serviceRequest: Pick<ServiceRequest, 'note'>): ReferralQuestion[] {
  return (serviceRequest.note ?? []).filter(isQuestionNote).map((n) => ({ text: n.text ?? '', askedBy: askerOf(n) ?? 'patient' }));
}

/** The clinical question: the notes that are not referral questions (note[0] as the service writes it). */
export function clinicalQuestionOf(serviceRequest: Pick<ServiceRequest, 'note'>): string | undefined {
  return (serviceRequest.note ?? []).find((n) => !isQuestionNote(n))?.text;
}
