import { rm } from 'node:fs/promises';
import path from 'node:path';
import { parseSearchRequest } from '@medplum/core';
import type { Communication, DocumentReference, Task } from '@medplum/fhirtypes';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OPINION_NOTIFICATION_SYSTEM } from '../src/delivery/deliver-opinion.ts';
import { SYSTEM } from '../src/fhir/constants.ts';
import type { ConsultantSummary, ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { SERVICE_OUTBOUND_CLIENT_ID } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import type { SeededIds } from './support/sandbox-ehr/seed.ts';
import { createProcessDatabase, type ProcessDatabase, type ServiceProcess, startServiceProcess, writeSandboxNetwork } from './support/service-process.ts';
import { getAccessToken, loadExamplePrivateJwk } from './support/tokens.ts';
import { IMPLANT_OPINION as OPINION } from './support/opinions.ts';

/** The sandbox's seeded ids, for module-level builders (set once the sandbox runs). */
let chart: SeededIds;

/**
 * Short leases so a killed attempt is retried within seconds: lease 3 s, looked for every
 * second, retries after 1 s (capped at 2 s).
 */
const FAST_RECOVERY = {
  DELIVERY_ATTEMPT_TIMEOUT_SECONDS: '3',
  JOB_SUPERVISE_INTERVAL_SECONDS: '1',
  DELIVERY_RETRY_DELAY_SECONDS: '1',
  DELIVERY_RETRY_MAX_DELAY_SECONDS: '2',
};


/** `promise`, or a rejection naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resources on the sandbox EHR with this identifier (`system|value`), straight from its store (no HTTP: usable while a request is held). */
async function onEhr<T extends DocumentReference | Communication>(ehr: SandboxEhr, type: T['resourceType'], system: string, value: string): Promise<T[]> {
  return (await ehr.repo.searchResources(parseSearchRequest(`${type}?identifier=${encodeURIComponent(`${system}|${value}`)}`))) as T[];
}

/** The summary of a referral as the referrer sees it; the consultant entry of Lakeside. */
async function lakesideSummary(svc: ServiceProcess, id: string): Promise<ConsultantSummary | undefined> {
  const res = await svc.call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf');
  expect(res.status).toBe(200);
  return res.body.consultants.find((c) => c.participant === 'lakeside-consults') ?? res.body.consultants[0];
}

/** Intake at `intake`, waits for the record set, then accept + start at `consultant` (may be another replica). */
async function referralInProgress(intake: ServiceProcess, consultant: ServiceProcess = intake): Promise<{ id: string; taskId: string }> {
  const request = makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } }, chart);
  const created = await intake.call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', request);
  expect(created.status).toBe(201);
  const id = created.body.id;
  const taskId = created.body.tasks[0]?.id as string;
  await until(async () => ((await intake.call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), `records of ${id}`, 60_000);
  expect((await consultant.call('POST', `/consults/${taskId}/accept`, 'lakeside-consults')).status).toBe(200);
  expect((await consultant.call('POST', `/consults/${taskId}/start`, 'lakeside-consults')).status).toBe(200);
  return { id, taskId };
}

