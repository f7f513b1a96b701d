/**
 * The sandbox EHR's token endpoint: SMART Backend Services (client_credentials grant with a
 * private_key_jwt client assertion), as a referring EHR would run it, so the service's outbound
 * authentication is exercised for real.
 * Spec: https://hl7.org/fhir/smart-app-launch/backend-services.html#obtaining-an-access-token
 */
import { randomBytes } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { SandboxClient } from './clients.ts';
import { DEFAULT_REGISTERED_SCOPE, grantScope } from './scopes.ts';

/** The assertion type SMART requires. */
export const JWT_BEARER_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** Longest assertion lifetime accepted (SMART: "no more than five minutes in the future"). */
const MAX_ASSERTION_LIFETIME_S = 300;
const CLOCK_SKEW_S = 30;

/** The outcome of a token request: the HTTP status and the JSON body to send. */
export interface TokenResponse {
  status: number;
  body: Record<string, unknown>;
}

/** What the sandbox knows about an access token it issued. */
export interface IssuedToken {
  clientId: string;
  /** The `kid` of the key the client assertion was signed with. */
  kid?: string;
  scope: string;
  expiresAt: number;
}

/** Token issuing and checking for one sandbox instance. */
export interface TokenService {
  /** Handles the form of `POST /auth/token`. */
  issue(form: URLSearchParams): Promise<TokenResponse>;
  /** The token behind an `Authorization: Bearer …` header, when valid and unexpired. */
  check(authorization: string | undefined): IssuedToken | undefined;
  /** Every token issued (token → details), for test assertions. */
  readonly issued: ReadonlyMap<string, IssuedToken>;
}

export interface TokenServiceOptions {
  clients: SandboxClient[];
  /** The token endpoint URL, the required assertion `aud` (known once the server listens). */
  tokenUrl: () => string;
  /** `expires_in` of issued tokens; default 300. */
  ttlSeconds?: number;
  /** Accept clients registered by JWK Set URL only (as Medplum and most EHR vendors): a client registered by `jwks` is refused. */
  jwksUriOnly?: boolean;
  /**
   * Grant only what the request asks AND the client's registration allows (the `enforceScopes`
   * switch, strict.ts); otherwise whatever is asked is granted, the registration when nothing is.
   */
  grantRegisteredOnly?: boolean;
  now?: () => number;
}

function oauthError(status: number, error: string, description: string): TokenResponse {
  return { status, body: { error, error_description: description } };
}

/**
 * Creates the token service: verifies the assertion's signature against the client's registered
 * JWKS or JWK Set URL (RS384/ES384 only; with `jwksUriOnly`, URL only), `iss` = `sub` = client
 * id, `aud` = the token URL exactly (on a loopback host, under any of its loopback names), `exp` at most five minutes ahead, and refuses a `jti`
 * already seen; then issues an opaque access token whose granted scope the response states
 * (clients compare it with what they need).
 */
