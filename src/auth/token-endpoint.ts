import { randomUUID } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { unstorableText } from '../fhir/unstorable-text.ts';
import { tokenEndpointUrl, type AuthDeps } from './auth-deps.ts';
import { ClientJwksUnavailableError, clientKeyResolver } from './client-keys.ts';
import { OAuthError } from './oauth-error.ts';
import { PractitionerRefused, referralScopeOf } from './referral-scope.ts';
import { grantScopes, invalidScopes, splitScopes } from './scopes.ts';
import { claimedClientId } from './token-limits.ts';
import type { TokenRefusalReason } from '../metrics/metrics.ts';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const ASSERTION_ALGORITHMS = ['RS384', 'ES384'] as const;
/** SMART: the assertion's exp SHALL be no more than five minutes in the future. */
export const MAX_ASSERTION_LIFETIME_SECONDS = 300;
/** Tolerated clock difference between the client and us, in seconds. */
export const CLOCK_SKEW_SECONDS = 60;
/** Media type of the access tokens we issue (RFC 9068), checked again on every request. */
export const ACCESS_TOKEN_TYP = 'at+jwt';

export interface TokenResponse {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  scope: string;
}

/**
 * The SMART Backend Services token request
 * (https://hl7.org/fhir/smart-app-launch/backend-services.html#obtain-access-token):
 * client_credentials grant, the client authenticated by a JWT it signed with its registered key
 * (private_key_jwt, RFC 7523), the granted scope = requested ∩ registered. Returns a short-lived
 * access token signed with the service's own key.
 *
 * Every refusal is an OAuthError; descriptions never echo the assertion.
 */
export async function issueAccessToken(form: Record<string, string>, deps: AuthDeps): Promise<TokenResponse> {
  const attempt: Attempt = {};
  const limits = deps.tokenLimits;
  const claimed = limits ? claimedClientId(form) : undefined;
  try {
    limits?.admitClient(claimed);
    const response = await issue(form, deps, attempt);
    limits?.authenticated(claimed);
    return response;
  } catch (err) {
    if (err instanceof OAuthError) {
      if (attempt.authenticated) limits?.authenticated(claimed);
      else if (isFailedClientAuthentication(err)) limits?.failedAuthentication(claimed);
      // For operators: why a client was refused (the OAuth error and its fixed-text reason, the
      // cause's type and code). Never the assertion, its claims or what the caller sent.
      deps.log.warn({ event: 'token.refused', clientId: attempt.clientId, error: err.error, err }, 'token request refused');
      deps.metrics?.tokenRefused(refusalReason(err));
    }
    throw err;
  }
}

/** The refusal as the metrics count it: the abuse limits' refusals (they carry Retry-After) are `rate_limited`. */
export function refusalReason(err: OAuthError): TokenRefusalReason {
  return err.retryAfterSeconds !== undefined || err.error === 'slow_down' ? 'rate_limited' : err.error;
}

interface Attempt {
  /** The registered client the assertion names. */
  clientId?: string;
  /** Set once the assertion verified: later refusals (scope, practitioner) are not failed authentications. */
  authenticated?: boolean;
}

/**
 * A refusal that counts towards the client's lockout: the client failed to authenticate (bad
 * signature, unknown key or client, expired, replayed...). Not the limits' own refusals, and
 * not an unreachable jwksUri, which is no evidence against the caller.
 */
function isFailedClientAuthentication(err: OAuthError): boolean {
  return err.error === 'invalid_client' && err.retryAfterSeconds === undefined && !isJwksUnavailable(err.cause);
}

