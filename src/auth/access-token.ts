import { OperationOutcomeError, unauthorizedTokenExpired } from '@medplum/core';
import type { OperationOutcome } from '@medplum/fhirtypes';
import { errors, jwtVerify } from 'jose';
import type { Caller } from '../access/caller.ts';
import type { Network } from '../network/network.ts';
import type { AuthDeps } from './auth-deps.ts';
import { PractitionerRefused, type ReferralScope, referralScopeOf } from './referral-scope.ts';
import { grantScopes, splitScopes } from './scopes.ts';
import type { ServiceSigningKey } from './signing-key.ts';
import { ACCESS_TOKEN_TYP } from './token-endpoint.ts';
import { issue, outcome } from '../fhir/outcomes.ts';

export type AccessTokenDeps = Pick<AuthDeps, 'config' | 'network' | 'signingKey' | 'now'>;

/** Verified tokens kept in memory; beyond this the oldest entries are dropped. */
export const TOKEN_CACHE_MAX_ENTRIES = 10_000;

interface CachedToken {
  clientId: string;
  participantId: string;
  scopes: readonly string[];
  /** The clinician the token was issued for (absolute Practitioner URL), if any. */
  practitioner?: string;
  /** Expiry in ms since the epoch. */
  expiresAt: number;
  /** The caller as resolved against `network`; recomputed when the network object changes. */
  caller?: { network: Network; value: Caller };
}

/** One cache per service key: a rotated key starts empty. Not a module singleton with a lifecycle. */
const caches = new WeakMap<ServiceSigningKey, Map<string, CachedToken>>();

/** A 401 OperationOutcome (`id: unauthorized`, so the error handler maps it to 401) with a reason. */
export function unauthorizedOutcome(text: string): OperationOutcome {
  return outcome([issue('login', text)], 'unauthorized');
}

/**
 * Verifies a bearer token this service issued (signature, `typ`, iss, aud, exp) and resolves who
 * is calling. Roles come from the network as it is now, not from the token, and the token's
 * scopes are narrowed to what the client is still registered for, so removing a client or a
 * role takes effect at once. Verified tokens are cached until they expire because this runs on
 * every request.
 *
 * Throws OperationOutcomeError 401 for anything else.
 */
export async function verifyAccessToken(token: string, deps: AccessTokenDeps): Promise<Caller> {
  const nowMs = (deps.now?.() ?? new Date()).getTime();
  let cache = caches.get(deps.signingKey);
  if (!cache) {
    cache = new Map();
    caches.set(deps.signingKey, cache);
  }

  let entry = cache.get(token);
  if (entry && entry.expiresAt <= nowMs) {
    cache.delete(token);
    throw new OperationOutcomeError(unauthorizedTokenExpired);
  }
  if (!entry) {
    entry = await verify(token, deps, nowMs);
    remember(cache, token, entry, nowMs);
  }
  if (entry.caller?.network === deps.network) return entry.caller.value;
  const caller = resolveCaller(entry, deps.network);
  entry.caller = { network: deps.network, value: caller };
  return caller;
}

async function verify(token: string, deps: AccessTokenDeps, nowMs: number): Promise<CachedToken> {
  try {
    const { payload } = await jwtVerify(token, deps.signingKey.publicKey, {
      algorithms: [deps.signingKey.alg],
      typ: ACCESS_TOKEN_TYP,
      issuer: deps.config.publicUrl,
      audience: deps.config.publicUrl,
      currentDate: new Date(nowMs),
      requiredClaims: ['exp', 'sub', 'jti'],
    });
    const { client_id: clientId, participant, scope, sub, exp, practitioner } = payload;
    if (typeof clientId !== 'string' || clientId !== sub || typeof participant !== 'string' || typeof scope !== 'string' || (practitioner !== undefined && typeof practitioner !== 'string')) {
      throw new OperationOutcomeError(unauthorizedOutcome('Invalid access token'));
    }
    return { clientId, participantId: participant, scopes: splitScopes(scope), ...(practitioner ? { practitioner } : {}), expiresAt: (exp as number) * 1000 };
  } catch (err) {
    if (err instanceof OperationOutcomeError) throw err;
    if (err instanceof errors.JWTExpired) throw new OperationOutcomeError(unauthorizedTokenExpired);
    throw new OperationOutcomeError(unauthorizedOutcome('Invalid access token'));
  }
}

function resolveCaller(entry: CachedToken, network: Network): Caller {
  const registered = network.findClient(entry.clientId);
  if (!registered || registered.participant.id !== entry.participantId) {
    throw new OperationOutcomeError(unauthorizedOutcome('The client of this access token is not registered in the network'));
  }
  // Never widen: an empty scope list would make grantScopes return the whole registration.
  const scopes = entry.scopes.length === 0 ? [] : grantScopes(entry.scopes, splitScopes(registered.client.scope));
  let referrals: ReferralScope | undefined;
  try {
    referrals = referralScopeOf(registered.participant, network, entry.practitioner);
  } catch (err) {
    // The participant no longer acts for that clinician (network changed): the token is void.
    if (err instanceof PractitionerRefused) throw new OperationOutcomeError(unauthorizedOutcome('The practitioner of this access token is no longer registered for the client'));
    throw err;
  }
  return Object.freeze({
    clientId: entry.clientId,
    participantId: registered.participant.id,
    roles: Object.freeze([...registered.participant.roles]),
    scopes: Object.freeze(scopes),
    ...(referrals ? { referrals: Object.freeze(referrals) } : {}),
  });
}

function remember(cache: Map<string, CachedToken>, token: string, entry: CachedToken, nowMs: number): void {
  if (cache.size >= TOKEN_CACHE_MAX_ENTRIES) {
    for (const [key, value] of cache) if (value.expiresAt <= nowMs) cache.delete(key);
    // Still full: drop the oldest (Map iterates in insertion order).
    while (cache.size >= TOKEN_CACHE_MAX_ENTRIES) {
      const oldest = cache.keys().next().value;
      if (oldest === undefined) break;
      cache.delete(oldest);
    }
  }
  cache.set(token, entry);
}
