import { OperationOutcomeError } from '@medplum/core';
import type { OperationOutcome } from '@medplum/fhirtypes';
import type { RequestHandler } from 'express';
import { getContext, type Caller } from '../http/context.ts';
import type { Role } from '../network/network.ts';
import { type AccessTokenDeps, unauthorizedOutcome, verifyAccessToken } from './access-token.ts';
import { hasScope, type Interaction } from './scopes.ts';
import { issue, outcome } from '../fhir/outcomes.ts';

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
    res.locals.caller = caller;
    const ctx = getContext();
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

/** A 403 OperationOutcome (`id: forbidden`, so the error handler maps it to 403) with a reason. */
export function forbiddenOutcome(text: string): OperationOutcome {
  return outcome([issue('forbidden', text)], 'forbidden');
}

/** Requires the caller's participant to hold `role` (or one of `role` when given a list). */
export function requireRole(caller: Caller, role: Role | readonly Role[]): void {
  const needed: readonly Role[] = typeof role === 'string' ? [role] : role;
  if (needed.some((r) => caller.roles.includes(r))) return;
  const want = needed.length === 1 ? `the ${needed[0]} role` : `one of the roles ${needed.join(', ')}`;
  throw new OperationOutcomeError(
    forbiddenOutcome(`This operation requires ${want}; participant ${caller.participantId} has ${caller.roles.length > 0 ? caller.roles.join(', ') : 'no roles'}`),
  );
}

/** Requires a granted SMART scope permitting `interaction` (c r u d s) on `resourceType`. */
export function requireScope(caller: Caller, resourceType: string, interaction: Interaction): void {
  if (hasScope(caller.scopes, resourceType, interaction)) return;
  throw new OperationOutcomeError(
    forbiddenOutcome(
      `This operation requires scope system/${resourceType}.${interaction} (or a scope that includes it, e.g. system/*.${interaction}); granted: ${caller.scopes.join(' ') || 'none'}`,
    ),
  );
}
