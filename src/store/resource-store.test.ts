import { OperationOutcomeError } from '@medplum/core';
import type { Patient, Resource, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/support/database.ts';
import type { Database } from './database.ts';
import { ResourceStore } from './resource-store.ts';
import { resourceHistory, resources } from './schema.ts';

const acceptAll = { validate: (_: Resource) => undefined };

function task(owner: string, status: Task['status'] = 'requested'): Task {
  return { resourceType: 'Task', status, intent: 'order', owner: { reference: `Organization/${owner}` } };
}

describe('ResourceStore', () => {
  let database: Database;
  let store: ResourceStore;

  beforeAll(async () => {
    database = await openTestDatabase();
    store = new ResourceStore(database.db, acceptAll);
  });
  afterAll(async () => database.close());

  it('creates version 1 with meta and reads it back', async () => {
    const created = await store.create(task('a'), ['ref', 'a']);
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.meta?.versionId).toBe('1');
    const read = await store.read<Task>('Task', created.id!, { participantId: 'a' });
    expect(read).toEqual(created);
  });

  it('hides a resource from participants not on its access list', async () => {
    const created = await store.create(task('a'), ['ref', 'a']);
    expect(await store.read('Task', created.id!, { participantId: 'b' })).toBeUndefined();
    expect(await store.history('Task', created.id!, { participantId: 'b' })).toBeUndefined();
    expect(await store.readVersion('Task', created.id!, '1', { participantId: 'b' })).toBeUndefined();
    expect(await store.read('Task', created.id!, 'system')).toEqual(created);
  });

  it('revokes a participant from every version without a new one, leaving the marker in its place; a replay changes nothing', async () => {
    const created = await store.create(task('a'), ['ref', 'a']);
    const v2 = await store.update({ ...created, status: 'accepted' as const }, { expectedVersion: '1' });
    expect(await store.revokeAccess('Task', [created.id!], 'a', 'withdrawn:a')).toBe(1);
    expect(await store.read('Task', created.id!, { participantId: 'a' })).toBeUndefined();
    expect(await store.readVersion('Task', created.id!, '1', { participantId: 'a' })).toBeUndefined();
    expect(await store.accessList('Task', created.id!)).toEqual(['ref', 'withdrawn:a']);
    expect((await store.read('Task', created.id!, 'system'))?.meta?.versionId).toBe(v2.meta?.versionId);
    expect(await store.revokeAccess('Task', [created.id!], 'a', 'withdrawn:a')).toBe(0);
    expect(await store.read('Task', created.id!, { participantId: 'ref' })).toBeDefined();
  });

  it('keeps every version: update writes version 2, vread and history return both', async () => {
    const v1 = await store.create(task('a'), ['a']);
    const v2 = await store.update({ ...v1, status: 'accepted' });
    expect(v2.meta?.versionId).toBe('2');
    expect((await store.read<Task>('Task', v1.id!, 'system'))?.status).toBe('accepted');
    expect((await store.readVersion<Task>('Task', v1.id!, '1', 'system'))?.status).toBe('requested');
    const history = await store.history<Task>('Task', v1.id!, 'system');
    expect(history?.map((t) => [t.meta?.versionId, t.status])).toEqual([
      ['2', 'accepted'],
      ['1', 'requested'],
    ]);
  });

  it('vread of a version id no version can have (beyond the integer column, not decimal digits) finds nothing instead of failing the query', async () => {
    const v1 = await store.create(task('a'), ['a']);
    for (const vid of ['2147483648', '99999999999999999999', '1e3', '0x1', '-1', '0', ' 1', '']) {
      expect(await store.readVersion('Task', v1.id!, vid, 'system'), vid).toBeUndefined();
    }
    expect((await store.readVersion<Task>('Task', v1.id!, '01', 'system'))?.meta?.versionId).toBe('1');
  });

  it('refuses an update based on a stale version with 412 and keeps the winner', async () => {
    const v1 = await store.create(task('a'), ['a']);
    await store.update({ ...v1, status: 'accepted' }, { expectedVersion: '1' });
    const err = await store.update({ ...v1, status: 'rejected' }, { expectedVersion: '1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationOutcomeError);
    expect((err as OperationOutcomeError).outcome.issue?.[0]?.code).toBe('processing');
    expect((err as OperationOutcomeError).outcome.id).toBe('precondition-failed');
    expect((await store.read<Task>('Task', v1.id!, 'system'))?.status).toBe('accepted');
  });

  it('concurrent updates of the same version: exactly one wins', async () => {
    const v1 = await store.create(task('a'), ['a']);
    const results = await Promise.allSettled([
      store.withTransaction((tx) => tx.update({ ...v1, status: 'accepted' }, { expectedVersion: '1' })),
      store.withTransaction((tx) => tx.update({ ...v1, status: 'rejected' }, { expectedVersion: '1' })),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect(await store.history('Task', v1.id!, 'system')).toHaveLength(2);
  });

  it('a transaction whose last write fails leaves nothing behind', async () => {
    const marker = `rollback-${Date.now()}`;
    const failing = new ResourceStore(database.db, {
      validate: (r) => {
        if (r.resourceType === 'Patient') throw new Error('last write refused');
      },
    });
    const err = await failing
      .withTransaction(async (tx) => {
        await tx.create({ ...task('a'), description: marker }, ['a']);
        await tx.create({ ...task('b'), description: marker }, ['b']);
        await tx.create<Patient>({ resourceType: 'Patient' }, ['a']);
      })
      .catch((e: unknown) => e);
    expect((err as Error).message).toBe('last write refused');
    const page = await store.search({ resourceType: 'Task', contains: [[{ description: marker }]], count: 10 }, 'system');
    expect(page.resources).toEqual([]);
    const all = await database.db.select().from(resources);
    const hist = await database.db.select().from(resourceHistory);
    expect(all.filter((r) => (r.content as Task).description === marker)).toEqual([]);
    expect(hist.filter((r) => (r.content as Task).description === marker)).toEqual([]);
  });

  it('searches by contained JSON with OR groups, access and keyset pages', async () => {
    const tag = `s-${Date.now()}`;
    for (let i = 0; i < 5; i++) await store.create({ ...task(i % 2 ? 'odd' : 'even', i < 3 ? 'requested' : 'accepted'), description: tag }, ['ref', i % 2 ? 'odd' : 'even']);
    const mine = await store.search<Task>({ resourceType: 'Task', contains: [[{ description: tag }]], count: 10 }, { participantId: 'odd' });
    expect(mine.resources.map((t) => t.owner?.reference)).toEqual(['Organization/odd', 'Organization/odd']);

    const either = await store.search<Task>(
      { resourceType: 'Task', contains: [[{ description: tag }], [{ status: 'accepted' }, { owner: { reference: 'Organization/odd' } }]], count: 10 },
      'system',
    );
    expect(either.resources).toHaveLength(3); // i=1 (odd), 3 (odd, accepted), 4 (accepted)

    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.search<Task>({ resourceType: 'Task', contains: [[{ description: tag }]], count: 2, cursor }, { participantId: 'ref' });
      seen.push(...page.resources.map((t) => t.id!));
      cursor = page.next;
    } while (cursor);
    expect(seen).toHaveLength(5);
    expect(new Set(seen).size).toBe(5);
  });

  it('filters on _lastUpdated', async () => {
    const before = new Date(Date.now() - 1000);
    const created = await store.create({ ...task('a'), description: 'lu' }, ['a']);
    const hit = await store.search({ resourceType: 'Task', contains: [[{ description: 'lu' }]], lastUpdated: [{ op: 'ge', value: before }], count: 10 }, 'system');
    expect(hit.resources.map((r) => r.id)).toContain(created.id);
    const miss = await store.search({ resourceType: 'Task', contains: [[{ description: 'lu' }]], lastUpdated: [{ op: 'lt', value: before }], count: 10 }, 'system');
    expect(miss.resources).toEqual([]);
  });

  it('runs write observers inside the writing transaction, with the previous status; a rollback drops what they wrote', async () => {
    const seen: { id: string; status: string; previous?: { status?: string; businessStatus?: string }; access: readonly string[]; inTx: boolean }[] = [];
    const observed = new ResourceStore(database.db, acceptAll, undefined, {
      observers: [
        {
          resourceType: 'Task',
          async onWrite(tx, change) {
            // A plain write is wrapped in a transaction so the observer's own writes commit with it.
            const inTx = tx !== observed;
            seen.push({ id: change.resource.id as string, status: (change.resource as Task).status, ...(change.previous ? { previous: change.previous } : {}), access: change.access, inTx });
            if ((change.resource as Task).status === 'failed') await tx.create({ resourceType: 'Patient', id: `p-${change.resource.id}` } as Patient, ['a']);
          },
        },
      ],
    });
    const created = await observed.create(task('a'), ['ref', 'a']);
    await observed.create({ resourceType: 'Patient' } as Patient, ['a']);
    const updated = await observed.update<Task>({ ...created, status: 'accepted', businessStatus: { coding: [{ code: 'records-ready' }] } });
    expect(seen).toEqual([
      { id: created.id, status: 'requested', access: ['ref', 'a'], inTx: true },
      { id: created.id, status: 'accepted', previous: { status: 'requested' }, access: ['ref', 'a'], inTx: true },
    ]);
    await expect(
      observed.withTransaction(async (tx) => {
        await tx.update<Task>({ ...updated, status: 'failed' });
        throw new Error('later step fails');
      }),
    ).rejects.toThrow('later step fails');
    expect(seen.at(-1)).toMatchObject({ status: 'failed', previous: { status: 'accepted', businessStatus: 'records-ready' } });
    // Neither the Task change nor what the observer wrote survived the rollback.
    expect((await store.read<Task>('Task', created.id!, 'system'))?.status).toBe('accepted');
    expect(await store.read('Patient', `p-${created.id}`, 'system')).toBeUndefined();
  });
});
