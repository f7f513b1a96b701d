/**
 * Sandbox EHR configuration: the client systems its token endpoint accepts by default.
 *
 * The default client is this service's outbound client (`second-opinion-service`); its EXAMPLE
 * private key is committed at examples/keys/service-outbound.private.jwk.json (never use it in
 * production) and only its public half is registered with the sandbox.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { JSONWebKeySet, JWK } from 'jose';
import { PRIVATE_JWK_MEMBERS } from '../../../src/network/network-schema.ts';

/** A client system registered with the sandbox's token endpoint (SMART Backend Services). */
export interface SandboxClient {
  clientId: string;
  /** Public keys the client's assertions are verified with (RS384 or ES384), registered by value. */
  jwks?: JSONWebKeySet;
  /**
   * Or the client's JWK Set URL, fetched when an assertion arrives (as real EHRs register
   * backend clients). A function when the URL is known only later: the sandbox starts before
   * the service whose keys it names.
   */
  jwksUri?: string | (() => string);
  /**
   * The registration's scope: the most a token can grant (with `enforceScopes`) and what is
   * granted when the request names none. Default: `DEFAULT_REGISTERED_SCOPE` (scopes.ts), what
   * a hospital typically registers for this service.
   */
  scope?: string;
}

/** The service's outbound client id, as the referring EHR knows it. */
export const SERVICE_OUTBOUND_CLIENT_ID = 'second-opinion-service';

/** Path of the service's EXAMPLE outbound private key, relative to the repository root. */
export const SERVICE_OUTBOUND_KEY_FILE = 'examples/keys/service-outbound.private.jwk.json';

/**
 * Public half of examples/keys/service-outbound.private.jwk.json, derived from the committed
 * file so the two can never disagree: the private members and the comment are dropped.
 */
export const SERVICE_OUTBOUND_PUBLIC_JWK: JWK = publicHalf(
  JSON.parse(readFileSync(path.join(import.meta.dirname, '..', '..', '..', SERVICE_OUTBOUND_KEY_FILE), 'utf8')) as Record<string, unknown>,
);

function publicHalf(jwk: Record<string, unknown>): JWK {
  const skip = new Set<string>(['_comment', ...PRIVATE_JWK_MEMBERS]);
  return Object.fromEntries(Object.entries(jwk).filter(([k]) => !skip.has(k))) as JWK;
}

/** The service's outbound client registered by its client JWK Set URL: `${serviceUrl()}/.well-known/client-jwks.json`. */
export function serviceClientByJwksUri(serviceUrl: () => string): SandboxClient {
  return { clientId: SERVICE_OUTBOUND_CLIENT_ID, jwksUri: () => `${serviceUrl()}/.well-known/client-jwks.json` };
}

/** The clients the sandbox accepts when `startSandboxEhr` is given none. */
export function defaultSandboxClients(): SandboxClient[] {
  return [{ clientId: SERVICE_OUTBOUND_CLIENT_ID, jwks: { keys: [{ ...SERVICE_OUTBOUND_PUBLIC_JWK }] } }];
}
