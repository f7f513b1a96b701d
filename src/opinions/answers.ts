/**
 * The rule that an opinion answers the referral's questions point by point:
 * every question has exactly one answer (a text, or why it cannot be answered), and no answer
 * names a question that does not exist. Pure, so the JSON door and the FHIR Task door share it
 * through submitOpinion. The issues name questions by index and who asked them, never by their
 * text (the patient's own words are PHI and the caller already has them).
 */
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import { issue, unprocessable } from '../fhir/outcomes.ts';
import type { ReferralQuestion } from '../intake/intake-request.ts';
import type { Answer } from './opinion.ts';

/** The problems with `answers` against `questions`, each naming the question (empty when they fit). */
export function answerProblems(questions: readonly ReferralQuestion[], answers: readonly Pick<Answer, 'question'>[]): OperationOutcomeIssue[] {
  const problems: OperationOutcomeIssue[] = [];
  const seen = new Set<number>();
  answers.forEach((answer, i) => {
    const asked = questions[answer.question];
    if (!asked) {
      const range = questions.length ? `0 to ${questions.length - 1}` : 'none: the referral has no questions';
      problems.push(issue('value', `Answer ${i} names question ${answer.question}, which the referral does not have (its questions: ${range})`, `answers[${i}].question`));
    } else if (seen.has(answer.question)) {
      problems.push(issue('business-rule', `Question ${answer.question} (asked by the ${asked.askedBy}) is answered twice; give one answer per question`, `answers[${i}].question`));
    }
    seen.add(answer.question);
  });
  questions.forEach((q, index) => {
    if (!seen.has(index)) {
      problems.push(issue('required', `Question ${index} (asked by the ${q.askedBy}) has no answer: answer it (text), or say why it cannot be answered (notAnswerable)`, 'answers'));
    }
  });
  return problems;
}

/** 422 with every problem when the opinion does not answer the referral's questions one by one. */
export function requireAnswers(questions: readonly ReferralQuestion[], answers: readonly Pick<Answer, 'question'>[]): void {
  const problems = answerProblems(questions, answers);
  if (problems.length) throw unprocessable(problems);
}
