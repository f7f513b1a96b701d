import { Router, type Request, type Response } from 'express';
import type { Resource } from '@medplum/fhirtypes';
import { requireCaller } from '../auth/middleware.ts';
import { FHIR_JSON } from '../fhir/constants.ts';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import { queryParams } from '../http/query-params.ts';
import { type FhirApiDeps, readHistory, readResource, readVersion, searchResources } from './read-resources.ts';

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

  // The API is read-only for now: other methods are refused as such, not as unknown paths.
  router.all('/fhir/{*rest}', (req, res, next) => {
    if (req.method === 'GET' || req.method === 'HEAD') return next();
    res.setHeader('Allow', 'GET');
    throw new HttpOutcomeError(405, outcome([issue('not-supported', `${req.method} is not supported on /fhir; this FHIR endpoint is read-only`)]));
  });

  return router;
}
