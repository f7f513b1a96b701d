import express, { Router, type RequestHandler } from 'express';
import type { Guard } from '../access/route-guard.ts';
import { requireCaller } from '../auth/middleware.ts';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import { parseBody } from '../http/parse-body.ts';
import { answerFollowUpQuestion, type AnswerQuestionDeps, AnswerSchema } from './answer-question.ts';
import { askFollowUpQuestion, type AskQuestionDeps, QuestionSchema } from './ask-question.ts';

export interface FollowUpRouterDeps extends AskQuestionDeps, Omit<AnswerQuestionDeps, 'network'> {
  guard: Guard;
  publicUrl: string;
  bodyLimitBytes: number;
}

const JSON_TYPES = ['application/json', 'application/fhir+json'];

/** 415 unless the body is JSON; checked before parsing so a wrong type never reaches the parser. */
const requireJson: RequestHandler = (req, _res, next) => {
  if (!req.is(JSON_TYPES)) throw new HttpOutcomeError(415, outcome([issue('not-supported', 'Content-Type must be application/json or application/fhir+json')]));
  next();
};

/**
 * Follow-up questions: the referrer asks a consultant after its opinion
 * (`POST /second-opinions/{id}/consultants/{participant}/questions`), the consultant answers on
 * its Task (`POST /consults/{taskId}/answers`). Both answer 201 with the new Communication's URL.
 */
export function createFollowUpRouter(deps: FollowUpRouterDeps): Router {
  const router = Router();
  const json = express.json({ type: JSON_TYPES, limit: deps.bodyLimitBytes, strict: true });
  const questions = '/second-opinions/:id/consultants/:participant/questions';
  router.post(questions, deps.guard('POST', questions), requireJson, json, async (req, res) => {
    const asked = await askFollowUpQuestion(req.params.id as string, req.params.participant as string, parseBody(QuestionSchema, req.body), requireCaller(), deps);
    const url = `${deps.publicUrl}/fhir/Communication/${asked.id}`;
    res.status(201).location(url).json({ ...asked, url });
  });
  router.post('/consults/:taskId/answers', deps.guard('POST', '/consults/:taskId/answers'), requireJson, json, async (req, res) => {
    const answer = await answerFollowUpQuestion(req.params.taskId as string, parseBody(AnswerSchema, req.body), requireCaller(), { ...deps, network: deps.network });
    const url = `${deps.publicUrl}/fhir/Communication/${answer.id}`;
    res.status(201).location(url).json({ ...answer, url });
  });
  return router;
}