/** Submits the opinion; returns the consult note id (= the delivery id). */
async function submitOpinion(svc: ServiceProcess, taskId: string): Promise<string> {
  const res = await svc.call<Task>('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', OPINION);
  expect(res.status).toBe(200);
  expect(res.body.status).toBe('completed');
  const reference = res.body.output?.[0]?.valueReference?.reference as string;
  expect(reference).toMatch(/^DocumentReference\//);
  return reference.split('/')[1] as string;
}

/**
 * Reliability of the opinion post-back with real processes: the service runs as
 * `npm start` runs it, is SIGKILLed in the worst window of a delivery, and runs as two replicas
 * on one PostgreSQL database. Exactly once is checked where it matters: on the referrer's EHR.
 */
describe('opinion post-back reliability (service processes)', () => {
  let ehr: SandboxEhr;
  let database: ProcessDatabase | undefined;
  let networkFile: string | undefined;
  const processes: ServiceProcess[] = [];

  beforeEach(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 10_000 } });
    chart = ehr.seeded;
    networkFile = await writeSandboxNetwork(ehr);
    database = await createProcessDatabase();
  });
  afterEach(async () => {
    await Promise.all(processes.splice(0).map((p) => p.stop()));
    await ehr?.stop();
    await database?.drop();
    database = undefined;
    if (networkFile) await rm(path.dirname(networkFile), { recursive: true, force: true });
    networkFile = undefined;
  });

  async function start(env: Record<string, string>): Promise<ServiceProcess> {
    // Keep-alive 1 s (`Keep-Alive: timeout=1`): fetch keeps none of this test's connections idle,
    // so stopping a process does not wait out the default 5 s for them.
    const svc = await startServiceProcess({ NETWORK_FILE: networkFile as string, HTTP_KEEP_ALIVE_TIMEOUT_MS: '1000', ...env });
    processes.push(svc);
    return svc;
  }

  it('killed after the EHR stored the consult note but before the job was marked done: after restart, one note and one Communication on the EHR, delivered', async () => {
    const db = database as ProcessDatabase;
    const first = await start({ ...db.env, ...FAST_RECOVERY });
    const { id, taskId } = await referralInProgress(first);

    // The EHR stores the note, then (before answering) the service process is SIGKILLed.
    // The kill waits until the opinion's own HTTP answer has reached this test.
    let answered!: () => void;
    const opinionAnswered = new Promise<void>((resolve) => (answered = resolve));
    let killedAfterStore = false;
    ehr.faults.add({
      path: /^\/fhir\/R4\/DocumentReference(\?|$)/,
      method: 'POST',
      times: 1,
      beforeResponse: async () => {
        await opinionAnswered;
        first.kill('SIGKILL');
        await first.exit;
        killedAfterStore = true;
      },
    });
    let noteId: string;
    try {
      noteId = await submitOpinion(first, taskId);
    } finally {
      answered();
    }
    // Killed by the signal (exit code null), from inside the EHR's held response.
    expect(await within(first.exit, 60_000, 'the delivery attempt that gets the service killed')).toBeNull();
    expect(killedAfterStore).toBe(true);
    expect(first.logs.some((l) => l.msg === 'opinion delivery')).toBe(false);
    // The window: the note is on the EHR, the Communication is not, the job never finished.
    expect(await onEhr(ehr, 'DocumentReference', SYSTEM.consultNoteId, noteId)).toHaveLength(1);
    expect(await onEhr(ehr, 'Communication', OPINION_NOTIFICATION_SYSTEM, noteId)).toHaveLength(0);

    // Restart on the same data; the killed attempt's lease runs out and the job is retried.
    const second = await start({ ...db.env, ...FAST_RECOVERY });
    const done = await second.waitFor((l) => l.msg === 'opinion delivery' && l.deliveryId === noteId, 60_000);
    expect(done).toMatchObject({ outcome: 'delivered' });
    expect(done.attempt).toBeGreaterThanOrEqual(2);

    const delivery = await until(async () => {
      const d = (await lakesideSummary(second, id))?.delivery;
      return d?.status === 'delivered' ? d : undefined;
    }, 'delivered summary', 60_000);

    // Exactly one of each on the EHR, searched through its FHIR API; the Communication is about that note.
    const docs = await searchFhir(ehr, 'DocumentReference', SYSTEM.consultNoteId, noteId);
    expect(docs).toHaveLength(1);
    const comms = await searchFhir(ehr, 'Communication', OPINION_NOTIFICATION_SYSTEM, noteId);
    expect(comms).toHaveLength(1);
    const remoteId = docs[0]?.id as string;
    expect(comms[0]).toMatchObject({ resourceType: 'Communication', status: 'completed', about: [{ reference: `DocumentReference/${remoteId}` }] });
    expect(delivery).toMatchObject({ id: noteId, status: 'delivered', remoteDocument: `${ehr.baseUrl}/DocumentReference/${remoteId}`, deliveredAt: expect.any(String) });
    // The killed attempt died before writing its row; the retry counts it (the queue's attempt number).
    expect(delivery.attempts).toBeGreaterThanOrEqual(2);
    // The retry's conditional create found the stored note (200, not a second 201).
    const posts = ehr.requests.filter((r) => r.method === 'POST' && /^\/fhir\/R4\/DocumentReference(\?|$)/.test(r.path));
    expect(posts.length).toBeGreaterThanOrEqual(2);
    expect(posts.at(-1)?.status).toBe(200);
    // Three real service processes start one after another: on a loaded 2-core machine that alone takes most of a minute.
  }, 180_000);

  it.skipIf(!process.env.DATABASE_URL)('two service processes on one PostgreSQL database, ten referrals: every opinion delivered exactly once, none lost', async () => {
    const db = database as ProcessDatabase;
    const [a, b] = await Promise.all([start(db.env), start({ ...db.env, DATA_DIR: await db.dataDir() })]);
    const replicas = [a, b] as [ServiceProcess, ServiceProcess];
    const N = 10;

    // Intake alternates between the replicas, consultant actions and opinions go to the other one.
    const referrals = await Promise.all(Array.from({ length: N }, (_, i) => referralInProgress(replicas[i % 2] as ServiceProcess, replicas[(i + 1) % 2] as ServiceProcess)));
    const noteIds = await Promise.all(referrals.map((r, i) => submitOpinion(replicas[i % 2] as ServiceProcess, r.taskId)));
    expect(new Set(noteIds).size).toBe(N);

    const deliveries = await until(
      async () => {
        const all = await Promise.all(referrals.map(async (r, i) => (await lakesideSummary(replicas[(i + 1) % 2] as ServiceProcess, r.id))?.delivery));
        return all.every((d) => d?.status === 'delivered') ? all : undefined;
      },
      'all ten deliveries',
      90_000,
    );
    expect(deliveries.map((d) => d?.id).sort()).toEqual([...noteIds].sort());

    for (const noteId of noteIds) {
      const docs = await searchFhir(ehr, 'DocumentReference', SYSTEM.consultNoteId, noteId);
      expect(docs, `consult note ${noteId}`).toHaveLength(1);
      const comms = await searchFhir(ehr, 'Communication', OPINION_NOTIFICATION_SYSTEM, noteId);
      expect(comms, `Communication of ${noteId}`).toHaveLength(1);
      expect(comms[0]).toMatchObject({ about: [{ reference: `DocumentReference/${docs[0]?.id}` }] });
    }
    const allComms = await ehr.repo.searchResources(parseSearchRequest('Communication?_count=1000'));
    expect(allComms).toHaveLength(N);
    const remoteDocs = new Set(deliveries.map((d) => d?.remoteDocument));
    expect(remoteDocs.size).toBe(N);

    // Each delivery succeeded exactly once across both replicas (no job ran to success twice).
    const delivered = [...a.logs, ...b.logs].filter((l) => l.msg === 'opinion delivery' && l.outcome === 'delivered').map((l) => l.deliveryId as string);
    expect(delivered.sort()).toEqual([...noteIds].sort());
    // Both replicas served the flow (the alternation is deterministic; which one ran a job is not).
    for (const r of replicas) expect(r.logs.some((l) => l.msg === 'request' && l.method === 'POST' && typeof l.path === 'string' && l.path.endsWith('/opinion'))).toBe(true);
  });
});

