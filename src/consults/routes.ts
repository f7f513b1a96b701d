import express, { Router, type RequestHandler, type Response } from 'express';
import type { Task } from '@medplum/fhirtypes';
import type { Guard } from '../access/route-guard.ts';
import { requireCaller } from '../auth/middleware.ts';
import { FHIR_JSON } from '../fhir/constants.ts';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import { parseBody } from '../http/parse-body.ts';
import { queryParams } from '../http/query-params.ts';
import { actOnConsult, type ConsultDeps, DeclineSchema, NoBodySchema, RequestInfoSchema } from './consult-actions.ts';
import { parseIfMatch } from './transition-task.ts';
import { submitOpinion, type SubmitOpinionDeps } from './submit-opinion.ts';
import { MAX_OPINION_ATTACHMENT_BYTES, OpinionSchema } from '../opinions/opinion.ts';
import { getWorklist, parseWorklistQuery } from './worklist.ts';
import { ConsentWithdrawalSchema, withdrawConsent, type WithdrawConsentDeps } from './withdraw-consent.ts';
import { answerInformationRequest, CancelRequestSchema, cancelReferral, InfoAnswerSchema, type ReferrerActionDeps } from './referrer-actions.ts';

export interface ConsultRouterDeps extends Omit<ConsultDeps, 'network'>, ReferrerActionDeps {
  /** Role and scope checks of each route (access/route-rules.ts). */
  guard: Guard;
  audit: SubmitOpinionDeps['audit'] & WithdrawConsentDeps['audit'];
  network: ReferrerActionDeps['network'] & WithdrawConsentDeps['network'];
  jobs: SubmitOpinionDeps['jobs'] & ReferrerActionDeps['jobs'];
  publicUrl: string;
  bodyLimitBytes: number;
}

const JSON_TYPES = ['application/json', 'application/fhir+json'];

/** 415 for a body that is not JSON (no body at all is fine: most actions take none). */
const jsonOrEmpty: RequestHandler = (req, _res, next) => {
  const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
  if (hasBody && !req.is(JSON_TYPES)) throw new HttpOutcomeError(415, outcome([issue('not-supported', 'Content-Type must be application/json or application/fhir+json')]));
  next();
};

function sendTask(res: Response, task: Task): void {
  res.setHeader('ETag', `W/"${task.meta?.versionId}"`);
  res.type(FHIR_JSON).send(JSON.stringify(task));
}

/** `GET /consults` and `POST /consults/{taskId}/{action}`. */
export function createConsultRouter(deps: ConsultRouterDeps): Router {
  const router = Router();
  const json = express.json({ type: JSON_TYPES, limit: deps.bodyLimitBytes, strict: true });

  router.get('/consults', deps.guard('GET', '/consults'), async (req, res) => {
    res.json(await getWorklist(requireCaller(), parseWorklistQuery(queryParams(req)), deps));
  });

  const act = (path: string, handle: (body: unknown) => Parameters<typeof actOnConsult>[1]) =>
    router.post(`/consults/:taskId/${path}`, deps.guard('POST', `/consults/:taskId/${path}`), jsonOrEmpty, json, async (req, res) => {
      const task = await actOnConsult(req.params.taskId as string, handle(req.body), requireCaller(), deps, parseIfMatch(req.header('If-Match')));
      sendTask(res, task);
    });

  act('receive', (body) => (parseBody(NoBodySchema, body), { action: 'receive' }));
  act('accept', (body) => (parseBody(NoBodySchema, body), { action: 'accept' }));
  act('start', (body) => (parseBody(NoBodySchema, body), { action: 'start' }));
  act('confirm-cancellation', (body) => (parseBody(NoBodySchema, body), { action: 'confirm-cancellation' }));
  act('decline', (body) => ({ action: 'decline', ...parseBody(DeclineSchema, body) }));
  act('request-info', (body) => {
    const parsed = parseBody(RequestInfoSchema, body);
    return { action: 'request-info', question: parsed.question, ...(parsed.recordTypes ? { recordTypes: parsed.recordTypes } : {}) };
  });

  // The opinion may carry attachments (5 of up to MAX_OPINION_ATTACHMENT_BYTES, base64): its own body limit.
  const opinionJson = express.json({ type: JSON_TYPES, limit: Math.max(deps.bodyLimitBytes, Math.ceil((5 * MAX_OPINION_ATTACHMENT_BYTES * 4) / 3) + 1_048_576), strict: true });
  router.post('/consults/:taskId/opinion', deps.guard('POST', '/consults/:taskId/opinion'), jsonOrEmpty, opinionJson, async (req, res) => {
    const opinion = parseBody(OpinionSchema, req.body ?? {});
    sendTask(res, await submitOpinion(req.params.taskId as string, opinion, requireCaller(), deps, parseIfMatch(req.header('If-Match'))));
  });

  // The referrer's side: cancel the referral, record a withdrawal of consent, answer a request for information.
  router.post('/second-opinions/:id/consent-withdrawal', deps.guard('POST', '/second-opinions/:id/consent-withdrawal'), jsonOrEmpty, json, async (req, res) => {
    res.json(await withdrawConsent(req.params.id as string, parseBody(ConsentWithdrawalSchema, req.body ?? {}), requireCaller(), deps));
  });
  router.post('/second-opinions/:id/cancel', deps.guard('POST', '/second-opinions/:id/cancel'), jsonOrEmpty, json, async (req, res) => {
    res.json(await cancelReferral(req.params.id as string, parseBody(CancelRequestSchema, req.body), requireCaller(), deps));
  });
  router.post('/second-opinions/:id/info', deps.guard('POST', '/second-opinions/:id/info'), jsonOrEmpty, json, async (req, res) => {
    res.json(await answerInformationRequest(req.params.id as string, parseBody(InfoAnswerSchema, req.body), requireCaller(), deps));
  });

  return router;
}
