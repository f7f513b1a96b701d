import express, { Router, type RequestHandler } from 'express';
import type { Guard } from '../access/route-guard.ts';
import { requireCaller } from '../auth/middleware.ts';
import { FHIR_JSON } from '../fhir/constants.ts';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import { queryParams } from '../http/query-params.ts';
import {
  createSubscription,
  deleteSubscription,
  readSubscription,
  searchSubscriptions,
  subscriptionEventsOf,
  subscriptionStatusesOf,
  subscriptionStatusOf,
  type SubscriptionDeps,
} from './subscriptions.ts';

export interface SubscriptionRouterDeps extends SubscriptionDeps {
  guard: Guard;
  bodyLimitBytes: number;
}

const JSON_TYPES = ['application/json', 'application/fhir+json'];

const requireJson: RequestHandler = (req, _res, next) => {
  if (!req.is(JSON_TYPES)) throw new HttpOutcomeError(415, outcome([issue('not-supported', 'Content-Type must be application/fhir+json or application/json')]));
  next();
};

/**
 * The FHIR Subscription door (Subscriptions R5 Backport IG): create, read, search
 * and delete of the caller's own Subscriptions, `$status` (of one, or at the type level of
 * several) and `$events`; reads, `$status` and `$events` are audited by the use cases. Parses, calls one use
 * case (subscriptions/subscriptions.ts), sends. Mounted before the generic FHIR read routes.
 */
export function createSubscriptionRouter(deps: SubscriptionRouterDeps): Router {
  const router = Router();
  const json = express.json({ type: JSON_TYPES, limit: deps.bodyLimitBytes, strict: true });
  const send = (res: express.Response, body: unknown) => res.type(FHIR_JSON).send(JSON.stringify(body));

  router.post('/fhir/Subscription', deps.guard('POST', '/fhir/Subscription'), requireJson, json, async (req, res) => {
    const created = await createSubscription(req.body, requireCaller(), deps);
    res.status(201).setHeader('Location', `${deps.fhirBaseUrl}/Subscription/${created.id}`);
    send(res, created);
  });
  router.get('/fhir/Subscription', deps.guard('GET', '/fhir/Subscription'), async (req, res) => {
    send(res, await searchSubscriptions(queryParams(req), requireCaller(), deps));
  });
  // Type level, before `/:id`: the statuses of several of the caller's own Subscriptions.
  router.get('/fhir/Subscription/$status', deps.guard('GET', '/fhir/Subscription/$status'), async (req, res) => {
    send(res, await subscriptionStatusesOf(queryParams(req), requireCaller(), deps));
  });
  router.get('/fhir/Subscription/:id/$status', deps.guard('GET', '/fhir/Subscription/:id/$status'), async (req, res) => {
    send(res, await subscriptionStatusOf(req.params.id as string, requireCaller(), deps));
  });
  router.get('/fhir/Subscription/:id/$events', deps.guard('GET', '/fhir/Subscription/:id/$events'), async (req, res) => {
    send(res, await subscriptionEventsOf(req.params.id as string, queryParams(req), requireCaller(), deps));
  });
  router.get('/fhir/Subscription/:id', deps.guard('GET', '/fhir/Subscription/:id'), async (req, res) => {
    send(res, await readSubscription(req.params.id as string, requireCaller(), deps));
  });
  router.delete('/fhir/Subscription/:id', deps.guard('DELETE', '/fhir/Subscription/:id'), async (req, res) => {
    await deleteSubscription(req.params.id as string, requireCaller(), deps);
    res.status(204).end();
  });
  return router;
}
