import { randomUUID } from 'node:crypto';
import { importJWK, SignJWT, type CryptoKey, type JWK, type KeyObject } from 'jose';
import { z } from 'zod';
import { OutboundAuthError, retryAtFrom, transportFailure } from './outbound-errors.ts';

/** Gives a bearer token for outbound FHIR calls; `invalidate` drops a token the server refused (401). */
export interface TokenSource {
  getToken(): Promise<string>;
  /** Forgets `token` if it is the cached one, so the next getToken() fetches a fresh one. */
  invalidate(token: string): void;
}

export type SmartAlg = 'RS384' | 'ES384';

export interface SmartTokenSourceOptions {
  /**
   * The EHR's token endpoint; also the assertion's `aud`, exactly as written in the network file
   * (no trailing slash added or dropped: servers such as Medplum compare it byte for byte).
   */
  tokenUrl: string;
  /** Our client_id at that EHR; the assertion's `iss` and `sub`. */
  clientId: string;
  /** Space-separated scopes to request (e.g. `system/DocumentReference.rs system/Consent.r`). */
  scope: string;
  /** The private key registered (as its public half) with the EHR. */
  privateKey?: CryptoKey | KeyObject | JWK;
  alg?: SmartAlg;
  /** `kid` header; defaults to the JWK's `kid`. The EHR picks the public key by it. */
  kid?: string;
  /**
   * Picks the key of each assertion instead of `privateKey`/`alg`/`kid`: with key rotation the
   * key that signs changes at a date (outbound-keys.ts). May throw when no key may sign.
   */
  currentKey?: () => { privateKey: CryptoKey | KeyObject; alg: SmartAlg; kid: string };
  fetch?: typeof globalThis.fetch;
  /** Clock in milliseconds (tests move it to expire tokens). */
  now?: () => number;
  /** Refresh this many seconds before `expires_in` runs out, so a token never expires mid-call. */
  refreshSkewSeconds?: number;
  timeoutMs: number;
  /**
   * Told the scopes each token was granted: the response's `scope`, or the requested scope when
   * the response names none (RFC 6749 §5.1: then it is the one requested).
   */
  onGranted?: (scopes: readonly string[]) => void;
}

/** SMART Backend Services: the client assertion lives at most 5 minutes. */
const ASSERTION_LIFETIME_SECONDS = 300;
/** When the server omits `expires_in`, assume SMART's recommended 5 minutes. */
const DEFAULT_EXPIRES_IN_SECONDS = 300;

const TokenResponseSchema = z.looseObject({
  access_token: z.string().min(1),
  token_type: z.string().regex(/^bearer$/i),
  expires_in: z.coerce.number().positive().optional(),
});

/**
 * A SMART Backend Services token source (private_key_jwt,
 * https://hl7.org/fhir/smart-app-launch/backend-services.html#obtaining-an-access-token).
 *
 * Why our own rather than MedplumClient's login: MedplumClient cannot sign the assertion, sends
 * no `scope` and cannot re-sign on 401. Like SMART client-js, tokens are cached until
 * `expires_in − refreshSkewSeconds` and refreshed single-flight: any number of concurrent
 * getToken() calls share one token request. A failed request is not cached; the next call
 * tries again. Neither the assertion nor the token ever appears in an error message.
 */
export function createSmartTokenSource(options: SmartTokenSourceOptions): TokenSource {
  const fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const now = options.now ?? Date.now;
  const skewMs = (options.refreshSkewSeconds ?? 30) * 1000;
  let keyPromise: Promise<CryptoKey | KeyObject | Uint8Array> | undefined;
  let cached: { token: string; refreshAt: number } | undefined;
  let inflight: Promise<string> | undefined;

  const fixedKey = async () => {
    const { privateKey, alg } = options;
    if (!privateKey || !alg) throw new TypeError('createSmartTokenSource needs privateKey and alg, or currentKey');
    keyPromise ??= isJwk(privateKey) ? importJWK(privateKey, alg) : Promise.resolve(privateKey);
    return { privateKey: await keyPromise, alg, kid: options.kid ?? (isJwk(privateKey) ? privateKey.kid : undefined) };
  };

  async function signAssertion(): Promise<string> {
    const { privateKey, alg, kid } = options.currentKey ? options.currentKey() : await fixedKey();
    const iat = Math.floor(now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}) })
      .setIssuer(options.clientId)
      .setSubject(options.clientId)
      .setAudience(options.tokenUrl)
      .setJti(randomUUID())
      .setIssuedAt(iat)
      .setExpirationTime(iat + ASSERTION_LIFETIME_SECONDS)
      .sign(privateKey);
  }

  async function requestToken(): Promise<string> {
    const assertion = await signAssertion();
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      scope: options.scope,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    });
    const startedAt = now();
    let response: Response;
    let json: unknown;
    try {
      response = await fetchFn(options.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: body.toString(),
        signal: AbortSignal.timeout(options.timeoutMs),
        redirect: 'error',
      });
      json = await response.json().catch(() => undefined);
    } catch (err) {
      throw new OutboundAuthError({ status: 0, failure: transportFailure(err), tokenUrl: options.tokenUrl, cause: err });
    }
    if (!response.ok) {
      // RFC 6749 §5.2: `error` (a code) and `error_description` (text for the developer).
      const answer = (json ?? {}) as { error?: unknown; error_description?: unknown };
      const oauthError = typeof answer.error === 'string' ? answer.error : undefined;
      const description = typeof answer.error_description === 'string' ? answer.error_description : undefined;
      const retryAt = retryAtFrom(response.status, response.headers.get('retry-after'), now());
      throw new OutboundAuthError({
        status: response.status,
        failure: 'http',
        tokenUrl: options.tokenUrl,
        ...(oauthError ? { oauthError: sanitizeCode(oauthError) } : {}),
        // Sanitised in the error (outbound-errors.ts); the assertion we sent is removed if it was quoted back.
        ...(description ? { oauthErrorDescription: description, secrets: [assertion] } : {}),
        ...(retryAt ? { retryAt } : {}),
      });
    }
    const parsed = TokenResponseSchema.safeParse(json);
    if (!parsed.success) {
      throw new OutboundAuthError({ status: response.status, failure: 'http', tokenUrl: options.tokenUrl, oauthError: 'invalid_token_response' });
    }
    const granted = typeof parsed.data.scope === 'string' ? parsed.data.scope : options.scope;
    options.onGranted?.(granted.split(' ').filter(Boolean));
    const expiresInMs = (parsed.data.expires_in ?? DEFAULT_EXPIRES_IN_SECONDS) * 1000;
    // A lifetime shorter than the skew is used for this call only, never cached.
    const refreshAt = startedAt + expiresInMs - skewMs;
    cached = refreshAt > now() ? { token: parsed.data.access_token, refreshAt } : undefined;
    return parsed.data.access_token;
  }

  return {
    getToken(): Promise<string> {
      if (cached && now() < cached.refreshAt) return Promise.resolve(cached.token);
      inflight ??= requestToken().finally(() => {
        inflight = undefined;
      });
      return inflight;
    },
    invalidate(token: string): void {
      if (cached?.token === token) cached = undefined;
    },
  };
}

function isJwk(key: unknown): key is JWK {
  return typeof key === 'object' && key !== null && typeof (key as { kty?: unknown }).kty === 'string';
}

/** OAuth error codes are `%x20-21 / %x23-5B / %x5D-7E`; keep messages to that and short. */
function sanitizeCode(code: string): string {
  return code.replace(/[^\x21\x23-\x5b\x5d-\x7e]/g, '').slice(0, 64);
}
