/**
 * Test helpers for SMART Backend Services: sign client assertions and obtain access tokens from
 * a running service with the EXAMPLE client keys shipped in examples/keys/.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import type { AuthDeps } from '../../src/auth/auth-deps.ts';
import { createMemoryJtiStore, type JtiStore } from '../../src/auth/jti-store.ts';
import { importSigningKey, type ServiceSigningKey } from '../../src/auth/signing-key.ts';
import { createLogger } from '../../src/log/logger.ts';
import { loadNetwork, type Network } from '../../src/network/network.ts';

export const EXAMPLE_KEYS_DIR = fileURLToPath(new URL('../../examples/keys/', import.meta.url));
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export interface ClientAssertionOptions {
  clientId: string;
  /** The client's private JWK (kid and alg are taken from it unless given). */
  privateJwk: JWK;
  /** The `aud`: the token endpoint URL. */
  tokenUrl: string;
  alg?: string;
  kid?: string;
  /** Seconds until `exp`; default 120. Negative for an already expired assertion. */
  expiresInSeconds?: number;
  jti?: string;
  /** The clock; default now. */
  now?: Date;
  /** Claims to add or override (e.g. `{ sub: 'someone-else' }`; `undefined` removes a claim). */
  claims?: Record<string, unknown>;
  /** Protected header members to add or override (e.g. `{ jku: ... }`). */
  header?: Record<string, unknown>;
}

/** The example private JWK of `clientId` (examples/keys/<clientId>.private.jwk.json). */
export async function loadExamplePrivateJwk(clientId: string): Promise<JWK> {
  const jwk = JSON.parse(await readFile(`${EXAMPLE_KEYS_DIR}${clientId}.private.jwk.json`, 'utf8')) as JWK & { _comment?: string };
  delete jwk._comment;
  return jwk;
}

/** Signs a SMART client assertion (iss = sub = clientId, aud = tokenUrl, exp, jti). */
export async function signClientAssertion(opts: ClientAssertionOptions): Promise<string> {
  const alg = opts.alg ?? opts.privateJwk.alg ?? (opts.privateJwk.kty === 'RSA' ? 'RS384' : 'ES384');
  const kid = opts.kid ?? opts.privateJwk.kid;
  const nowSeconds = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  const claims: Record<string, unknown> = {
    iss: opts.clientId,
    sub: opts.clientId,
    aud: opts.tokenUrl,
    exp: nowSeconds + (opts.expiresInSeconds ?? 120),
    jti: opts.jti ?? randomUUID(),
    ...opts.claims,
  };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  const key = await importJWK({ ...opts.privateJwk, alg }, alg);
  return new SignJWT(claims)
    .setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}), ...opts.header })
    .sign(key);
}

export interface TokenRequestOptions {
  /** Requested scope; omitted from the form when undefined (the registered scopes are granted). */
  scope?: string;
  /** The assertion `aud`; default `${baseUrl}/auth/token`. */
  tokenUrl?: string;
  /** Use this key instead of the example key of `clientId`. */
  privateJwk?: JWK;
}

/** POSTs a form to `${baseUrl}/auth/token`; returns the status and JSON body, whatever they are. */
export async function postTokenRequest(baseUrl: string, form: Record<string, string>): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${baseUrl}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(form).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

/** The form of a valid SMART Backend Services token request for `clientId`. */
export async function clientCredentialsForm(baseUrl: string, clientId: string, opts: TokenRequestOptions = {}): Promise<Record<string, string>> {
  const privateJwk = opts.privateJwk ?? (await loadExamplePrivateJwk(clientId));
  const assertion = await signClientAssertion({ clientId, privateJwk, tokenUrl: opts.tokenUrl ?? `${baseUrl}/auth/token` });
  return {
    grant_type: 'client_credentials',
    client_assertion_type: CLIENT_ASSERTION_TYPE,
    client_assertion: assertion,
    ...(opts.scope !== undefined ? { scope: opts.scope } : {}),
  };
}

/**
 * Gets an access token for `clientId` from the service at `baseUrl`, signing with the example
 * key of that client. Throws with the OAuth error when the service refuses.
 */
export async function getAccessToken(baseUrl: string, clientId: string, opts: TokenRequestOptions = {}): Promise<string> {
  const { status, body } = await postTokenRequest(baseUrl, await clientCredentialsForm(baseUrl, clientId, opts));
  if (status !== 200 || typeof body.access_token !== 'string') {
    throw new Error(`token request for ${clientId} failed: HTTP ${status} ${String(body.error)}: ${String(body.error_description)}`);
  }
  return body.access_token;
}

/** A throwaway service signing key (ES384 unless RS384 is asked for). */
export async function generateServiceSigningKey(alg: 'ES384' | 'RS384' = 'ES384'): Promise<ServiceSigningKey> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return importSigningKey(await exportJWK(privateKey));
}

/** A fresh key pair for a test client: the private JWK to sign with and the public JWK to register. */
export async function generateClientKey(alg: 'ES384' | 'RS384' = 'ES384', kid = `test-${alg}`): Promise<{ privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return {
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
  };
}

export interface TestAuthDepsOptions {
  publicUrl?: string;
  network?: Network;
  accessTokenTtlSeconds?: number;
  now?: () => Date;
  /** Where log lines go (one JSON object per line); default: discarded. */
  logLines?: string[];
}

/** AuthDeps over the example network, a memory JtiStore and a throwaway signing key. */
export async function createTestAuthDeps(opts: TestAuthDepsOptions = {}): Promise<AuthDeps & { jtiStore: JtiStore }> {
  const lines = opts.logLines;
  const log = createLogger({
    level: lines ? 'debug' : 'silent',
    destination: { write: (line: string) => void lines?.push(line) },
  });
  return {
    config: { publicUrl: opts.publicUrl ?? 'https://so.example', accessTokenTtlSeconds: opts.accessTokenTtlSeconds ?? 300 },
    network: opts.network ?? (await loadNetwork()),
    signingKey: await generateServiceSigningKey(),
    jtiStore: createMemoryJtiStore(),
    ...(opts.now ? { now: opts.now } : {}),
    log,
  };
}
