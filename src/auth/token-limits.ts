import { decodeJwt } from 'jose';
import { addressKey } from '../limits/client-address.ts';
import { type Rate, RateLimiter } from '../limits/rate-limiter.ts';
import type { Logger } from '../log/logger.ts';
import { ClientLockout, type LockoutSettings } from './client-lockout.ts';
import { OAuthError } from './oauth-error.ts';

export interface TokenLimitSettings {
  perAddress: Rate;
  perClient: Rate;
  lockout: LockoutSettings;
}

/** What a registered client id may look like (network-schema.ts); anything else is no client. */
const CLIENT_ID = /^[A-Za-z0-9._~-]{1,128}$/;

/**
 * The abuse limits of `POST /auth/token`: per address before the body is read,
 * then per claimed client id a lockout after repeated failed assertions and a request rate,
 * both before the assertion is verified (refusing is cheaper than verifying).
 *
 * Counters are per replica, in memory, not shared through PostgreSQL like the jti replay store:
 * - they are brakes, not a security boundary: the signature is; N replicas behind a balancer
 *   allow at most N times the limits, still nothing against a 384-bit key;
 * - a database write per refused or failed request would hand the flood to the database, the
 *   very thing the limits protect; the jti store is shared because one-time use must be exact.
 *
 * Refusals are OAuth errors (RFC 6749 §5.2) with `Retry-After`:
 * - over a rate: 429 `slow_down`, the registered OAuth error (RFC 8628 §3.5, IANA OAuth
 *   Extensions Error Registry, token endpoint) that means "too fast, retry later", where
 *   `invalid_request` would tell the client its request is malformed;
 * - locked: 401 `invalid_client` saying the client is temporarily locked; the same for a client
 *   id that does not exist.
 */
export class TokenLimits {
  readonly #perAddress: RateLimiter;
  readonly #perClient: RateLimiter;
  readonly #lockout: ClientLockout;
  readonly #log: Logger;

  constructor(settings: TokenLimitSettings, log: Logger, options: { clock?: () => number; maxKeys?: number } = {}) {
    this.#perAddress = new RateLimiter(settings.perAddress, options);
    this.#perClient = new RateLimiter(settings.perClient, options);
    this.#lockout = new ClientLockout(settings.lockout, options);
    this.#log = log;
  }

  /** Before the body is read: throws `slow_down` when `ip` is over its rate. */
  admitAddress(ip: string | undefined): void {
    const decision = this.#perAddress.take(addressKey(ip));
    if (!decision.allowed) throw slowDown('from this address', decision.retryAfterSeconds);
  }

  /** Before the assertion is verified: throws when the claimed client id is locked or over its rate. */
  admitClient(clientId: string | undefined): void {
    if (clientId === undefined) return;
    const locked = this.#lockout.lockedFor(clientId);
    if (locked !== undefined) {
      throw new OAuthError('invalid_client', `client authentication for this client_id is temporarily locked after repeated failed client assertions; retry after ${locked} s`, { retryAfterSeconds: locked });
    }
    const decision = this.#perClient.take(clientId);
    if (!decision.allowed) throw slowDown('for this client_id', decision.retryAfterSeconds);
  }

  /** A client that authenticated starts its lockout count from zero. */
  authenticated(clientId: string | undefined): void {
    if (clientId !== undefined) this.#lockout.recordSuccess(clientId);
  }

  /** A failed client authentication counts towards the lockout of the claimed client id. */
  failedAuthentication(clientId: string | undefined): void {
    if (clientId === undefined || !this.#lockout.recordFailure(clientId)) return;
    const { failures, windowSeconds, lockoutSeconds } = this.#lockout.settings;
    this.#log.warn({ event: 'token.lockout', clientId, failures, windowSeconds, lockoutSeconds }, 'client id locked out of the token endpoint after repeated failed client assertions');
  }
}

/**
 * The client id a token request claims (the assertion's `iss`, else `client_id`), read without
 * verifying anything, only to key the limits; undefined when it cannot be a registered id.
 */
export function claimedClientId(form: Record<string, string>): string | undefined {
  let claimed: unknown;
  try {
    if (form.client_assertion) claimed = decodeJwt(form.client_assertion).iss;
  } catch {
    // Not a JWT: fall back on client_id.
  }
  claimed ??= form.client_id;
  return typeof claimed === 'string' && CLIENT_ID.test(claimed) ? claimed : undefined;
}

function slowDown(whose: string, retryAfterSeconds: number): OAuthError {
  return new OAuthError('slow_down', `too many token requests ${whose}; retry after ${retryAfterSeconds} s`, { retryAfterSeconds });
}
