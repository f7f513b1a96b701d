import type { Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countOverdueTasks, sweepOverdue } from '../src/consults/overdue-sweep.ts';
import type { WorklistItem } from '../src/consults/worklist.ts';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * The overdue sweep: the periodic job marks Tasks past their due date that wait on
 * the consultant with business status `overdue`, visible in the worklist and the summary; Tasks
 * waiting on the referrer keep their business status.
 */
describe('overdue sweep (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let store: ResourceStore;
  const validator = createValidator();
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
    const networkFile = await writeSandboxNetwork(ehr, { timeoutMs: 5_000 });
    service = await startTestService({ NETWORK_FILE: networkFile, OVERDUE_SWEEP_INTERVAL_SECONDS: '1' }, undefined, { jobPollingIntervalSeconds: 0.5 });
    store = new ResourceStore(service.database.db, validator);
    for (const p of ['st-olaf', 'lakeside-consults', 'operations']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  const call = callerFor(() => service.url, tokens);

  async function referral(): Promise<{ id: string; taskId: string }> {
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded));
    expect(created.status).toBe(201);
    const id = created.body.id;
    await until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');
    return { id, taskId: created.body.tasks[0]?.id as string };
  }

  /** Moves the Task's due date into the past (as if days went by). */
  async function makeLate(taskId: string): Promise<void> {
    const task = (await store.read<Task>('Task', taskId, 'system')) as Task;
    await store.update<Task>({ ...task, restriction: { period: { end: new Date(Date.now() - 86_400_000).toISOString() } } }, { expectedVersion: task.meta?.versionId });
  }

  const worklist = async (query: string) => (await call<{ items: WorklistItem[] }>('GET', `/consults?${query}`, 'lakeside-consults')).body.items;

  it('a late Task waiting on the consultant becomes overdue in the worklist and the summary; one waiting on the referrer keeps its status', async () => {
    const late = await referral();
    const waiting = await referral();
    expect((await call('POST', `/consults/${waiting.taskId}/accept`, 'lakeside-consults')).status).toBe(200);
    expect((await call('POST', `/consults/${waiting.taskId}/start`, 'lakeside-consults')).status).toBe(200);
    expect((await call('POST', `/consults/${waiting.taskId}/request-info`, 'lakeside-consults', { question: 'Which implant?' })).status).toBe(200);
    expect((await worklist('overdue=true')).map((i) => i.task.id)).not.toContain(late.taskId);

    await makeLate(late.taskId);
    await makeLate(waiting.taskId);
    const item = await until(async () => (await worklist('overdue=true')).find((i) => i.task.id === late.taskId && i.task.businessStatus === 'overdue'), 'the periodic sweep');
    expect(item.task).toMatchObject({ status: 'requested', businessStatus: 'overdue', overdue: true });
    expect(await countOverdueTasks(store)).toBe(1);

    const task = (await store.read<Task>('Task', late.taskId, 'system')) as Task;
    expect(validator.validate(task)).toEqual([]);
    expect(task.businessStatus?.text).toMatch(/^Due .*; was: Record set ready for the consultant$/);
    const summary = (await call<ReferralSummary>('GET', `/second-opinions/${late.id}`, 'st-olaf')).body;
    expect(summary.consultants[0]?.task).toMatchObject({ status: 'requested', businessStatus: 'overdue', overdue: true });

    // The Task on hold for the referrer is late too, but not the consultant's delay: its business status stands.
    const onHold = (await call<ReferralSummary>('GET', `/second-opinions/${waiting.id}`, 'st-olaf')).body.consultants[0]?.task;
    expect(onHold).toMatchObject({ status: 'on-hold', businessStatus: 'information-requested', overdue: true, informationRequested: 'Which implant?' });

    // The consultant can still act on an overdue Task; the mark stays until the Task's next business status.
    const accepted = await call<Task>('POST', `/consults/${late.taskId}/accept`, 'lakeside-consults');
    expect(accepted.status).toBe(200);
    expect(accepted.body).toMatchObject({ status: 'accepted', businessStatus: { coding: [{ code: 'overdue' }] } });

    // Once the referrer answers, the Task waits on the consultant again: the next sweep marks it, exactly once even when two replicas sweep at the same time.
    expect((await call('POST', `/second-opinions/${waiting.id}/info`, 'st-olaf', { text: 'A 350 cc implant.' })).status).toBe(200);
    await Promise.all([sweepOverdue({ store, now: () => new Date() }), sweepOverdue({ store, now: () => new Date() })]);
    const history = (await store.history<Task>('Task', waiting.taskId, 'system')) as Task[];
    const markedVersions = history.filter((t) => t.businessStatus?.coding?.[0]?.code === 'overdue');
    expect(markedVersions).toHaveLength(1);
    expect(markedVersions[0]?.status).toBe('in-progress');
    // Idempotent: nothing left to mark.
    expect((await sweepOverdue({ store, now: () => new Date() })).marked).toEqual([]);
    // Both open Tasks carry the mark: the metrics gauge reads them when scraped.
    expect(await countOverdueTasks(store)).toBe(2);
    const scrape = await fetch(`${service.url}/metrics`, { headers: { authorization: `Bearer ${tokens.operations}` } });
    expect(scrape.status).toBe(200);
    expect((await scrape.text()).split('\n')).toContain('second_opinion_overdue_tasks 2');
  });
});
