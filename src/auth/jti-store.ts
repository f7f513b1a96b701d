/**
 * Remembers the `jti` of every client assertion until it expires, so an assertion cannot be
 * replayed (SMART client-confidential-asymmetric, "Signature Verification": the server SHALL
 * check that the jti has not been previously encountered for the given iss).
 * With several replicas this must be shared: the database implementation lives with the store.
 */
export interface JtiStore {
  /**
   * Records `jti` for `clientId` until `expiresAt`. Resolves false when it was already recorded
   * (a replay). Must be atomic: of two concurrent claims of the same jti, exactly one wins.
   */
  claim(clientId: string, jti: string, expiresAt: Date): Promise<boolean>;
}

/** In-process JtiStore for unit tests and a single process. Expired entries are swept lazily. */
export function createMemoryJtiStore(options: { now?: () => Date; sweepEvery?: number } = {}): JtiStore & { readonly size: number } {
  const now = options.now ?? (() => new Date());
  const sweepEvery = options.sweepEvery ?? 1000;
  const seen = new Map<string, number>();
  let claims = 0;

  const sweep = (t: number) => {
    for (const [key, exp] of seen) if (exp <= t) seen.delete(key);
  };

  return {
    get size() {
      return seen.size;
    },
    async claim(clientId, jti, expiresAt) {
      const t = now().getTime();
      if (++claims % sweepEvery === 0) sweep(t);
      const key = `${clientId}\u0000${jti}`;
      const exp = seen.get(key);
      if (exp !== undefined && exp > t) return false;
      seen.set(key, expiresAt.getTime());
      return true;
    },
  };
}
