import { BoundedMap } from '../limits/bounded-map.ts';
import { DEFAULT_MAX_TRACKED_KEYS } from '../limits/rate-limiter.ts';

export interface LockoutSettings {
  /** Failed client authentications within `windowSeconds` that lock the client id; 0 switches the lockout off. */
  failures: number;
  windowSeconds: number;
  /** How long a locked client id is refused. */
  lockoutSeconds: number;
}

interface Entry {
  /** Failures counted since `since` (ms on the clock). */
  failures: number;
  since: number;
  /** Refused until then (ms on the clock), when locked. */
  lockedUntil?: number;
}

/**
 * Locks a client id out of the token endpoint for a short while after repeated failed client
 * assertions (bad signature, unknown key, expired, replayed jti, unknown client...), so a
 * stolen client id cannot be tried against endlessly.
 *
 * Keyed on the client id the request *claims*, known or not, and the answer is the same for
 * both: the lockout says nothing about which clients exist. A successful token request clears
 * the count. Counters live in this process (see token-limits.ts for why) with a bounded
 * number of keys; the clock is monotonic.
 */
export class ClientLockout {
  readonly settings: LockoutSettings;
  readonly #clock: () => number;
  readonly #entries: BoundedMap<string, Entry>;

  constructor(settings: LockoutSettings, options: { clock?: () => number; maxKeys?: number } = {}) {
    this.settings = settings;
    this.#clock = options.clock ?? (() => performance.now());
    this.#entries = new BoundedMap(options.maxKeys ?? DEFAULT_MAX_TRACKED_KEYS);
  }

  /** Seconds until `clientId` may try again, or undefined when it is not locked. */
  lockedFor(clientId: string): number | undefined {
    const lockedUntil = this.#entries.get(clientId)?.lockedUntil;
    const left = lockedUntil === undefined ? 0 : lockedUntil - this.#clock();
    return left > 0 ? Math.max(1, Math.ceil(left / 1000)) : undefined;
  }

  /** Counts a failed authentication; returns true when this one locked the client id. */
  recordFailure(clientId: string): boolean {
    const { failures, windowSeconds, lockoutSeconds } = this.settings;
    if (failures <= 0) return false;
    const now = this.#clock();
    this.#entries.dropOldestWhile((e) => e.since + windowSeconds * 1000 <= now && (e.lockedUntil ?? 0) <= now);
    const previous = this.#entries.get(clientId);
    if (previous?.lockedUntil !== undefined && previous.lockedUntil > now) return false;
    const entry: Entry = previous && previous.since + windowSeconds * 1000 > now && previous.lockedUntil === undefined ? previous : { failures: 0, since: now };
    entry.failures += 1;
    if (entry.failures >= failures) {
      this.#entries.set(clientId, { failures: 0, since: now, lockedUntil: now + lockoutSeconds * 1000 });
      return true;
    }
    this.#entries.set(clientId, entry);
    return false;
  }

  /** A client that authenticated starts from zero. */
  recordSuccess(clientId: string): void {
    this.#entries.delete(clientId);
  }
}
