import { describe, expect, it } from 'vitest';
import { answerProblems, requireAnswers } from './answers.ts';
import type { ReferralQuestion } from '../intake/intake-request.ts';
import { HttpOutcomeError } from '../fhir/outcomes.ts';

const questions: ReferralQuestion[] = [
  { text: 'Will I be able to kneel again?', askedBy: 'patient' },
  { text: 'Cemented or uncemented?', askedBy: 'physician' },
  { text: 'How long off work?', askedBy: 'patient' },
];

describe('answerProblems (every question answered, or why not)', () => {
  it('accepts one answer per question, in any order, a reason counting as an answer', () => {
    expect(answerProblems(questions, [{ question: 2 }, { question: 0 }, { question: 1 }])).toEqual([]);
  });

  it('accepts no answers when the referral has no questions', () => {
    expect(answerProblems([], [])).toEqual([]);
  });

  it('names each unanswered question by index and who asked it, at `answers`, without its text', () => {
    const problems = answerProblems(questions, [{ question: 1 }]);
    expect(problems).toEqual([
      { severity: 'error', code: 'required', details: { text: 'Question 0 (asked by the patient) has no answer: answer it (text), or say why it cannot be answered (notAnswerable)' }, expression: ['answers'] },
      { severity: 'error', code: 'required', details: { text: 'Question 2 (asked by the patient) has no answer: answer it (text), or say why it cannot be answered (notAnswerable)' }, expression: ['answers'] },
    ]);
    expect(JSON.stringify(problems)).not.toContain('kneel');
  });

  it('refuses an answer to a question that does not exist, at its index', () => {
    expect(answerProblems(questions, [{ question: 0 }, { question: 1 }, { question: 2 }, { question: 3 }])).toEqual([
      { severity: 'error', code: 'value', details: { text: 'Answer 3 names question 3, which the referral does not have (its questions: 0 to 2)' }, expression: ['answers[3].question'] },
    ]);
    expect(answerProblems([], [{ question: 0 }])[0]?.details?.text).toBe('Answer 0 names question 0, which the referral does not have (its questions: none: the referral has no questions)');
  });

  it('refuses a question answered twice, at the second answer', () => {
    expect(answerProblems(questions, [{ question: 0 }, { question: 1 }, { question: 2 }, { question: 1 }])).toEqual([
      { severity: 'error', code: 'business-rule', details: { text: 'Question 1 (asked by the physician) is answered twice; give one answer per question' }, expression: ['answers[3].question'] },
    ]);
  });

  it('requireAnswers throws a 422 with every problem', () => {
    try {
      requireAnswers(questions, []);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(HttpOutcomeError);
      expect((err as HttpOutcomeError).status).toBe(422);
      expect((err as HttpOutcomeError).outcome.issue?.map((i) => i.details?.text?.slice(0, 10))).toEqual(['Question 0', 'Question 1', 'Question 2']);
    }
    expect(() => requireAnswers(questions, [{ question: 0 }, { question: 1 }, { question: 2 }])).not.toThrow();
  });
});