async function issue(form: Record<string, string>, deps: AuthDeps, attempt: Attempt): Promise<TokenResponse> {
  const now = deps.now?.() ?? new Date();
  const nowSeconds = Math.floor(now.getTime() / 1000);

  // 1. The grant and the client authentication method.
  if (!form.grant_type) throw new OAuthError('invalid_request', 'grant_type is required');
  if (form.grant_type !== 'client_credentials') throw new OAuthError('unsupported_grant_type', 'only grant_type=client_credentials is supported');
  if (!form.client_assertion_type || !form.client_assertion) {
    throw new OAuthError('invalid_request', 'client_assertion_type and client_assertion are required (private_key_jwt client authentication)');
  }
  if (form.client_assertion_type !== CLIENT_ASSERTION_TYPE) throw new OAuthError('invalid_client', `client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`);

  // 2. Who claims to be calling: read before verifying, only to find the key to verify with.
  const assertion = form.client_assertion;
  let header: ReturnType<typeof decodeProtectedHeader>;
  let unverified: JWTPayload;
  try {
    header = decodeProtectedHeader(assertion);
    unverified = decodeJwt(assertion);
  } catch {
    throw new OAuthError('invalid_client', 'client_assertion is not a signed JWT');
  }
  if (!ASSERTION_ALGORITHMS.includes(header.alg as (typeof ASSERTION_ALGORITHMS)[number])) {
    throw new OAuthError('invalid_client', 'client_assertion alg must be RS384 or ES384');
  }
  if (typeof header.kid !== 'string' || header.kid === '') throw new OAuthError('invalid_client', 'client_assertion header must carry the kid of the signing key');
  // The header is the caller's JSON, not yet verified: a typ of null or a number is refused like any other typ.
  if (header.typ !== undefined && (typeof header.typ !== 'string' || header.typ.toUpperCase() !== 'JWT')) throw new OAuthError('invalid_client', 'client_assertion typ must be JWT');

  const clientId = unverified.iss;
  if (typeof clientId !== 'string' || clientId === '') throw new OAuthError('invalid_client', 'client_assertion must carry iss (the client_id)');
  if (unverified.sub !== clientId) throw new OAuthError('invalid_client', 'client_assertion iss and sub must both be the client_id');
  if (form.client_id !== undefined && form.client_id !== clientId) throw new OAuthError('invalid_client', 'client_id does not match the client_assertion iss');
  const registered = deps.network.findClient(clientId);
  attempt.clientId = registered ? clientId : undefined;
  if (!registered) throw new OAuthError('invalid_client', 'unknown client');
  const { participant, client } = registered;
  if (header.jku !== undefined && header.jku !== client.jwksUri) {
    throw new OAuthError('invalid_client', 'client_assertion jku does not match the JWK Set URL registered for this client');
  }

  // 3. Signature, audience, expiry (RFC 7523 §3).
  const tokenUrl = tokenEndpointUrl(deps.config);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(assertion, clientKeyResolver(client), {
      algorithms: [...ASSERTION_ALGORITHMS],
      issuer: clientId,
      subject: clientId,
      audience: tokenUrl,
      currentDate: now,
      clockTolerance: CLOCK_SKEW_SECONDS,
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'jti'],
    }));
  } catch (err) {
    throw new OAuthError('invalid_client', describeVerificationError(err, tokenUrl), { cause: err });
  }
  const exp = payload.exp as number;
  if (exp > nowSeconds + MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) {
    throw new OAuthError('invalid_client', 'client_assertion exp must be no more than 5 minutes in the future');
  }
  if (typeof payload.jti !== 'string' || payload.jti === '' || payload.jti.length > 256) {
    throw new OAuthError('invalid_client', 'client_assertion jti must be a non-empty string of at most 256 characters');
  }
  // The jti is stored (replay protection): a NUL or a lone surrogate would fail or be mangled there.
  const jtiProblem = unstorableText(payload.jti);
  if (jtiProblem) throw new OAuthError('invalid_client', `client_assertion jti ${jtiProblem}`);

  // 4. One-time use: remember the jti as long as the assertion could still be accepted.
  const usable = await deps.jtiStore.claim(clientId, payload.jti, new Date((exp + CLOCK_SKEW_SECONDS) * 1000));
  if (!usable) throw new OAuthError('invalid_client', 'client_assertion jti has already been used');
  attempt.authenticated = true;

  // 5. Scope: what was asked for, as far as the registration allows.
  const registeredScopes = splitScopes(client.scope);
  const requested = form.scope === undefined ? undefined : splitScopes(form.scope);
  if (requested) {
    const bad = invalidScopes(requested);
    if (bad.length > 0) {
      throw new OAuthError('invalid_scope', `not a supported SMART system scope: ${bad.slice(0, 5).map((s) => s.slice(0, 100)).join(' ')}`, { reason: 'not a supported SMART system scope' });
    }
  }
  const granted = grantScopes(requested, registeredScopes);
  if (granted.length === 0) throw new OAuthError('invalid_scope', `none of the requested scopes is allowed for this client; allowed: ${registeredScopes.join(' ')}`);

  // 6. Optionally, the clinician the token acts for: it then reads only that clinician's referrals.
  let practitioner: string | undefined;
  if (form.practitioner !== undefined) {
    try {
      practitioner = referralScopeOf(participant, deps.network, form.practitioner)?.requesters?.[0];
    } catch (err) {
      if (err instanceof PractitionerRefused) throw new OAuthError('invalid_request', err.message);
      throw err;
    }
  }

  // 7. The access token.
  const ttl = Math.min(deps.config.accessTokenTtlSeconds, 300);
  const scope = granted.join(' ');
  const accessToken = await new SignJWT({ client_id: clientId, participant: participant.id, scope, ...(practitioner ? { practitioner } : {}) })
    .setProtectedHeader({ alg: deps.signingKey.alg, kid: deps.signingKey.kid, typ: ACCESS_TOKEN_TYP })
    .setIssuer(deps.config.publicUrl)
    .setAudience(deps.config.publicUrl)
    .setSubject(clientId)
    .setJti(randomUUID())
    .setIssuedAt(nowSeconds)
    .setExpirationTime(nowSeconds + ttl)
    .sign(deps.signingKey.privateKey);

  deps.log.info({ event: 'token.issued', clientId, participant: participant.id, scope, expiresIn: ttl }, 'access token issued');
  deps.metrics?.tokenIssued(participant.roles);
  return { access_token: accessToken, token_type: 'bearer', expires_in: ttl, scope };
}

/** A description of why the assertion failed verification, safe to return to the client. */
function describeVerificationError(err: unknown, tokenUrl: string): string {
  if (err instanceof errors.JWTExpired) return 'client_assertion has expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'aud':
        return `client_assertion aud must be the token endpoint URL ${tokenUrl}`;
      case 'nbf':
        return 'client_assertion is not yet valid (nbf)';
      case 'iat':
        return 'client_assertion iat is invalid';
      default:
        return `client_assertion ${err.claim} claim is missing or invalid`;
    }
  }
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key registered for this client matches the client_assertion kid and alg';
  if (err instanceof errors.JWKSMultipleMatchingKeys) return 'more than one registered key matches the client_assertion kid and alg';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'client_assertion signature verification failed';
  if (isJwksUnavailable(err)) return "the client's JWK Set could not be retrieved from its registered jwksUri";
  if (err instanceof errors.JOSEAlgNotAllowed) return 'client_assertion alg must be RS384 or ES384';
  if (err instanceof errors.JWTInvalid || err instanceof errors.JWSInvalid) return 'client_assertion is not a valid JWT';
  return 'client_assertion could not be verified';
}

/** The client's registered jwksUri could not be fetched or read. */
function isJwksUnavailable(err: unknown): boolean {
  return err instanceof ClientJwksUnavailableError || err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || (err instanceof errors.JOSEError && /JSON Web Key Set/i.test(err.message));
}
