/**
 * A Map that never holds more than `maxEntries` keys: writing a key moves it to the end, and
 * past the cap the least recently written key is dropped. The abuse limits keep their
 * counters in these, keyed by addresses and client ids an attacker chooses, so their memory
 * must stay bounded whatever arrives.
 */
export class BoundedMap<K, V> {
  readonly maxEntries: number;
  readonly #entries = new Map<K, V>();

  constructor(maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
    this.maxEntries = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: K): V | undefined {
    return this.#entries.get(key);
  }

  /** Stores `value` as the most recently written entry, evicting the oldest past the cap. */
  set(key: K, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    if (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
  }

  delete(key: K): void {
    this.#entries.delete(key);
  }

  /**
   * Drops entries from the oldest end while `stale` says so, stopping at the first live one:
   * a cheap, amortised sweep (entries are ordered by last write, so stale ones gather there).
   */
  dropOldestWhile(stale: (value: V) => boolean): void {
    for (const [key, value] of this.#entries) {
      if (!stale(value)) return;
      this.#entries.delete(key);
    }
  }
}
