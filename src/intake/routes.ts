import express, { Router, type RequestHandler } from 'express';
import type { Guard } from '../access/route-guard.ts';
import { requireCaller } from '../auth/middleware.ts';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import { parseBody } from '../http/parse-body.ts';
import { addConsultants, AddConsultantsRequestSchema } from './add-consultants.ts';
import { addRecords, AddRecordsRequestSchema } from './add-records.ts';
import { createSecondOpinion, type IntakeDeps } from './create-second-opinion.ts';
import { getReferralSummary, type SummaryDeps } from './get-referral-summary.ts';
import { IntakeRequestSchema } from './intake-request.ts';
import { COMPARISON_PAGE_CSP, getComparison, renderComparisonHtml } from '../retrieval/comparison.ts';

export interface IntakeRouterDeps {
  /** Role and scope checks of each route (access/route-rules.ts). */
  guard: Guard;
  intake: IntakeDeps;
  summary: SummaryDeps;
  publicUrl: string;
  bodyLimitBytes: number;
}

const JSON_TYPES = ['application/json', 'application/fhir+json'];

/** 415 unless the body is JSON; checked before parsing so a wrong type never reaches the parser. */
const requireJson: RequestHandler = (req, _res, next) => {
  if (!req.is(JSON_TYPES)) {
    throw new HttpOutcomeError(415, outcome([issue('not-supported', `Content-Type must be application/json or application/fhir+json`)]));
  }
  next();
};

/** `POST /second-opinions` and `GET /second-opinions/{id}`. */
export function createIntakeRouter(deps: IntakeRouterDeps): Router {
  const router = Router();
  const json = express.json({ type: JSON_TYPES, limit: deps.bodyLimitBytes, strict: true });

  router.post(
    '/second-opinions',
    deps.guard('POST', '/second-opinions'),
    requireJson,
    json,
    async (req, res) => {
      const request = parseBody(IntakeRequestSchema, req.body);
      const result = await createSecondOpinion(request, requireCaller(), deps.intake);
      const id = result.serviceRequest.id as string;
      res
        .status(result.created ? 201 : 200)
        .location(`${deps.publicUrl}/second-opinions/${id}`)
        .json({ id, serviceRequest: result.serviceRequest, tasks: result.tasks });
    },
  );

  // The first opinion and every returned opinion side by side: JSON, or HTML for people.
  router.get('/second-opinions/:id/comparison', deps.guard('GET', '/second-opinions/:id/comparison'), async (req, res) => {
    const comparison = await getComparison(req.params.id as string, requireCaller(), { store: deps.summary.store, participantByOrganization: deps.summary.participantByOrganization, audit: deps.summary.audit, now: deps.summary.now });
    if (req.accepts(['application/json', 'text/html']) === 'text/html') {
      res.setHeader('Content-Security-Policy', COMPARISON_PAGE_CSP);
      res.type('html').send(renderComparisonHtml(comparison));
      return;
    }
    res.json(comparison);
  });

  router.get('/second-opinions/:id', deps.guard('GET', '/second-opinions/:id'), async (req, res) => {
    res.json(await getReferralSummary(req.params.id as string, requireCaller(), deps.summary));
  });

  // The referrer adds records: 202 and a new assembly, or 200 when nothing was new.
  router.post(
    '/second-opinions/:id/records',
    deps.guard('POST', '/second-opinions/:id/records'),
    requireJson,
    json,
    async (req, res) => {
      const body = parseBody(AddRecordsRequestSchema, req.body);
      const id = req.params.id as string;
      const result = await addRecords(id, body, requireCaller(), deps.intake);
      res
        .status(result.accepted ? 202 : 200)
        .location(`${deps.publicUrl}/second-opinions/${encodeURIComponent(id)}`)
        .json({ id, recordsRevision: result.recordsRevision, added: result.added });
    },
  );

  // The referrer adds consulting clinics: 201 with the new Tasks.
  router.post(
    '/second-opinions/:id/consultants',
    deps.guard('POST', '/second-opinions/:id/consultants'),
    requireJson,
    json,
    async (req, res) => {
      const body = parseBody(AddConsultantsRequestSchema, req.body);
      const id = req.params.id as string;
      const result = await addConsultants(id, body, requireCaller(), deps.intake);
      res
        .status(201)
        .location(`${deps.publicUrl}/second-opinions/${encodeURIComponent(id)}`)
        .json({ id, serviceRequest: result.serviceRequest, tasks: result.tasks });
    },
  );

  return router;
}
