import { OperationOutcomeError } from '@medplum/core';
import type { RequestHandler } from 'express';
import type { Caller } from '../access/caller.ts';
import { getContext } from '../http/context.ts';
import { type AccessTokenDeps, unauthorizedOutcome, verifyAccessToken } from './access-token.ts';

export const AUTH_REALM = 'second-opinion';

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * Requires `Authorization: Bearer <access token>` (RFC 6750) and puts the resolved caller into
 * the request context (`getContext().caller`) and `res.locals.caller`.
 *
 * Refusals are 401 OperationOutcomes with `WWW-Authenticate` (RFC 6750 §3): with no credentials
 * at all it carries only the realm (§3.1 says not to add an error code then); with a bad, expired
 * or unknown token it adds `error="invalid_token"`.
 */
export function createAuthMiddleware(deps: AccessTokenDeps): RequestHandler {
  return async (req, res, next) => {
    const header = req.headers.authorization;
    if (!header) {
      res.setHeader('WWW-Authenticate', `Bearer realm="${AUTH_REALM}"`);
      throw new OperationOutcomeError(unauthorizedOutcome('An access token is required (Authorization: Bearer <token>); get one from /auth/token'));
    }
    const match = BEARER.exec(header);
    if (!match) {
      res.setHeader('WWW-Authenticate', `Bearer realm="${AUTH_REALM}", error="invalid_request", error_description="expected Authorization: Bearer <token>"`);
      throw new OperationOutcomeError(unauthorizedOutcome('The Authorization header must be "Bearer <access token>"'));
    }
    let caller: Caller;
    try {
      caller = await verifyAccessToken(match[1] as string, deps);
    } catch (err) {
      if (err instanceof OperationOutcomeError) {
        const reason = err.outcome.issue?.some((i) => i.code === 'expired') ? 'The access token expired' : 'The access token is invalid';
        res.setHeader('WWW-Authenticate', `Bearer realm="${AUTH_REALM}", error="invalid_token", error_description="${reason}"`);
      }
      throw err;
    }
    // The HTTP door's caller: who the token says, and which request this is (audit correlation).
    const ctx = getContext();
    if (ctx) caller = { ...caller, requestId: ctx.requestId };
    res.locals.caller = caller;
    if (ctx) ctx.caller = caller;
    next();
  };
}

/** The authenticated caller of the current request; 401 when the auth middleware did not run. */
export function requireCaller(): Caller {
  const caller = getContext()?.caller;
  if (!caller) throw new OperationOutcomeError(unauthorizedOutcome('An access token is required'));
  return caller;
}
