import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/support/database.ts';
import type { Database } from '../store/database.ts';
import { ResourceStore } from '../store/resource-store.ts';
import type { Job } from './job-queue.ts';
import { PgBossQueue } from './pg-boss-queue.ts';

/**
 * `enqueueParts`: jobs written by a part of the caller's own statement behave as `enqueue`'s
 * (handled once, singleton keys honoured, gone with a rolled-back transaction). PGlite, or
 * PostgreSQL when DATABASE_URL is set.
 */
describe('PgBossQueue.enqueueParts', () => {
  let database: Database;
  let store: ResourceStore;
  const queues: PgBossQueue[] = [];

  beforeAll(async () => {
    database = await openTestDatabase();
    store = new ResourceStore(database.db, { validate: () => undefined });
  });
  afterEach(async () => {
    for (const q of queues.splice(0)) await q.stop({ graceful: false });
  });
  // close() drops the test schema and pg-boss's schema beside it.
  afterAll(() => database.close());

  async function jobsOf(queue: PgBossQueue, name: string): Promise<{ singleton_key: string | null; data: unknown; state: string }[]> {
    const result = await database.db.execute(sql`SELECT singleton_key, data, state FROM ${sql.identifier(queue.schema)}.job WHERE name = ${name} ORDER BY created_on`);
    return (result as unknown as { rows: { singleton_key: string | null; data: unknown; state: string }[] }).rows;
  }

  it('a job written by the statement is handled once; a second one for a pending singleton key is not queued; a rolled-back one never exists', async () => {
    const name = `t-parts-${randomUUID().slice(0, 8)}`;
    const queue = new PgBossQueue(database.raw, { queues: [{ name, policy: 'exclusive' }], pollingIntervalSeconds: 0.5, superviseIntervalSeconds: 1 });
    queues.push(queue);
    await queue.start();

    // Rolled back: the statement ran, its transaction did not commit.
    await expect(
      store.withTransaction(async (tx) => {
        await tx.write({ parts: queue.enqueueParts('job_a', name, [{ data: { n: 'rolled-back' }, options: { singletonKey: 'k-rolled-back' } }]) });
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await jobsOf(queue, name)).toEqual([]);

    await store.write({ parts: queue.enqueueParts('job_a', name, [{ data: { n: 'first' }, options: { singletonKey: 'k1' } }]) });
    await store.write({ parts: queue.enqueueParts('job_b', name, [{ data: { n: 'second' }, options: { singletonKey: 'k1' } }]) });
    expect((await jobsOf(queue, name)).map((j) => [j.singleton_key, j.data])).toEqual([['k1', { n: 'first' }]]);

    const seen: Job[] = [];
    await queue.work(name, async (job) => {
      seen.push(job);
    });
    for (let i = 0; i < 100 && (await jobsOf(queue, name))[0]?.state !== 'completed'; i++) await new Promise((r) => setTimeout(r, 100));
    expect(seen.map((j) => j.data)).toEqual([{ n: 'first' }]);
  });

  it('refuses what enqueue refuses: a missing singleton key on an exclusive queue, an undeclared queue', async () => {
    const name = `t-parts-${randomUUID().slice(0, 8)}`;
    const queue = new PgBossQueue(database.raw, { queues: [{ name, policy: 'exclusive' }] });
    queues.push(queue);
    await queue.start();
    expect(() => queue.enqueueParts('job_a', name, [{ data: {} }])).toThrow(/exclusive/);
    expect(() => queue.enqueueParts('job_a', 'nowhere', [{ data: {} }])).toThrow(/not declared/);
    expect(() => queue.enqueueParts('Job-A', name, [{ data: {}, options: { singletonKey: 'k' } }])).toThrow(/identifier/);
  });
});
