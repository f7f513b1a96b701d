import { rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';
import { parseSearchRequest } from '@medplum/core';
import type { Communication, DocumentReference, Task } from '@medplum/fhirtypes';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OPINION_NOTIFICATION_SYSTEM } from '../src/delivery/deliver-opinion.ts';
import { SYSTEM } from '../src/fhir/constants.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { createProcessDatabase, type ProcessDatabase, type ServiceProcess, startServiceProcess, writeSandboxNetwork } from './support/service-process.ts';
import { getAccessToken } from './support/tokens.ts';

/** One request's fate, as a keep-alive client saw it: the status, `Connection` header and which connection carried it, or the error code. */
type Outcome = { status: number; connection: string | undefined; socket: number } | { error: string };

const socketIds = new WeakMap<Socket, number>();
let sockets = 0;

/** GET over a keep-alive agent; resolves with the status and `Connection` header, or the error code. */
function get(agent: Agent, url: string, headers: Record<string, string>): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request(url, { agent, headers }, (res) => {
      res.resume();
      const socket = req.socket as Socket;
      if (!socketIds.has(socket)) socketIds.set(socket, ++sockets);
      res.on('end', () => resolve({ status: res.statusCode as number, connection: res.headers.connection, socket: socketIds.get(socket) as number }));
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

/**
 * Graceful shutdown of the real process (`npm start`'s command line), on the store the run uses:
 * SIGTERM during a burst of keep-alive requests resets none of them, and a delivery job running
 * at SIGTERM is handed back to the queue, then done exactly once after a restart.
 */
describe('graceful shutdown (service processes)', () => {
  let database: ProcessDatabase;
  let ehr: SandboxEhr | undefined;
  let networkFile: string | undefined;
  const processes: ServiceProcess[] = [];

  beforeEach(async () => {
    database = await createProcessDatabase();
  });
  afterEach(async () => {
    await Promise.all(processes.splice(0).map((p) => p.stop()));
    await ehr?.stop();
    ehr = undefined;
    if (networkFile) await rm(path.dirname(networkFile), { recursive: true, force: true });
    networkFile = undefined;
    await database.drop();
  });

  async function start(env: Record<string, string>): Promise<ServiceProcess> {
    const svc = await startServiceProcess({ ...database.env, ...env });
    processes.push(svc);
    return svc;
  }

  it('SIGTERM during a burst of keep-alive requests: each completes or is refused, none reset; answers in flight at the drain say Connection: close; exit 0', async () => {
    const svc = await start({});
    const token = await getAccessToken(svc.url, 'st-olaf-ehr');
    const agent = new Agent({ keepAlive: true, maxSockets: 6 });
    const paths = ['/fhir/metadata', '/readyz', '/fhir/Task?_count=5', '/fhir/ServiceRequest?_count=5'];
    let terminated = false;
    let sent = 0;
    const worker = async (w: number): Promise<Outcome[]> => {
      const seen: Outcome[] = [];
      for (let i = 0; ; i++) {
        const outcome = await get(agent, `${svc.url}${paths[(w + i) % paths.length] as string}`, { authorization: `Bearer ${token}` });
        seen.push(outcome);
        if (++sent === 120) {
          // Mid-burst: the other workers have requests in flight.
          terminated = true;
          svc.kill('SIGTERM');
        }
        // Refused: the listener is closed; this worker is done (the service is draining or gone).
        if ('error' in outcome && outcome.error === 'ECONNREFUSED') return seen;
        if ('error' in outcome) return seen;
      }
    };
    const results = await Promise.all(Array.from({ length: 6 }, (_, w) => worker(w)));
    agent.destroy();
    expect(terminated).toBe(true);
    expect(await svc.exit).toBe(0);
    expect(svc.logs.map((l) => l.msg)).toEqual(expect.arrayContaining(['shutting down', 'stopped']));

    // Every worker ended on a refused connection, never a reset one; everything before was answered 200.
    for (const seen of results) expect(seen.at(-1)).toEqual({ error: 'ECONNREFUSED' });
    const answered = results.flatMap((seen) => seen.slice(0, -1)) as Exclude<Outcome, { error: string }>[];
    expect(answered.length).toBeGreaterThanOrEqual(120);
    for (const o of answered) expect(o).toMatchObject({ status: 200 });
    // Every request that reached a connection during the drain was answered `Connection: close`.
    // A connection the client's Agent left idle in its pool from before the SIGTERM (it reuses
    // the most recently freed socket first) got no request after it, so its last answer is from
    // before the drain; the service leaves idle connections alone, and it went with the process.
    // Nothing was reset (above), and the drain's answers did say `close`.
    const lastOnSocket = new Map<number, string | undefined>();
    for (const o of answered) lastOnSocket.set(o.socket, o.connection);
    // (At least the six the workers ran on, and a new one after each `Connection: close` before the listener closed.)
    expect(lastOnSocket.size).toBeGreaterThanOrEqual(6);
    expect([...lastOnSocket.values()].filter((c) => c === 'close').length).toBeGreaterThanOrEqual(1);
  }, 180_000);

  /**
   * A referral in progress on a service process talking to a fresh sandbox EHR, and a hold on the
   * EHR's answer to the opinion's DocumentReference POST (stored first): the service gets
   * SIGTERM while the answer is held. Returns the process, the ids, and `release()`.
   */
  async function deliveryAtSigterm(shutdownSeconds: string) {
    const sandbox = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 10_000 } });
    ehr = sandbox;
    networkFile = await writeSandboxNetwork(sandbox);
    // Retries after 1 s; the lease is long, so only a hand-back (not an expired lease) retries at once.
    // Keep-alive 1 s (`Keep-Alive: timeout=1`): fetch keeps none of this test's connections idle,
    // so the stops do not wait out the default 5 s for them.
    const env = { NETWORK_FILE: networkFile, SHUTDOWN_TIMEOUT_SECONDS: shutdownSeconds, DELIVERY_RETRY_DELAY_SECONDS: '1', DELIVERY_RETRY_MAX_DELAY_SECONDS: '2', DELIVERY_ATTEMPT_TIMEOUT_SECONDS: '120', HTTP_KEEP_ALIVE_TIMEOUT_MS: '1000' };
    const svc = await start(env);
    const request = makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } }, sandbox.seeded);
    const created = await svc.call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', request);
    expect(created.status).toBe(201);
    const { id } = created.body;
    const taskId = created.body.tasks[0]?.id as string;
    await until(async () => ((await svc.call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), `records of ${id}`, 90_000);
    expect((await svc.call('POST', `/consults/${taskId}/accept`, 'lakeside-consults')).status).toBe(200);
    expect((await svc.call('POST', `/consults/${taskId}/start`, 'lakeside-consults')).status).toBe(200);

    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let signalled!: () => void;
    const sigtermSent = new Promise<void>((resolve) => (signalled = resolve));
    sandbox.faults.add({
      path: /^\/fhir\/R4\/DocumentReference(\?|$)/,
      method: 'POST',
      times: 1,
      beforeResponse: async () => {
        svc.kill('SIGTERM');
        signalled();
        await held;
      },
    });
    const opinion = await svc.call<Task>('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', EXAMPLE_OPINION);
    expect(opinion.status).toBe(200);
    const noteId = (opinion.body.output?.[0]?.valueReference?.reference as string).split('/')[1] as string;
    await sigtermSent;
    return { sandbox, svc, env, id, noteId, release };
  }

  /** Exactly one note and one Communication about it on the EHR, and the referrer's summary says delivered. */
  async function deliveredOnce(sandbox: SandboxEhr, svc: ServiceProcess, id: string, noteId: string): Promise<void> {
    const docs = await onEhr<DocumentReference>(sandbox, 'DocumentReference', SYSTEM.consultNoteId, noteId);
    expect(docs).toHaveLength(1);
    const comms = await onEhr<Communication>(sandbox, 'Communication', OPINION_NOTIFICATION_SYSTEM, noteId);
    expect(comms).toHaveLength(1);
    expect(comms[0]?.about).toEqual([{ reference: `DocumentReference/${docs[0]?.id as string}` }]);
    const summary = await svc.call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf');
    expect(summary.body.consultants[0]?.delivery).toMatchObject({ id: noteId, status: 'delivered' });
  }

  it('a delivery running at SIGTERM finishes within the shutdown budget: delivered once, then exit 0', async () => {
    const { sandbox, svc, env, id, noteId, release } = await deliveryAtSigterm('60');
    await svc.waitFor((l) => l.msg === 'shutting down');
    // The EHR answers while the service drains: the running attempt completes.
    release();
    expect(await svc.exit).toBe(0);
    const messages = svc.logs.map((l) => l.msg);
    const done = svc.logs.find((l) => l.msg === 'opinion delivery' && l.deliveryId === noteId);
    expect(done).toMatchObject({ outcome: 'delivered', attempt: 1 });
    expect(messages.indexOf('opinion delivery')).toBeGreaterThan(messages.indexOf('shutting down'));
    expect(messages.at(-1)).toBe('stopped');
    // Restarted, nothing is sent again.
    const second = await start(env);
    await deliveredOnce(sandbox, second, id, noteId);
    expect(sandbox.requests.filter((r) => r.method === 'POST' && /^\/fhir\/R4\/DocumentReference(\?|$)/.test(r.path))).toHaveLength(1);
  }, 300_000);

  it('a delivery still held by the EHR when the budget runs out is handed back to the queue; after a restart the opinion is on the EHR exactly once', async () => {
    const { sandbox, svc, env, id, noteId, release } = await deliveryAtSigterm('2');
    // The drain ends with the attempt still held: the process exits 0 without having delivered.
    expect(await svc.exit).toBe(0);
    release();
    expect(svc.logs.map((l) => l.msg)).toContain('stopped');
    expect(svc.logs.some((l) => l.msg === 'opinion delivery')).toBe(false);
    expect(await onEhr<DocumentReference>(sandbox, 'DocumentReference', SYSTEM.consultNoteId, noteId)).toHaveLength(1);
    expect(await onEhr<Communication>(sandbox, 'Communication', OPINION_NOTIFICATION_SYSTEM, noteId)).toHaveLength(0);

    // Restarted on the same store, the handed-back job is retried (at once, not after its 120 s lease).
    const second = await start(env);
    const done = await second.waitFor((l) => l.msg === 'opinion delivery' && l.deliveryId === noteId, 90_000);
    expect(done).toMatchObject({ outcome: 'delivered', attempt: 2 });
    await deliveredOnce(sandbox, second, id, noteId);
  }, 300_000);
});

async function onEhr<T extends DocumentReference | Communication>(ehr: SandboxEhr, type: T['resourceType'], system: string, value: string): Promise<T[]> {
  return (await ehr.repo.searchResources(parseSearchRequest(`${type}?identifier=${encodeURIComponent(`${system}|${value}`)}`))) as T[];
}
