import { describe, expect, it } from 'vitest';
import { createMemoryJtiStore } from './jti-store.ts';

describe('createMemoryJtiStore', () => {
  it('accepts a jti once per client until it expires, and sweeps expired entries', async () => {
    let now = new Date('2030-01-01T00:00:00Z');
    const store = createMemoryJtiStore({ now: () => now, sweepEvery: 3 });
    const exp = new Date('2030-01-01T00:05:00Z');
    expect(await store.claim('a', 'j1', exp)).toBe(true);
    expect(await store.claim('a', 'j1', exp)).toBe(false);
    expect(await store.claim('b', 'j1', exp)).toBe(true);
    expect(store.size).toBe(2);

    now = new Date('2030-01-01T00:06:00Z');
    // Third claim after expiry sweeps the expired entries; the expired jti is usable again
    // (its assertion would be refused as expired anyway).
    expect(await store.claim('a', 'j1', new Date('2030-01-01T00:10:00Z'))).toBe(true);
    expect(await store.claim('c', 'j2', new Date('2030-01-01T00:10:00Z'))).toBe(true);
    expect(await store.claim('d', 'j3', new Date('2030-01-01T00:10:00Z'))).toBe(true);
    expect(store.size).toBe(3);
  });

  it('lets exactly one of concurrent claims win', async () => {
    const store = createMemoryJtiStore();
    const exp = new Date(Date.now() + 60_000);
    const results = await Promise.all(Array.from({ length: 10 }, () => store.claim('a', 'same', exp)));
    expect(results.filter(Boolean)).toHaveLength(1);
  });
});
