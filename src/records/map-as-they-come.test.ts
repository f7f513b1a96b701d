import { describe, expect, it } from 'vitest';
import { mapAsTheyCome } from './map-as-they-come.ts';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('mapAsTheyCome', () => {
  it('starts on the first batch before the next is read, keeps input order and at most `limit` calls in flight', async () => {
    const events: string[] = [];
    let inFlight = 0;
    let most = 0;
    async function* batches() {
      events.push('read 1');
      yield [1, 2, 3];
      await tick();
      await tick();
      events.push('read 2');
      yield [4, 5];
      events.push('read 3');
      yield [];
    }
    const prepared: number[][] = [];
    const results = await mapAsTheyCome(
      batches(),
      2,
      async (n) => {
        events.push(`start ${n}`);
        most = Math.max(most, ++inFlight);
        for (let i = 0; i < 6 - n; i++) await tick(); // later items finish first
        inFlight--;
        return n * 10;
      },
      async (batch) => void prepared.push([...batch]),
    );
    expect(results).toEqual([10, 20, 30, 40, 50]);
    expect(most).toBe(2);
    expect(prepared).toEqual([[1, 2, 3], [4, 5], []]);
    expect(events.indexOf('start 1')).toBeLessThan(events.indexOf('read 2'));
  });

  it('the first failure rejects the whole after the calls in flight settle, starts nothing more and stops the reading', async () => {
    const started: number[] = [];
    let settled = 0;
    let readsAfterFailure = 0;
    let failedAt = false;
    async function* batches() {
      yield [1, 2];
      await tick();
      if (failedAt) readsAfterFailure++;
      yield [3, 4];
      if (failedAt) readsAfterFailure++;
      yield [5, 6];
    }
    const error = await mapAsTheyCome(batches(), 2, async (n) => {
      started.push(n);
      await tick();
      if (n === 1) {
        failedAt = true;
        throw new Error('boom');
      }
      await tick();
      settled++;
      return n;
    }).catch((e: unknown) => e);
    expect(error).toEqual(new Error('boom'));
    expect(started).toEqual([1, 2]);
    expect(settled).toBe(1);
    expect(readsAfterFailure).toBeLessThanOrEqual(1);
  });

  it('a failure while reading rejects the whole', async () => {
    async function* batches(): AsyncGenerator<number[]> {
      yield [1];
      throw new Error('search failed');
    }
    await expect(mapAsTheyCome(batches(), 4, async (n) => n)).rejects.toThrow('search failed');
  });
});
