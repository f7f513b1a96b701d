import { createLocalJWKSet, createRemoteJWKSet, customFetch, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';
import type { ClientRegistration } from '../network/network.ts';

/** A client's registered jwksUri could not be fetched. */
export class ClientJwksUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ClientJwksUnavailableError';
  }

  /** Every message is fixed text plus an HTTP status. */
  [LOG_FIELDS](): LogFields {
    return { message: this.message };
  }
}

/** Default and ceiling for how long a fetched client JWK Set is used without re-fetching. */
const MAX_CACHE_MS = 10 * 60_000;

/**
 * Key resolvers per client registration, built once: a local JWK Set for `jwks`, a remote one
 * (fetched, cached, re-fetched on an unknown kid after a cooldown) for `jwksUri`. Keyed by the
 * registration object, so a reloaded network starts with fresh resolvers.
 */
const resolvers = new WeakMap<ClientRegistration, JWTVerifyGetKey>();

/**
 * The key resolver for a client. jose picks the single key whose `kid` matches the assertion
 * header and whose `kty` fits its `alg`, as SMART's signature-verification algorithm requires
 * (https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html#signature-verification).
 */
export function clientKeyResolver(client: ClientRegistration): JWTVerifyGetKey {
  let resolver = resolvers.get(client);
  if (!resolver) {
    resolver = client.jwksUri ? remoteResolver(client.jwksUri) : createLocalJWKSet((client.jwks ?? { keys: [] }) as JSONWebKeySet);
    resolvers.set(client, resolver);
  }
  return resolver;
}

/**
 * A remote JWK Set that also honours the client's Cache-Control: SMART says the server SHALL NOT
 * cache a JWKS longer than the client's cache-control header indicates.
 */
function remoteResolver(uri: string): JWTVerifyGetKey {
  let staleAt = 0;
  const remote = createRemoteJWKSet(new URL(uri), {
    timeoutDuration: 5_000,
    cooldownDuration: 30_000,
    cacheMaxAge: MAX_CACHE_MS,
    headers: { accept: 'application/json' },
    [customFetch]: async (url, init) => {
      let res: Response;
      try {
        res = await fetch(url, init);
      } catch (err) {
        if ((err as Error).name === 'TimeoutError') throw err; // jose reports it as JWKSTimeout
        throw new ClientJwksUnavailableError(`fetching the JWK Set failed`, { cause: err });
      }
      if (res.status !== 200) throw new ClientJwksUnavailableError(`the JWK Set URL answered HTTP ${res.status}`);
      staleAt = Date.now() + cacheLifetimeMs(res.headers.get('cache-control'));
      return res;
    },
  });
  return async (header, token) => {
    if (remote.jwks() !== undefined && Date.now() >= staleAt) await remote.reload();
    return remote(header, token);
  };
}

/** How long a response may be reused according to its Cache-Control, capped at MAX_CACHE_MS. */
export function cacheLifetimeMs(cacheControl: string | null): number {
  if (!cacheControl) return MAX_CACHE_MS;
  const directives = cacheControl.toLowerCase().split(',').map((d) => d.trim());
  if (directives.some((d) => d === 'no-store' || d === 'no-cache')) return 0;
  const maxAge = directives.map((d) => /^max-age=(\d+)$/.exec(d)?.[1]).find((v) => v !== undefined);
  return maxAge === undefined ? MAX_CACHE_MS : Math.min(Number(maxAge) * 1000, MAX_CACHE_MS);
}
