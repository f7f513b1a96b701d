import { BoundedMap } from './bounded-map.ts';

/** A rate: a bucket of `limit` requests per key, refilled continuously at `limit` per `windowSeconds`. 0 switches it off. */
export interface Rate {
  limit: number;
  windowSeconds: number;
}

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/** Keys a limiter tracks at most (per replica); past it the least recently seen key is forgotten. */
export const DEFAULT_MAX_TRACKED_KEYS = 50_000;

const TOLERANCE_MS = 0.001;

/**
 * Per-key request rate in this process, as a token bucket computed the GCRA way: one number
 * per key (the time its bucket is full again), no timers. A key may send `limit` requests at
 * once, then one every `windowSeconds / limit` seconds. A refused request costs nothing, so a
 * client that keeps knocking is let in again as soon as the bucket refills.
 *
 * The clock is monotonic (`performance.now()`), not the service's business clock: tests fix
 * that one, and a limiter whose time stands still would never refill.
 *
 * Memory is bounded by `maxKeys`: a flood of distinct keys (addresses, made-up
 * client ids) evicts the least recently seen ones, which only lets those start over.
 */
export class RateLimiter {
  readonly rate: Rate;
  readonly #intervalMs: number;
  readonly #windowMs: number;
  readonly #clock: () => number;
  /** Per key: when its bucket is full again (ms on the clock), GCRA's "theoretical arrival time". */
  readonly #fullAt: BoundedMap<string, number>;

  constructor(rate: Rate, options: { clock?: () => number; maxKeys?: number } = {}) {
    this.rate = rate;
    this.#windowMs = rate.windowSeconds * 1000;
    this.#intervalMs = rate.limit > 0 ? this.#windowMs / rate.limit : 0;
    this.#clock = options.clock ?? (() => performance.now());
    this.#fullAt = new BoundedMap(options.maxKeys ?? DEFAULT_MAX_TRACKED_KEYS);
  }

  get enabled(): boolean {
    return this.rate.limit > 0;
  }

  /** Takes one request from `key`'s bucket, or says how long until there is one. */
  take(key: string): RateDecision {
    if (!this.enabled) return { allowed: true };
    const now = this.#clock();
    this.#fullAt.dropOldestWhile((fullAt) => fullAt <= now);
    const next = Math.max(this.#fullAt.get(key) ?? now, now) + this.#intervalMs;
    const overBy = next - now - this.#windowMs;
    // The tolerance absorbs floating-point error (60 000 / 7 × 7 is a hair over 60 000).
    if (overBy > TOLERANCE_MS) return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(overBy / 1000)) };
    this.#fullAt.set(key, next);
    return { allowed: true };
  }

  /** Keys currently tracked (for tests and metrics). */
  get trackedKeys(): number {
    return this.#fullAt.size;
  }
}
