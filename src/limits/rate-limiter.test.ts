import { describe, expect, it } from 'vitest';
import { addressKey } from './client-address.ts';
import { BoundedMap } from './bounded-map.ts';
import { RateLimiter } from './rate-limiter.ts';

function clock(start = 1_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

describe('RateLimiter', () => {
  it('lets `limit` requests through at once, refuses the next with the seconds until one is back, then refills at limit per window', () => {
    const c = clock();
    const limiter = new RateLimiter({ limit: 3, windowSeconds: 60 }, { clock: c.now });
    expect([1, 2, 3].map(() => limiter.take('a'))).toEqual([{ allowed: true }, { allowed: true }, { allowed: true }]);
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 20 });
    c.advance(19_000);
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 1 });
    c.advance(1_000);
    expect(limiter.take('a')).toEqual({ allowed: true });
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 20 });
  });

  it('keeps keys apart, and a refused request costs nothing', () => {
    const c = clock();
    const limiter = new RateLimiter({ limit: 1, windowSeconds: 10 }, { clock: c.now });
    expect(limiter.take('a').allowed).toBe(true);
    for (let i = 0; i < 5; i++) expect(limiter.take('a').allowed).toBe(false);
    expect(limiter.take('b').allowed).toBe(true);
    c.advance(10_000);
    expect(limiter.take('a').allowed).toBe(true);
  });

  it('allows exactly `limit` even when window / limit is not a whole number of ms', () => {
    const limiter = new RateLimiter({ limit: 7, windowSeconds: 60 }, { clock: () => 5 });
    expect(Array.from({ length: 8 }, () => limiter.take('k').allowed)).toEqual([true, true, true, true, true, true, true, false]);
  });

  it('limit 0 switches it off', () => {
    const limiter = new RateLimiter({ limit: 0, windowSeconds: 60 });
    expect(limiter.enabled).toBe(false);
    for (let i = 0; i < 1000; i++) expect(limiter.take('a').allowed).toBe(true);
    expect(limiter.trackedKeys).toBe(0);
  });

  it('tracks at most maxKeys keys, and forgets keys whose bucket is full again', () => {
    const c = clock();
    const limiter = new RateLimiter({ limit: 1, windowSeconds: 1 }, { clock: c.now, maxKeys: 100 });
    for (let i = 0; i < 10_000; i++) limiter.take(`k${i}`);
    expect(limiter.trackedKeys).toBe(100);
    c.advance(1_000);
    limiter.take('fresh');
    expect(limiter.trackedKeys).toBe(1);
  });
});

describe('BoundedMap', () => {
  it('evicts the least recently written key past its cap', () => {
    const map = new BoundedMap<string, number>(2);
    map.set('a', 1);
    map.set('b', 2);
    map.set('a', 3);
    map.set('c', 4);
    expect([map.get('a'), map.get('b'), map.get('c'), map.size]).toEqual([3, undefined, 4, 2]);
  });
});

describe('addressKey', () => {
  it('counts IPv4 by address, IPv4-mapped IPv6 as IPv4, IPv6 by its /64', () => {
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('2001:db8:0:1:aaaa::1')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:0db8:0000:0001:ffff:ffff:ffff:ffff')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey(undefined)).toBe('unknown');
  });
});
