import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/support/database.ts';
import { createDatabaseJtiStore } from './assertion-jti-store.ts';
import type { Database } from './database.ts';
import { usedAssertions } from './schema.ts';

describe('database jti store', () => {
  let database: Database;
  beforeAll(async () => {
    database = await openTestDatabase();
  });
  afterAll(async () => database.close());

  it('accepts a jti once per client, across store instances (replicas)', async () => {
    const exp = new Date(Date.now() + 60_000);
    const a = createDatabaseJtiStore(database.db);
    const b = createDatabaseJtiStore(database.db);
    expect(await a.claim('c1', 'j1', exp)).toBe(true);
    expect(await b.claim('c1', 'j1', exp)).toBe(false);
    expect(await b.claim('c2', 'j1', exp)).toBe(true);
  });

  it('of concurrent claims of the same jti exactly one wins', async () => {
    const store = createDatabaseJtiStore(database.db);
    const exp = new Date(Date.now() + 60_000);
    const results = await Promise.all(Array.from({ length: 8 }, () => store.claim('c3', 'same', exp)));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('purges expired entries now and then', async () => {
    let now = new Date('2030-01-01T00:00:00Z');
    const store = createDatabaseJtiStore(database.db, { now: () => now, purgeEvery: 2 });
    await store.claim('c4', 'old', new Date('2030-01-01T00:01:00Z'));
    now = new Date('2030-01-01T00:02:00Z');
    await store.claim('c4', 'new', new Date('2030-01-01T00:03:00Z'));
    const rows = await database.db.select().from(usedAssertions);
    expect(rows.filter((r) => r.clientId === 'c4').map((r) => r.jti)).toEqual(['new']);
  });
});
