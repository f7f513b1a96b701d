import type { Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caller } from '../src/access/caller.ts';
import { actOnConsult } from '../src/consults/consult-actions.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { createSecondOpinion } from '../src/intake/create-second-opinion.ts';
import { IntakeRequestSchema } from '../src/intake/intake-request.ts';
import { PgBossQueue } from '../src/jobs/pg-boss-queue.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { loadNetwork, type Network } from '../src/network/network.ts';
import type { Database } from '../src/store/database.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { openTestDatabase } from './support/database.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';

/**
 * Found by the soak: a clinic whose record sets are pushed to its own server accepted its Task
 * just as the service moved that Task on (the push was accepted: `received`), and the accept,
 * sent without If-Match, was answered 412. A caller without If-Match asked for an action, not
 * for a version: the action is judged again on the Task as it is now.
 */
describe('a consultant action without If-Match, when the service wrote the Task between its read and its write', () => {
  let database: Database;
  let jobs: PgBossQueue;
  let store: ResourceStore;
  let network: Network;
  let deps: Parameters<typeof actOnConsult>[3];
  const now = () => new Date();
  const referrer: Caller = { clientId: 'st-olaf-ehr', participantId: 'st-olaf', roles: ['referrer'], scopes: ['system/*.cruds'] };
  const consultant: Caller = { clientId: 'lakeside-app', participantId: 'lakeside-consults', roles: ['consultant'], scopes: ['system/*.cruds'] };

  beforeAll(async () => {
    database = await openTestDatabase();
    jobs = new PgBossQueue(database.raw, { queues: QUEUE_POLICIES });
    await jobs.start();
    network = await loadNetwork();
    store = new ResourceStore(database.db, createValidator(), now);
    deps = { store, network, now };
  });
  afterAll(async () => {
    await jobs?.stop({ graceful: false });
    await database?.close();
  });

  /**
   * The consultant's Task, ready to accept (version 2), then moved on by the service (version 3:
   * `received`, as when its record set was pushed), and a store whose first transaction still
   * reads version 2: the service's write came between that transaction's read and its write.
   */
  async function racedTask(): Promise<{ task: Task; racing: ResourceStore; staleReads: () => number }> {
    const request = IntakeRequestSchema.parse(makeSecondOpinionRequest({ blinded: false, consultants: ['lakeside-consults'] }));
    const { serviceRequest, tasks } = await createSecondOpinion(request, referrer, { store, network, dueDays: { routine: 14, urgent: 3, asap: 1 }, now, jobs });
    await store.grantAccess('Task', tasks.map((t) => t.id as string), consultant.participantId);
    await store.grantAccess('ServiceRequest', [serviceRequest.id as string], consultant.participantId);
    const own = tasks[0] as Task;
    const ready = await store.update<Task>({ ...own, input: [{ type: { text: 'record-set' }, valueReference: { reference: 'Bundle/records' } }] }, { expectedVersion: '1' });
    await store.update<Task>({ ...ready, status: 'received' }, { expectedVersion: '2' });
    let stale = 0;
    const racing = new Proxy(store, {
      get(target, property, receiver) {
        if (property !== 'withTransaction') return Reflect.get(target, property, receiver);
        return <T>(work: (tx: ResourceStore) => Promise<T>) =>
          target.withTransaction((tx) =>
            work(
              new Proxy(tx, {
                get(inner, name, innerReceiver) {
                  if (name === 'read' && stale === 0) {
                    return async () => {
                      stale++;
                      return ready;
                    };
                  }
                  return Reflect.get(inner, name, innerReceiver);
                },
              }),
            ),
          );
      },
    });
    return { task: ready, racing, staleReads: () => stale };
  }

  it('is judged again on the Task as it is now: accepted (version 4), not 412', async () => {
    const { task, racing, staleReads } = await racedTask();
    const accepted = await actOnConsult(task.id as string, { action: 'accept' }, consultant, { ...deps, store: racing });
    expect(staleReads()).toBe(1);
    expect(accepted).toMatchObject({ status: 'accepted', meta: { versionId: '4' } });
    expect(await store.read<Task>('Task', task.id as string, 'system')).toMatchObject({ status: 'accepted', meta: { versionId: '4' } });
    expect(await store.readVersion<Task>('Task', task.id as string, '3', 'system')).toMatchObject({ status: 'received' });
  });

  it('with If-Match naming the version it read, the 412 stands and nothing is written', async () => {
    const { task, racing } = await racedTask();
    const refused = await actOnConsult(task.id as string, { action: 'accept' }, consultant, { ...deps, store: racing }, '2').catch((err: unknown) => err);
    expect(refused).toMatchObject({ outcome: { id: 'precondition-failed' } });
    expect(await store.read<Task>('Task', task.id as string, 'system')).toMatchObject({ status: 'received', meta: { versionId: '3' } });
  });
});
