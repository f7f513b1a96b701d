import { describe, expect, it } from 'vitest';
import { ClientLockout } from './client-lockout.ts';

function clock(start = 1_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

describe('ClientLockout', () => {
  it('locks a client id on the Nth failure within the window, for lockoutSeconds, then counts afresh', () => {
    const c = clock();
    const lockout = new ClientLockout({ failures: 3, windowSeconds: 60, lockoutSeconds: 30 }, { clock: c.now });
    expect([lockout.recordFailure('a'), lockout.recordFailure('a')]).toEqual([false, false]);
    expect(lockout.lockedFor('a')).toBeUndefined();
    expect(lockout.recordFailure('a')).toBe(true);
    expect(lockout.lockedFor('a')).toBe(30);
    expect(lockout.lockedFor('b')).toBeUndefined();
    c.advance(29_500);
    expect(lockout.lockedFor('a')).toBe(1);
    c.advance(500);
    expect(lockout.lockedFor('a')).toBeUndefined();
    expect([lockout.recordFailure('a'), lockout.recordFailure('a')]).toEqual([false, false]);
    expect(lockout.lockedFor('a')).toBeUndefined();
  });

  it('forgets failures older than the window', () => {
    const c = clock();
    const lockout = new ClientLockout({ failures: 2, windowSeconds: 10, lockoutSeconds: 30 }, { clock: c.now });
    lockout.recordFailure('a');
    c.advance(10_000);
    expect(lockout.recordFailure('a')).toBe(false);
    expect(lockout.recordFailure('a')).toBe(true);
  });

  it('a success clears the count', () => {
    const lockout = new ClientLockout({ failures: 2, windowSeconds: 60, lockoutSeconds: 30 }, { clock: () => 5 });
    lockout.recordFailure('a');
    lockout.recordSuccess('a');
    expect(lockout.recordFailure('a')).toBe(false);
  });

  it('failures 0 switches it off', () => {
    const lockout = new ClientLockout({ failures: 0, windowSeconds: 60, lockoutSeconds: 30 });
    for (let i = 0; i < 100; i++) expect(lockout.recordFailure('a')).toBe(false);
    expect(lockout.lockedFor('a')).toBeUndefined();
  });
});
