import { Router } from 'express';
import { publishedKeySet, type OutboundKeys } from './outbound-keys.ts';

/** The client JWK Set URL, relative to PUBLIC_URL: what an EHR administrator registers. */
export const CLIENT_JWKS_PATH = '/.well-known/client-jwks.json';

/**
 * How long an EHR may keep the client JWK Set. SMART servers must not cache it longer than this
 * says, so after a key is published the EHR sees it within five minutes; a new key should be
 * published at least this long before it signs (it is, with any `signFrom` a day later).
 */
export const CLIENT_JWKS_MAX_AGE_SECONDS = 300;

/**
 * `GET /.well-known/client-jwks.json` (public, mount before the auth middleware): the public
 * halves of the keys the service signs its SMART client assertions with at EHRs, for EHRs that
 * register a backend client by JWK Set URL. Separate from `/.well-known/jwks.json`, which holds
 * the key access tokens *issued by* the service are signed with: each set has one purpose.
 */
export function createClientJwksRouter(deps: { keys: OutboundKeys; now: () => Date }): Router {
  const router = Router();
  router.get(CLIENT_JWKS_PATH, (_req, res) => {
    res.set('Cache-Control', `public, max-age=${CLIENT_JWKS_MAX_AGE_SECONDS}`);
    res.json(publishedKeySet(deps.keys, deps.now().getTime()));
  });
  return router;
}
