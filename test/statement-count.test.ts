import type { AuditEvent, DocumentReference, Provenance, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caller } from '../src/access/caller.ts';
import { AuditLog } from '../src/audit/audit-log.ts';
import { actOnConsult } from '../src/consults/consult-actions.ts';
import { submitOpinion } from '../src/consults/submit-opinion.ts';
import { readConcordance } from '../src/concordance/concordance-extension.ts';
import { deliverOpinion, type DeliveryDeps } from '../src/delivery/deliver-opinion.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { createSecondOpinion } from '../src/intake/create-second-opinion.ts';
import { IntakeRequestSchema } from '../src/intake/intake-request.ts';
import { PgBossQueue } from '../src/jobs/pg-boss-queue.ts';
import type { FhirClient } from '../src/outbound/fhir-client.ts';
import { OutboundHttpError } from '../src/outbound/outbound-errors.ts';
import { QUEUE, QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { loadNetwork, type Network } from '../src/network/network.ts';
import { taskNotificationObserver } from '../src/notify/task-notifications.ts';
import { OpinionSchema } from '../src/opinions/opinion.ts';
import type { Database } from '../src/store/database.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { opinionDeliveries } from '../src/store/schema.ts';
import { openTestDatabase } from './support/database.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { countStatements, type StatementCounter } from './support/statement-counter.ts';

/**
 * How many SQL statements one use case sends, BEGIN and COMMIT included, on the
 * store the test runs on (PGlite, or PostgreSQL with DATABASE_URL). A count, not a time: the
 * number is the same on every run.
 */
describe('SQL statements per use case', () => {
  let database: Database;
  let jobs: PgBossQueue;
  let store: ResourceStore;
  let network: Network;
  let counter: StatementCounter;
  let deps: Parameters<typeof submitOpinion>[3];
  const now = () => new Date();
  const referrer: Caller = { clientId: 'st-olaf-ehr', participantId: 'st-olaf', roles: ['referrer'], scopes: ['system/*.cruds'] };
  const consultant: Caller = { clientId: 'lakeside-app', participantId: 'lakeside-consults', roles: ['consultant'], scopes: ['system/*.cruds'] };

  beforeAll(async () => {
    database = await openTestDatabase();
    counter = countStatements(database);
    jobs = new PgBossQueue(database.raw, { queues: QUEUE_POLICIES });
    await jobs.start();
    network = await loadNetwork();
    store = new ResourceStore(database.db, createValidator(), now, { observers: [taskNotificationObserver({ jobs, network, now })] });
    deps = { store, network, now, jobs, audit: new AuditLog({ store, network, now, publicUrl: 'http://localhost' }) };
  });
  afterAll(async () => {
    await jobs?.stop({ graceful: false });
    await database?.close();
  });

  /** A referral whose Tasks the consultant may read, the lakeside Task at `status` with its record set in. */
  async function referral(status: Task['status'], overrides: Record<string, unknown> = {}): Promise<{ task: Task; serviceRequestId: string; taskIds: string[] }> {
    const request = IntakeRequestSchema.parse(makeSecondOpinionRequest({ blinded: false, ...overrides }));
    const { serviceRequest, tasks } = await createSecondOpinion(request, referrer, { store, network, dueDays: { routine: 14, urgent: 3, asap: 1 }, now, jobs });
    const ids = tasks.map((t) => t.id as string);
    await store.grantAccess('Task', ids, consultant.participantId);
    await store.grantAccess('ServiceRequest', [serviceRequest.id as string], consultant.participantId);
    const own = tasks.find((t) => t.owner?.reference === network.get(consultant.participantId)?.organization.reference) as Task;
    const task = await store.update<Task>({ ...own, status, input: [{ type: { text: 'record set' }, valueReference: { reference: 'Bundle/records' } }] }, { expectedVersion: '1' });
    return { task, serviceRequestId: serviceRequest.id as string, taskIds: ids };
  }

  it('submitting an opinion: at most 4 (read, one write, BEGIN, COMMIT), with the same rows and job as before', async () => {
    const { task, serviceRequestId } = await referral('in-progress');
    const opinion = OpinionSchema.parse(EXAMPLE_OPINION);
    const { result, statements } = await counter.during(() => submitOpinion(task.id as string, opinion, consultant, deps, task.meta?.versionId));
    expect(statements.map(verb), statements.join('\n')).toEqual(['BEGIN', 'SELECT', 'WITH', 'COMMIT']);

    expect(result).toMatchObject({ status: 'completed', meta: { versionId: '3' } });
    const noteId = (result.output?.[0]?.valueReference?.reference ?? '').replace('DocumentReference/', '');
    const note = await store.read<DocumentReference>('DocumentReference', noteId, { participantId: 'st-olaf' });
    expect(note).toMatchObject({ status: 'current', context: { related: [{ reference: `ServiceRequest/${serviceRequestId}` }] } });
    // The first opinion came with the same read: the note carries the opinion's concordance with it.
    expect(readConcordance(note as DocumentReference)).toEqual({ diagnosis: 'minor-discrepancy', plan: 'changed' });
    expect(await store.read('DocumentReference', noteId, { participantId: consultant.participantId })).toBeDefined();
    expect(await store.readVersion<Task>('Task', task.id as string, '3', 'system')).toMatchObject({ status: 'completed' });
    const provenances = (await store.search<Provenance>({ resourceType: 'Provenance', contains: [[{ target: [{ reference: `Task/${task.id}/_history/3` }] }]], count: 10 }, 'system')).resources;
    expect(provenances).toHaveLength(1);
    expect(provenances[0]?.reason?.[0]?.text).toMatch(/^complete:/);
    const opinionProvenance = (await store.search<Provenance>({ resourceType: 'Provenance', contains: [[{ target: [{ reference: `DocumentReference/${noteId}` }] }]], count: 10 }, { participantId: 'st-olaf' })).resources;
    expect(opinionProvenance).toHaveLength(1);
    const [delivery] = await database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, noteId));
    expect(delivery).toMatchObject({ taskId: task.id, serviceRequestId, participantId: 'st-olaf', status: 'pending', attempts: 0 });
    const queued = (await jobs.failed()).length; // nothing failed
    expect(queued).toBe(0);
    expect(await deliveryJobs(noteId)).toEqual([{ singletonKey: noteId, data: { deliveryId: noteId } }]);
    // The other Task is still open: the referral stays active.
    expect(await store.read<ServiceRequest>('ServiceRequest', serviceRequestId, 'system')).toMatchObject({ status: 'active', meta: { versionId: '1' } });
  });

  it('the opinion that ends the last open Task settles the referral in the same write', async () => {
    const { task, serviceRequestId, taskIds } = await referral('in-progress', { consultants: ['lakeside-consults'] });
    expect(taskIds).toHaveLength(1);
    const { statements } = await counter.during(() => submitOpinion(task.id as string, OpinionSchema.parse(EXAMPLE_OPINION), consultant, deps));
    expect(statements.length, statements.join('\n')).toBeLessThanOrEqual(4);
    expect(await store.read<ServiceRequest>('ServiceRequest', serviceRequestId, 'system')).toMatchObject({ status: 'completed', meta: { versionId: '2' } });
  });

  it('a stale If-Match writes nothing (412), in at most 4 statements', async () => {
    const { task } = await referral('in-progress');
    const { result, statements } = await counter.during(() => submitOpinion(task.id as string, OpinionSchema.parse(EXAMPLE_OPINION), consultant, deps, '1').catch((err: unknown) => err));
    expect(result).toMatchObject({ outcome: { id: 'precondition-failed' } });
    expect(statements.map(verb), statements.join('\n')).toEqual(['BEGIN', 'SELECT', 'ROLLBACK']);
    expect(await store.read<Task>('Task', task.id as string, 'system')).toMatchObject({ status: 'in-progress', meta: { versionId: '2' } });
  });

  it('two opinions submitted at once on one Task: exactly one wins, the other is refused (409 or 412) and leaves nothing behind', async () => {
    const { task } = await referral('in-progress');
    const opinion = OpinionSchema.parse(EXAMPLE_OPINION);
    const results = await Promise.allSettled([1, 2].map(() => submitOpinion(task.id as string, opinion, consultant, deps)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const refused = results.find((r) => r.status === 'rejected')?.reason as { outcome?: { id?: string }; status?: number };
    expect(refused.outcome?.id === 'precondition-failed' || refused.status === 409, JSON.stringify(refused)).toBe(true);
    const winner = (results.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<Task>).value;
    expect(winner).toMatchObject({ status: 'completed', meta: { versionId: '3' } });
    const deliveries = await database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.taskId, task.id as string));
    expect(deliveries.map((d) => d.id)).toEqual([(winner.output?.[0]?.valueReference?.reference ?? '').replace('DocumentReference/', '')]);
    const notes = (await store.search<DocumentReference>({ resourceType: 'DocumentReference', contains: [[{ description: 'Second opinion', context: { related: [{ reference: task.focus?.reference }] } }]], count: 10 }, 'system')).resources;
    expect(notes).toHaveLength(1);
    expect(await deliveryJobs(deliveries[0]?.id as string)).toHaveLength(1);
  });

  it('a consultant action (accept) costs at most 4 too', async () => {
    const { task } = await referral('requested');
    const { result, statements } = await counter.during(() => actOnConsult(task.id as string, { action: 'accept' }, consultant, deps, task.meta?.versionId));
    expect(statements.map(verb), statements.join('\n')).toEqual(['BEGIN', 'SELECT', 'WITH', 'COMMIT']);
    expect(result).toMatchObject({ status: 'accepted', meta: { versionId: '3' } });
    const provenances = (await store.search<Provenance>({ resourceType: 'Provenance', contains: [[{ target: [{ reference: `Task/${task.id}/_history/3` }] }]], count: 10 }, { participantId: consultant.participantId })).resources;
    expect(provenances).toHaveLength(1);
  });

  it('the AuditEvent of a polled summary read: 4 statements for the first read of a minute, 6 for each later one (instead of a new AuditEvent each)', async () => {
    // The audit log's clock stands still: both reads fall in one minute window.
    const audit = new AuditLog({ store, network, now: () => new Date('2026-12-07T10:00:30Z'), publicUrl: 'http://localhost' });
    const input = { action: 'read' as const, outcome: 'success' as const, agent: { participantId: 'st-olaf', clientId: 'st-olaf-ehr' }, entities: [{ reference: 'ServiceRequest/polled' }] };
    const first = await counter.during(() => audit.recordCoalesced(input));
    const second = await counter.during(() => audit.recordCoalesced(input));
    expect(second.result.id).toBe(first.result.id);
    // The window upsert, then the AuditEvent (one write statement, as every AuditEvent).
    expect(first.statements.map(verb), first.statements.join('\n')).toEqual(['BEGIN', 'INSERT', 'WITH', 'COMMIT']);
    // The window upsert, the AuditEvent read, its new version, the superseded version's history row deleted.
    expect(second.statements.map(verb), second.statements.join('\n')).toEqual(['BEGIN', 'INSERT', 'SELECT', 'WITH', 'DELETE', 'COMMIT']);
    expect(second.result.extension?.[0]?.valuePositiveInt).toBe(2);
  });

  it('an intake (claim, every resource, the assembly job) is one statement when nobody is to be notified; a replay reads what the first one wrote, and a different request under its requestId writes nothing', async () => {
    const request = IntakeRequestSchema.parse(makeSecondOpinionRequest({ blinded: false }));
    const intakeDeps = { store, network, dueDays: { routine: 14, urgent: 3, asap: 1 }, now, jobs };
    const { result, statements } = await counter.during(() => createSecondOpinion(request, referrer, intakeDeps));
    expect(statements.map(verb), statements.join('\n')).toEqual(['WITH']);
    expect(result.created).toBe(true);
    expect(result.tasks).toHaveLength(2);
    for (const task of result.tasks) expect(await store.read<Task>('Task', task.id as string, { participantId: 'st-olaf' })).toMatchObject({ status: 'requested', meta: { versionId: '1' } });
    const queued = (await database.db.execute(`SELECT data FROM ${jobs.schema}.job WHERE name = '${QUEUE.assembleRecordSet}' AND data->>'serviceRequestId' = '${result.serviceRequest.id}'` as never)) as unknown as { rows: { data: unknown }[] };
    expect(queued.rows.map((r) => r.data)).toEqual([{ serviceRequestId: result.serviceRequest.id, taskIds: result.tasks.map((t) => t.id), serviceRequestVersion: '1', recordsRevision: '0' }]);
    const replay = await createSecondOpinion(request, referrer, intakeDeps);
    expect(replay).toMatchObject({ created: false, serviceRequest: { id: result.serviceRequest.id } });
    expect(replay.tasks.map((t) => t.id)).toEqual(result.tasks.map((t) => t.id));

    const rows = async () => {
      const counted = (await database.db.execute(
        `SELECT (SELECT count(*) FROM resource) AS resources, (SELECT count(*) FROM resource_history) AS history, (SELECT count(*) FROM ${jobs.schema}.job WHERE name = '${QUEUE.assembleRecordSet}') AS jobs` as never,
      )) as unknown as { rows: Record<string, unknown>[] };
      return counted.rows[0];
    };
    const before = await rows();
    await expect(createSecondOpinion({ ...request, question: 'Another question under the same requestId' }, referrer, intakeDeps)).rejects.toMatchObject({
      outcome: { issue: [{ code: 'conflict', expression: ['requestId'] }] },
    });
    expect(await rows()).toEqual(before);
  });

  it('an intake whose Tasks a webhook recipient may read runs in a transaction that also queues the notifications', async () => {
    const st = network.get('st-olaf');
    if (!st) throw new Error('st-olaf missing from the network');
    const notifying = { get: (id: string) => (id === 'st-olaf' ? { ...st, notify: { url: 'https://st-olaf.example/hooks', secret: 'st-olaf-shared-secret-0123456789' } } : network.get(id)) };
    const noisy = new ResourceStore(database.db, createValidator(), now, { observers: [taskNotificationObserver({ jobs, network: notifying as Network, now })] });
    const request = IntakeRequestSchema.parse(makeSecondOpinionRequest({ blinded: false }));
    const { result, statements } = await counter.during(() => createSecondOpinion(request, referrer, { store: noisy, network, dueDays: { routine: 14, urgent: 3, asap: 1 }, now, jobs }));
    expect(result.created).toBe(true);
    expect(statements.map(verb).slice(0, 2), statements.join('\n')).toEqual(['BEGIN', 'WITH']);
    expect(statements.map(verb).at(-1)).toBe('COMMIT');
    const taskIds = result.tasks.map((t) => `'${t.id}'`).join(', ');
    const hooks = (await database.db.execute(`SELECT data->>'taskId' AS task FROM ${jobs.schema}.job WHERE name = '${QUEUE.notifyWebhook}' AND data->>'taskId' IN (${taskIds})` as never)) as unknown as { rows: { task: string }[] };
    expect(hooks.rows.map((r) => r.task).sort()).toEqual(result.tasks.map((t) => t.id as string).sort());
  });

  describe('delivering an opinion to the referring EHR', () => {
    /** An EHR that keeps what it is sent, honours If-None-Exist on identifiers and fails on demand. */
    function fakeEhr(failWith?: number) {
      const stored: Resource[] = [];
      const client = {
        baseUrl: 'https://ehr.example/fhir',
        async createIfNoneExist<T extends Resource>(resource: T, query: string): Promise<T> {
          if (failWith) throw new OutboundHttpError({ status: failWith, failure: 'http', method: 'POST', url: `https://ehr.example/fhir/${resource.resourceType}` });
          const value = decodeURIComponent(query.split('|')[1] ?? '');
          const found = stored.find((r) => r.resourceType === resource.resourceType && (r as { identifier?: { value?: string }[] }).identifier?.some((i) => i.value === value));
          if (found) return found as T;
          const created = { ...resource, id: `remote-${stored.length + 1}` };
          stored.push(created);
          return created;
        },
      } as unknown as FhirClient;
      return { stored, client };
    }

    async function submitted(): Promise<{ task: Task; noteId: string }> {
      const { task } = await referral('in-progress');
      const completed = await submitOpinion(task.id as string, OpinionSchema.parse(EXAMPLE_OPINION), consultant, deps);
      return { task: completed, noteId: (completed.output?.[0]?.valueReference?.reference ?? '').replace('DocumentReference/', '') };
    }

    function deliveryDeps(client: FhirClient, retryLimit = 3): DeliveryDeps {
      return { store, clients: new Map([['st-olaf', client]]), audit: deps.audit as AuditLog, network, retryLimit, now };
    }

    async function audits(noteId: string): Promise<AuditEvent[]> {
      return (await store.search<AuditEvent>({ resourceType: 'AuditEvent', contains: [[{ entity: [{ what: { reference: `DocumentReference/${noteId}` } }] }]], count: 10 }, 'system')).resources;
    }

    it('a delivered opinion: 4 statements (one read, BEGIN, one write, COMMIT) besides the EHR calls', async () => {
      const { task, noteId } = await submitted();
      const ehr = fakeEhr();
      const { result, statements } = await counter.during(() => deliverOpinion({ id: 'job-1', name: QUEUE.deliverOpinion, data: { deliveryId: noteId }, attempt: 1 }, deliveryDeps(ehr.client)));
      expect(statements.map(verb), statements.join('\n')).toEqual(['SELECT', 'BEGIN', 'WITH', 'COMMIT']);
      expect(result).toEqual({ outcome: 'delivered', document: 'https://ehr.example/fhir/DocumentReference/remote-1', communication: 'https://ehr.example/fhir/Communication/remote-2' });
      expect(ehr.stored.map((r) => r.resourceType)).toEqual(['DocumentReference', 'Communication']);
      const [delivery] = await database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, noteId));
      expect(delivery).toMatchObject({ status: 'delivered', attempts: 1, lastError: null, remoteDocument: 'https://ehr.example/fhir/DocumentReference/remote-1', remoteCommunication: 'https://ehr.example/fhir/Communication/remote-2' });
      expect(await store.read<Task>('Task', task.id as string, 'system')).toMatchObject({ status: 'completed', meta: { versionId: '4' }, businessStatus: { coding: [{ code: 'opinion-delivered' }] } });
      expect((await audits(noteId)).map((a) => [a.outcome, a.outcomeDesc])).toEqual([['0', 'Opinion delivered to the referring EHR (attempt 1)']]);
      // Delivered: a second run (a re-drive racing a retry) reads and stops.
      const again = await counter.during(() => deliverOpinion({ id: 'job-2', name: QUEUE.deliverOpinion, data: { deliveryId: noteId }, attempt: 1 }, deliveryDeps(ehr.client)));
      expect(again.result).toEqual({ outcome: 'skipped', reason: 'already delivered' });
      expect(again.statements.map(verb)).toEqual(['SELECT']);
    });

    it('a Task changed between the read and the record is read again: the change is kept, the delivery recorded once', async () => {
      const { task, noteId } = await submitted();
      const ehr = fakeEhr();
      const client = {
        ...ehr.client,
        async createIfNoneExist<T extends Resource>(resource: T, query: string): Promise<T> {
          // Someone writes the Task while the EHR answers.
          if (resource.resourceType === 'Communication') {
            const current = (await store.read<Task>('Task', task.id as string, 'system')) as Task;
            await store.update<Task>({ ...current, note: [{ text: 'changed meanwhile' }] }, { expectedVersion: current.meta?.versionId });
          }
          return ehr.client.createIfNoneExist(resource, query);
        },
      } as FhirClient;
      const result = await deliverOpinion({ id: 'job-1', name: QUEUE.deliverOpinion, data: { deliveryId: noteId }, attempt: 1 }, deliveryDeps(client));
      expect(result).toMatchObject({ outcome: 'delivered' });
      expect(await store.read<Task>('Task', task.id as string, 'system')).toMatchObject({ meta: { versionId: '5' }, note: [{ text: 'changed meanwhile' }], businessStatus: { coding: [{ code: 'opinion-delivered' }] } });
      expect(await audits(noteId)).toHaveLength(1);
    });

    it('a transient failure: one statement (delivery row and audit); the last attempt also fails the Task in 4', async () => {
      const { task, noteId } = await submitted();
      const ehr = fakeEhr(503);
      const job = (attempt: number) => ({ id: 'job-1', name: QUEUE.deliverOpinion, data: { deliveryId: noteId }, attempt });
      const first = await counter.during(() => deliverOpinion(job(1), deliveryDeps(ehr.client, 1)).catch((err: unknown) => err));
      expect(first.result).toBeInstanceOf(OutboundHttpError);
      expect(first.statements.map(verb), first.statements.join('\n')).toEqual(['SELECT', 'WITH']);
      const [pending] = await database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, noteId));
      expect(pending).toMatchObject({ status: 'pending', attempts: 1, lastError: 'OutboundHttpError: POST https://ehr.example/fhir/DocumentReference HTTP 503 (transient)' });
      expect(await store.read<Task>('Task', task.id as string, 'system')).toMatchObject({ meta: { versionId: '3' } });

      const last = await counter.during(() => deliverOpinion(job(2), deliveryDeps(ehr.client, 1)));
      expect(last.result).toMatchObject({ outcome: 'failed' });
      expect(last.statements.map(verb), last.statements.join('\n')).toEqual(['SELECT', 'BEGIN', 'WITH', 'COMMIT']);
      const [failed] = await database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, noteId));
      expect(failed).toMatchObject({ status: 'failed', attempts: 2 });
      expect(await store.read<Task>('Task', task.id as string, 'system')).toMatchObject({ meta: { versionId: '4' }, businessStatus: { coding: [{ code: 'delivery-failed' }] } });
      expect((await audits(noteId)).map((a) => a.outcome).sort()).toEqual(['8', '8']);
      expect(ehr.stored).toEqual([]);
    });
  });

  /** The statement's first word, upper-case (drizzle sends `begin` on PostgreSQL, PGlite `BEGIN`). */
  function verb(statement: string): string {
    return (statement.split(/\s/)[0] ?? '').toUpperCase();
  }

  async function deliveryJobs(noteId: string): Promise<{ singletonKey: string; data: unknown }[]> {
    const schema = jobs.schema;
    const result = (await database.db.execute(`SELECT singleton_key, data FROM ${schema}.job WHERE name = '${QUEUE.deliverOpinion}' AND singleton_key = '${noteId}'` as never)) as unknown as { rows: { singleton_key: string; data: unknown }[] };
    return result.rows.map((r) => ({ singletonKey: r.singleton_key, data: r.data }));
  }
});
