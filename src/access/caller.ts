import { OperationOutcomeError } from '@medplum/core';
import type { OperationOutcome } from '@medplum/fhirtypes';
import type { ReferralScope } from '../auth/referral-scope.ts';
import { hasScope, type Interaction } from '../auth/scopes.ts';
import { issue, outcome } from '../fhir/outcomes.ts';
import type { Role } from '../network/network.ts';

/**
 * Who acts: the one value every door builds and every use case takes. The HTTP door resolves
 * it from the bearer token (auth/access-token.ts); a FHIR door, a job or a CLI builds the same
 * thing, so a use case never asks where a request came from, and an access rule, a transition
 * or an audit record reads the same fields whichever door was used.
 */
export interface Caller {
  /** The registered client system (SMART Backend Services client id). */
  clientId: string;
  /** The participant (organization) the client belongs to. */
  participantId: string;
  /** The participant's roles in the network: referrer, consultant, physician, auditor, admin. */
  roles: readonly string[];
  /** Granted SMART scopes. */
  scopes: readonly string[];
  /** Whose referrals the caller may read (referrers and physicians only; see auth/referral-scope.ts). */
  referrals?: ReferralScope;
  /**
   * The request (or job run) the act belongs to, for the audit trail's correlation: set by the
   * door that built the caller (the HTTP request id), absent when there is none.
   */
  requestId?: string;
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
