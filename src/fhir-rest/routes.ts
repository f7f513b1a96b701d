import express, { Router, type Request, type RequestHandler, type Response } from 'express';
import type { Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import type { Guard } from '../access/route-guard.ts';
import { requireCaller } from '../auth/middleware.ts';
import { parseIfMatch } from '../consults/transition-task.ts';
import { MAX_OPINION_ATTACHMENT_BYTES } from '../opinions/opinion.ts';
import { FHIR_JSON } from '../fhir/constants.ts';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import { queryParams } from '../http/query-params.ts';
import { CONFORMANCE_TYPES, type ConformanceCatalog } from './conformance-resources.ts';
import { evaluateConcordanceMeasure, type EvaluateMeasureDeps } from '../concordance/evaluate-measure.ts';
import { type FhirApiDeps, readHistory, readResource, readVersion, searchResources } from './read-resources.ts';
import { updateServiceRequest } from './update-service-request.ts';
import { patchTask, type TaskUpdateDeps, updateTask } from './update-task.ts';

function sendResource(req: Request, res: Response, resource: Resource): void {
  const etag = `W/"${resource.meta?.versionId}"`;
  res.setHeader('ETag', etag);
  if (resource.meta?.lastUpdated) res.setHeader('Last-Modified', new Date(resource.meta.lastUpdated).toUTCString());
  if (req.header('If-None-Match') === etag) {
    res.status(304).end();
    return;
  }
  res.type(FHIR_JSON).send(JSON.stringify(resource));
}

/**
 * `/fhir` read API (behind the auth middleware; `/fhir/metadata` is mounted before it).
 * Scopes and roles are checked by the API functions, so refusals are audited with the reads.
 */
export function createFhirRouter(deps: FhirApiDeps): Router {
  const router = Router();

  router.get('/fhir/:type/:id/_history/:vid', async (req, res) => {
    const caller = requireCaller();
    sendResource(req, res, await readVersion(req.params.type, req.params.id, req.params.vid, caller, deps));
  });

  router.get('/fhir/:type/:id/_history', async (req, res) => {
    const caller = requireCaller();
    res.type(FHIR_JSON).send(JSON.stringify(await readHistory(req.params.type, req.params.id, caller, deps)));
  });

  router.get('/fhir/:type/:id', async (req, res) => {
    const caller = requireCaller();
    sendResource(req, res, await readResource(req.params.type, req.params.id, caller, deps));
  });

  router.get('/fhir/:type', async (req, res) => {
    const caller = requireCaller();
    const strict = /handling=strict/.test(req.header('Prefer') ?? '');
    res.type(FHIR_JSON).send(JSON.stringify(await searchResources(req.params.type, queryParams(req), strict, caller, deps)));
  });

  // Writes exist only where a door above answers them (intake, Task, Subscription): any other
  // method on a /fhir path is refused as such, not as an unknown path.
  router.all('/fhir/{*rest}', (req, res, next) => {
    if (req.method === 'GET' || req.method === 'HEAD') return next();
    res.setHeader('Allow', 'GET');
    throw new HttpOutcomeError(405, outcome([issue('not-supported', `${req.method} is not supported on this /fhir path; GET /fhir/metadata lists the interactions this server supports`)]));
  });

  return router;
}

export interface FhirTaskRouterDeps extends TaskUpdateDeps {
  guard: Guard;
  bodyLimitBytes: number;
}

/** 415 unless the body is one of `types` (FHIR update: FHIR JSON; PATCH: JSON Patch). */
const bodyOf = (types: string[], what: string): RequestHandler => (req, _res, next) => {
  if (!req.is(types)) throw new HttpOutcomeError(415, outcome([issue('not-supported', `Content-Type must be ${what}`, 'Content-Type')]));
  next();
};

/** The resource as stored after an update, with its version as the ETag. */
function sendUpdated(res: Response, task: Task | ServiceRequest): void {
  res.setHeader('ETag', `W/"${task.meta?.versionId}"`);
  if (task.meta?.lastUpdated) res.setHeader('Last-Modified', new Date(task.meta.lastUpdated).toUTCString());
  res.type(FHIR_JSON).send(JSON.stringify(task));
}

/**
 * `PUT` and `PATCH /fhir/Task/{id}`: the FHIR door of the consult actions and the
 * referrer's cancel and answers; `PUT /fhir/ServiceRequest/{id}`: the referrer revokes its
 * referral. Mounted before `createFhirRouter`, whose catch-all refuses other writes.
 */
export function createFhirTaskRouter(deps: FhirTaskRouterDeps): Router {
  const router = Router();
  // A completed Task may contain the consult note with its attachments: the opinion route's limit.
  const limit = Math.max(deps.bodyLimitBytes, Math.ceil((5 * MAX_OPINION_ATTACHMENT_BYTES * 4) / 3) + 1_048_576);
  const fhirTypes = ['application/fhir+json', 'application/json'];
  const patchTypes = ['application/json-patch+json'];
  router.put('/fhir/Task/:id', deps.guard('PUT', '/fhir/Task/:id'), bodyOf(fhirTypes, 'application/fhir+json'), express.json({ type: fhirTypes, limit, strict: true }), async (req, res) => {
    sendUpdated(res, await updateTask(req.params.id as string, req.body, requireCaller(), deps, parseIfMatch(req.header('If-Match'))));
  });
  // The referrer revokes its referral (status revoked, the reason as a new note): the JSON cancel.
  router.put('/fhir/ServiceRequest/:id', deps.guard('PUT', '/fhir/ServiceRequest/:id'), bodyOf(fhirTypes, 'application/fhir+json'), express.json({ type: fhirTypes, limit: deps.bodyLimitBytes, strict: true }), async (req, res) => {
    sendUpdated(res, await updateServiceRequest(req.params.id as string, req.body, requireCaller(), deps, parseIfMatch(req.header('If-Match'))));
  });
  // JSON Patch (application/json-patch+json), or FHIRPath Patch (a Parameters resource, application/fhir+json).
  const patchForms = [...patchTypes, 'application/fhir+json'];
  router.patch('/fhir/Task/:id', deps.guard('PATCH', '/fhir/Task/:id'), bodyOf(patchForms, 'application/json-patch+json (JSON Patch) or application/fhir+json (FHIRPath Patch)'), express.json({ type: patchForms, limit, strict: true }), async (req, res) => {
    const form = req.is(patchTypes) ? 'json-patch' : 'fhirpath-patch';
    sendUpdated(res, await patchTask(req.params.id as string, req.body, requireCaller(), deps, parseIfMatch(req.header('If-Match')), form));
  });
  return router;
}

/**
 * `GET /fhir/Measure/{id}/$evaluate-measure`: the concordance figures of the
 * caller's own organization as a MeasureReport. Behind the bearer token (the Measure itself is
 * public, with the conformance resources); mounted before the read API.
 */
export function createMeasureRouter(deps: EvaluateMeasureDeps & { guard: Guard }): Router {
  const router = Router();
  router.get('/fhir/Measure/:id/$evaluate-measure', deps.guard('GET', '/fhir/Measure/:id/$evaluate-measure'), async (req, res) => {
    res.type(FHIR_JSON).send(JSON.stringify(await evaluateConcordanceMeasure(req.params.id as string, queryParams(req), requireCaller(), deps)));
  });
  return router;
}

/**
 * `GET /fhir/{CodeSystem|ValueSet|StructureDefinition|Measure}[/{id}]`: our conformance resources, read
 * and searched (by `url` and the rest of the conformance parameters) with no token: they are not
 * PHI, and an EHR resolving a profile it was sent has no token of ours. Mounted before the
 * bearer-token middleware, as `/fhir/metadata`.
 */
export function createConformanceRouter(deps: { catalog: ConformanceCatalog; fhirBaseUrl: string }): Router {
  const router = Router();
  for (const type of CONFORMANCE_TYPES) {
    router.get(`/fhir/${type}/:id`, (req, res) => {
      sendResource(req, res, deps.catalog.read(type, req.params.id as string));
    });
    router.get(`/fhir/${type}`, (req, res) => {
      const strict = /handling=strict/.test(req.header('Prefer') ?? '');
      res.type(FHIR_JSON).send(JSON.stringify(deps.catalog.search(type, queryParams(req), strict, deps.fhirBaseUrl)));
    });
  }
  return router;
}
