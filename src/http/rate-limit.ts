import type { Request, RequestHandler, Response } from 'express';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import { addressKey } from '../limits/client-address.ts';
import { getContext } from './context.ts';
import type { RateDecision, RateLimiter } from '../limits/rate-limiter.ts';

/**
 * Per-address limit of the API, before authentication: bounds what one address can make the
 * service do (token verification, 401s, 404s) whoever it claims to be. `except` leaves out
 * routes with limits of their own (the token endpoint answers OAuth errors, not FHIR).
 */
export function rateLimitByAddress(limiter: RateLimiter, options: { except?: (req: Request) => boolean } = {}): RequestHandler {
  return (req, res, next) => {
    if (!limiter.enabled || options.except?.(req)) return next();
    refuseWhenThrottled(res, limiter.take(addressKey(req.ip)), 'from this address');
    next();
  };
}

/**
 * Per-client limit of the API, after authentication: keyed on the authenticated client id
 * (the caller in the request context), so one client system cannot take the whole service
 * whatever address it calls from. Mount right after the auth middleware.
 */
export function rateLimitByClient(limiter: RateLimiter): RequestHandler {
  return (_req, res, next) => {
    const clientId = getContext()?.caller?.clientId;
    if (limiter.enabled && clientId !== undefined) refuseWhenThrottled(res, limiter.take(clientId), 'from this client');
    next();
  };
}

/**
 * 429 with `Retry-After` (RFC 6585 §4, RFC 9110 §10.2.3) and an OperationOutcome `throttled`,
 * through the one error handler like every other refusal.
 */
function refuseWhenThrottled(res: Response, decision: RateDecision, whose: string): void {
  if (decision.allowed) return;
  res.setHeader('Retry-After', String(decision.retryAfterSeconds));
  throw new HttpOutcomeError(429, outcome([issue('throttled', `Too many requests ${whose}; retry after ${decision.retryAfterSeconds} s`)]));
}