const sandboxTokens = new WeakMap<SandboxEhr, Promise<string>>();
/** A token of the sandbox EHR for the service's outbound client (its EXAMPLE key), one per sandbox. */
function sandboxToken(ehr: SandboxEhr): Promise<string> {
  let token = sandboxTokens.get(ehr);
  if (!token) {
    token = loadExamplePrivateJwk('service-outbound').then((privateJwk) => getAccessToken(ehr.url, SERVICE_OUTBOUND_CLIENT_ID, { privateJwk }));
    sandboxTokens.set(ehr, token);
  }
  return token;
}

/** Searches the sandbox EHR's FHIR REST API by identifier, as a client of that EHR; the matching resources. */
async function searchFhir(ehr: SandboxEhr, type: 'DocumentReference' | 'Communication', system: string, value: string): Promise<(DocumentReference | Communication)[]> {
  const res = await fetch(`${ehr.baseUrl}/${type}?identifier=${encodeURIComponent(`${system}|${value}`)}`, { headers: { authorization: `Bearer ${await sandboxToken(ehr)}`, accept: 'application/fhir+json' } });
  expect(res.status).toBe(200);
  const bundle = (await res.json()) as { resourceType: string; entry?: { resource: DocumentReference | Communication }[] };
  expect(bundle.resourceType).toBe('Bundle');
  return (bundle.entry ?? []).map((e) => e.resource);
}
