import express, { Router, type RequestHandler } from 'express';
import type { Guard } from '../../access/route-guard.ts';
import { requireCaller } from '../../auth/middleware.ts';
import { FHIR_JSON } from '../../fhir/constants.ts';
import { HttpOutcomeError, issue, outcome } from '../../fhir/outcomes.ts';
import { parseBody } from '../../http/parse-body.ts';
import { IntakeRequestSchema } from '../../intake/intake-request.ts';
import { type FhirIntakeDeps, inFhirTerms, organizationRecognizer, readClinicsOnEhr, referByFhir, transactionResponse, versionLocation } from './fhir-intake.ts';
import { mapServiceRequest, mapTransactionBundle, type MappedReferral } from './referral-mapping.ts';

export interface FhirIntakeRouterDeps extends FhirIntakeDeps {
  guard: Guard;
  bodyLimitBytes: number;
}

const JSON_TYPES = ['application/fhir+json', 'application/json'];

const requireJson: RequestHandler = (req, _res, next) => {
  if (!req.is(JSON_TYPES)) throw new HttpOutcomeError(415, outcome([issue('not-supported', 'Content-Type must be application/fhir+json or application/json')]));
  next();
};

/**
 * The FHIR intake door: `POST /fhir` (a transaction Bundle) and
 * `POST /fhir/ServiceRequest` (the referral alone). Both parse FHIR into the JSON door's
 * request, check it with the same schema and call the same intake use case.
 */
export function createFhirIntakeRouter(deps: FhirIntakeRouterDeps): Router {
  const router = Router();
  const json = express.json({ type: JSON_TYPES, limit: deps.bodyLimitBytes, strict: true });
  const parse = (mapped: MappedReferral) => inFhirTerms(mapped, () => parseBody(IntakeRequestSchema, mapped.body));

  router.post('/fhir', deps.guard('POST', '/fhir'), requireJson, json, async (req, res) => {
    const caller = requireCaller();
    const mapped = mapTransactionBundle(req.body, organizationRecognizer(caller, deps, await readClinicsOnEhr(req.body, caller, deps)));
    const result = await referByFhir(mapped, await parse(mapped), caller, deps);
    res.status(200).type(FHIR_JSON).send(JSON.stringify(transactionResponse(mapped, result, deps.fhirBaseUrl)));
  });

  router.post('/fhir/ServiceRequest', deps.guard('POST', '/fhir/ServiceRequest'), requireJson, json, async (req, res) => {
    const caller = requireCaller();
    const mapped = mapServiceRequest(req.body, organizationRecognizer(caller, deps, await readClinicsOnEhr(req.body, caller, deps)), req.header('If-None-Exist'));
    const result = await referByFhir(mapped, await parse(mapped), caller, deps);
    const sr = result.serviceRequest;
    res
      .status(result.created ? 201 : 200)
      .location(versionLocation(deps.fhirBaseUrl, sr))
      .setHeader('ETag', `W/"${sr.meta?.versionId}"`)
      .type(FHIR_JSON)
      .send(JSON.stringify(sr));
  });

  return router;
}