export function createTokenService(opts: TokenServiceOptions): TokenService {
  const now = opts.now ?? Date.now;
  const ttl = opts.ttlSeconds ?? 300;
  const clients = new Map(opts.clients.map((c) => [c.clientId, { ...c, keySet: clientKeySet(c) }]));
  const seenJti = new Map<string, number>();
  const issued = new Map<string, IssuedToken>();

  async function issue(form: URLSearchParams): Promise<TokenResponse> {
    if (form.get('grant_type') !== 'client_credentials') return oauthError(400, 'unsupported_grant_type', 'grant_type must be client_credentials');
    if (form.get('client_assertion_type') !== JWT_BEARER_ASSERTION_TYPE) return oauthError(400, 'invalid_request', 'client_assertion_type must be jwt-bearer');
    const assertion = form.get('client_assertion');
    if (!assertion) return oauthError(400, 'invalid_request', 'client_assertion is required');
    let iss: unknown;
    try {
      iss = decodeJwt(assertion).iss;
    } catch {
      return oauthError(400, 'invalid_request', 'client_assertion is not a JWT');
    }
    const client = typeof iss === 'string' ? clients.get(iss) : undefined;
    if (!client) return oauthError(401, 'invalid_client', 'unknown client');
    if (opts.jwksUriOnly && client.jwksUri === undefined) return oauthError(401, 'invalid_client', 'client keys must be registered by JWK Set URL');
    let payload;
    let protectedHeader;
    try {
      ({ payload, protectedHeader } = await jwtVerify(assertion, client.keySet, {
        algorithms: ['RS384', 'ES384'],
        issuer: client.clientId,
        subject: client.clientId,
        audience: loopbackAliases(opts.tokenUrl()),
        requiredClaims: ['exp', 'jti'],
        clockTolerance: CLOCK_SKEW_S,
        currentDate: new Date(now()),
      }));
    } catch (err) {
      // A wrong audience in Medplum's words: the usual cause is a tokenUrl not written exactly as the server's.
      if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'aud') return oauthError(401, 'invalid_client', 'Invalid client assertion audience');
      const reason = err instanceof joseErrors.JOSEError ? err.code : 'invalid';
      return oauthError(401, 'invalid_client', `client assertion rejected (${reason})`);
    }
    const nowS = Math.floor(now() / 1000);
    if ((payload.exp ?? 0) > nowS + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S) return oauthError(401, 'invalid_client', 'client assertion exp is more than 5 minutes ahead');
    for (const [jti, exp] of seenJti) if (exp < nowS - CLOCK_SKEW_S) seenJti.delete(jti);
    const jtiKey = `${client.clientId} ${String(payload.jti)}`;
    if (seenJti.has(jtiKey)) return oauthError(401, 'invalid_client', 'client assertion jti already used');
    seenJti.set(jtiKey, payload.exp ?? nowS);

    const registered = client.scope ?? DEFAULT_REGISTERED_SCOPE;
    const scope = opts.grantRegisteredOnly ? grantScope(form.get('scope'), registered) : form.get('scope') || registered;
    if (!scope) return oauthError(400, 'invalid_scope', 'none of the requested scopes is registered for this client');
    const token = randomBytes(24).toString('base64url');
    issued.set(token, { clientId: client.clientId, ...(protectedHeader.kid ? { kid: protectedHeader.kid } : {}), scope, expiresAt: now() + ttl * 1000 });
    return { status: 200, body: { access_token: token, token_type: 'bearer', expires_in: ttl, scope } };
  }

  function check(authorization: string | undefined): IssuedToken | undefined {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
    const token = match ? issued.get(match[1]!) : undefined;
    return token && token.expiresAt > now() ? token : undefined;
  }

  return { issue, check, issued };
}

const LOOPBACK_HOSTS = ['127.0.0.1', 'localhost', '[::1]'];

/**
 * The audiences accepted for the token URL: the URL itself and, on a loopback host, the same URL
 * under the other loopback names (`http://localhost:8090/auth/token` and
 * `http://127.0.0.1:8090/auth/token` name the same endpoint to whoever runs the sandbox locally).
 */
export function loopbackAliases(tokenUrl: string): string[] {
  const url = new URL(tokenUrl);
  if (!LOOPBACK_HOSTS.includes(url.hostname)) return [tokenUrl];
  return [tokenUrl, ...LOOPBACK_HOSTS.filter((h) => h !== url.hostname).map((host) => tokenUrl.replace(`//${url.host}`, `//${host}${url.port ? `:${url.port}` : ''}`))];
}

/**
 * The key resolver of a client: its `jwks`, or its `jwksUri` fetched with jose's remote set
 * (cached; an unknown `kid` fetches again at once, where real servers wait a cooldown: the
 * sandbox must see a rotated key on the first assertion it signs). A URL given as a function is
 * read at each assertion, and a new URL starts a new set.
 */
function clientKeySet(client: SandboxClient): JWTVerifyGetKey {
  const uri = client.jwksUri;
  if (uri === undefined) return createLocalJWKSet(client.jwks ?? { keys: [] });
  let remote: { url: string; keySet: JWTVerifyGetKey } | undefined;
  return (header, token) => {
    const url = typeof uri === 'string' ? uri : uri();
    if (remote?.url !== url) remote = { url, keySet: createRemoteJWKSet(new URL(url), { cooldownDuration: 0, timeoutDuration: 5_000 }) };
    return remote.keySet(header, token);
  };
}
