/**
 * The steps of `npm run bench:delivery` (scripts/bench-delivery.ts): setting up referrals
 * ready for an opinion, submitting opinions and waiting for their consult notes on the sandbox,
 * and the baseline of POSTing the same documents straight to a fresh sandbox.
 */
import { randomUUID } from 'node:crypto';
import type { DocumentReference, Task } from '@medplum/fhirtypes';
import type pg from 'pg';
import { SYSTEM } from '../../src/fhir/constants.ts';
import { clientIdOf } from '../../test/support/example-network.ts';
import { EXAMPLE_OPINION as OPINION } from '../../test/support/opinions.ts';
import { makeSecondOpinionRequest } from '../../test/support/referrals.ts';
import type { SeededIds } from '../../test/support/sandbox-ehr/seed.ts';
import { getAccessToken } from '../../test/support/tokens.ts';
import type { Arrival, IdentifierCounts } from './delivery-sandbox.ts';
import { mapLimit, say, sleep, type Stats, stats } from './lib/common.ts';
import { type HttpResult, request } from './lib/http.ts';
import type { SandboxChild } from './lib/sandbox-process.ts';
import { sandboxToken } from './lib/service-env.ts';

export const REFERRER = 'st-olaf';
export const CONSULTANT = 'lakeside-consults';

/** What the steps need of the bench: set once with `configure` before they run. */
export interface DeliveryContext {
  serviceUrl(): string;
  probe(): pg.Client;
  ehrSeeded(): SeededIds;
  startSandbox(label: string): Promise<SandboxChild>;
  sandboxes: Set<SandboxChild>;
  warmup: number;
  setupConcurrency: number;
  timeoutMs: number;
}
let ctx: DeliveryContext;
export function configure(context: DeliveryContext): void {
  ctx = context;
}

export const fmtMs = (ms: number): string => (!Number.isFinite(ms) ? '—' : Math.abs(ms) >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`);

/** Forgets the service tokens (a new service instance signs with its own key). */
export function clearTokens(): void {
  tokenCache.clear();
}

const tokenCache = new Map<string, { token: string; at: number }>();
/** A service access token for a participant, renewed after 4 minutes (they live 5). */
export async function tokenOf(participant: string): Promise<string> {
  const cached = tokenCache.get(participant);
  if (cached && Date.now() - cached.at < 240_000) return cached.token;
  const token = await getAccessToken(ctx.serviceUrl(), clientIdOf(participant));
  tokenCache.set(participant, { token, at: Date.now() });
  return token;
}
async function call(method: string, pathname: string, participant: string, body?: unknown): Promise<HttpResult> {
  const headers: Record<string, string> = { authorization: `Bearer ${await tokenOf(participant)}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  return request(method, `${ctx.serviceUrl()}${pathname}`, headers, body === undefined ? undefined : JSON.stringify(body));
}
export function expectStatus(res: HttpResult, status: number, what: string): void {
  if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} (expected ${status}) ${res.body.slice(0, 500)}`);
}

/** Polls until `probeFn` returns a value; prints progress every 10 s. */
export async function until<T>(probeFn: () => Promise<T | undefined>, what: string, timeoutMs: number, progress?: () => Promise<string>): Promise<T> {
  const started = Date.now();
  let lastReport = started;
  for (;;) {
    const value = await probeFn();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${fmtMs(timeoutMs)} waiting for ${what}${progress ? ` (${await progress()})` : ''}`);
    if (progress && Date.now() - lastReport >= 10_000) {
      lastReport = Date.now();
      say(`    … ${what}: ${await progress()} after ${fmtMs(Date.now() - started)}`);
    }
    await sleep(100);
  }
}

// ---------------------------------------------------------------- setup
export interface Ready {
  serviceRequestId: string;
  taskId: string;
}

/** N referrals with their record sets assembled and their Task accepted and started. */
export async function setUpReferrals(count: number, chart: SeededIds): Promise<Ready[]> {
  const t0 = performance.now();
  const created = await mapLimit(Array.from({ length: count }), ctx.setupConcurrency, async () => {
    const res = await call('POST', '/second-opinions', REFERRER, makeSecondOpinionRequest({ consultants: [CONSULTANT], blinded: false, firstOpinion: { documents: [] } }, chart));
    expectStatus(res, 201, 'POST /second-opinions');
    const body = JSON.parse(res.body) as { id: string; tasks: Task[] };
    return { serviceRequestId: body.id, taskId: body.tasks[0]?.id as string };
  });
  say(`  ${count} referrals created in ${fmtMs(performance.now() - t0)}`);
  const ids = created.map((c) => c.serviceRequestId);
  const statusCounts = async () => {
    const { rows } = await ctx.probe().query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM record_set_assembly WHERE service_request_id = ANY($1::text[]) GROUP BY status', [ids]);
    return rows;
  };
  const t1 = performance.now();
  const rows = await until(
    async () => {
      const r = await statusCounts();
      return r.reduce((n, x) => n + x.n, 0) >= count ? r : undefined;
    },
    'record sets',
    Math.max(600_000, count * 5000),
    async () => (await statusCounts()).map((r) => `${r.n} ${r.status}`).join(', ') || 'none yet',
  );
  const notReady = rows.filter((r) => r.status !== 'records-ready');
  if (notReady.length) throw new Error(`record sets not ready: ${rows.map((r) => `${r.n} ${r.status}`).join(', ')}`);
  say(`  ${count} record sets assembled in ${fmtMs(performance.now() - t1)}`);
  const t2 = performance.now();
  await mapLimit(created, ctx.setupConcurrency, async ({ taskId }) => {
    expectStatus(await call('POST', `/consults/${taskId}/accept`, CONSULTANT), 200, `accept ${taskId}`);
    expectStatus(await call('POST', `/consults/${taskId}/start`, CONSULTANT), 200, `start ${taskId}`);
  });
  say(`  ${count} Tasks accepted and started in ${fmtMs(performance.now() - t2)}`);
  return created;
}

// ---------------------------------------------------------------- runs
export interface Submission {
  taskId: string;
  noteId: string;
  startMs: number;
  endMs: number;
  status: number;
}

/** Submits the opinions of `tasks` at once; resolves when every consult note has arrived on the sandbox. */
export async function submitAndWait(tasks: readonly Ready[], sandbox: SandboxChild, label: string): Promise<{ subs: Submission[]; arrivalOf: Map<string, number>; statuses: Map<string, number[]>; submitCpuMs: number }> {
  const arrivalOf = new Map<string, number>();
  const statuses = new Map<string, number[]>();
  let wake: (() => void) | undefined;
  const record = (a: Arrival) => {
    if (a.resourceType !== 'DocumentReference' || a.system !== SYSTEM.consultNoteId) return;
    (statuses.get(a.value) ?? statuses.set(a.value, []).get(a.value)!).push(a.status);
    if ((a.status === 201 || a.status === 200) && !arrivalOf.has(a.value)) arrivalOf.set(a.value, a.atMs);
    wake?.();
  };
  sandbox.onArrival = record;
  const token = await tokenOf(CONSULTANT);
  const body = JSON.stringify(OPINION);
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' };

  const cpu0 = process.cpuUsage();
  const subs = await Promise.all(
    tasks.map(async ({ taskId }) => {
      const res = await request('POST', `${ctx.serviceUrl()}/consults/${taskId}/opinion`, headers, body);
      let noteId = '';
      if (res.status === 200) {
        const task = JSON.parse(res.body) as Task;
        noteId = (task.output?.[0]?.valueReference?.reference ?? '').replace(/^DocumentReference\//, '');
      }
      return { taskId, noteId, startMs: res.startMs, endMs: res.endMs, status: res.status, error: res.status === 200 ? undefined : res.body.slice(0, 300) };
    }),
  );
  const submitCpu = process.cpuUsage(cpu0);
  const failed = subs.filter((s) => s.status !== 200 || !s.noteId);
  if (failed.length) throw new Error(`${label}: ${failed.length} submissions failed, e.g. HTTP ${failed[0]?.status} ${failed[0]?.error}`);

  const wanted = new Set(subs.map((s) => s.noteId));
  const arrived = () => [...wanted].filter((id) => arrivalOf.has(id)).length;
  const started = Date.now();
  let lastReport = started;
  while (arrived() < wanted.size) {
    if (Date.now() - started > ctx.timeoutMs) throw new Error(`${label}: only ${arrived()}/${wanted.size} documents arrived within ${fmtMs(ctx.timeoutMs)}`);
    if (Date.now() - lastReport >= 10_000 && wanted.size > 10) {
      lastReport = Date.now();
      say(`    … ${label}: ${arrived()}/${wanted.size} documents on the EHR after ${fmtMs(Date.now() - started)}`);
    }
    await new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, 1000);
    });
    wake = undefined;
  }
  sandbox.onArrival = undefined;
  return { subs, arrivalOf, statuses, submitCpuMs: (submitCpu.user + submitCpu.system) / 1000 };
}

export interface BaselineResult {
  label: string;
  latency: Stats;
  throughput: number;
  spanMs: number;
  bytes: number;
  sandboxCpuMs: number;
}

/**
 * The template with every reference to the measured sandbox's seeded chart pointed at the same
 * resource of another sandbox (each assigns its own ids, and it refuses references to nothing).
 */
function rebase<T>(template: T, from: SeededIds, to: SeededIds): T {
  const pairs = new Map<string, string>();
  const walk = (a: unknown, b: unknown): void => {
    if (typeof a === 'string' && typeof b === 'string') {
      if (a !== b) pairs.set(a, b);
    } else if (a && b && typeof a === 'object' && typeof b === 'object') {
      for (const key of Object.keys(a)) walk((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]);
    }
  };
  walk(from, to);
  let json = JSON.stringify(template);
  for (const [old, fresh] of pairs) json = json.split(`/${old}"`).join(`/${fresh}"`);
  return JSON.parse(json) as T;
}

/** The same documents POSTed at once with conditional create, straight to a fresh sandbox. */
export async function runBaseline(label: string, measuredTemplate: DocumentReference, n: number): Promise<BaselineResult> {
  const sandbox = await ctx.startSandbox(label);
  ctx.sandboxes.add(sandbox);
  try {
    const template = rebase(measuredTemplate, ctx.ehrSeeded(), sandbox.seeded);
    const token = await sandboxToken(sandbox.tokenUrl);
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', accept: 'application/fhir+json' };
    const post = (value: string) => {
      const doc: DocumentReference = { ...template, identifier: [{ system: SYSTEM.consultNoteId, value }] };
      return request('POST', `${sandbox.baseUrl}/DocumentReference`, { ...headers, 'if-none-exist': `identifier=${encodeURIComponent(SYSTEM.consultNoteId)}|${encodeURIComponent(value)}` }, JSON.stringify(doc));
    };
    // Warm-up, as the service had: one document, and the connection/JIT of both sides.
    for (let i = 0; i < ctx.warmup; i++) expectStatus(await post(randomUUID()), 201, `${label} warm-up`);
    const arrivalOf = new Map<string, number>();
    sandbox.onArrival = (a) => {
      if (a.resourceType === 'DocumentReference' && (a.status === 201 || a.status === 200) && !arrivalOf.has(a.value)) arrivalOf.set(a.value, a.atMs);
    };
    const values = Array.from({ length: n }, () => randomUUID());
    const bytes = Buffer.byteLength(JSON.stringify({ ...template, identifier: [{ system: SYSTEM.consultNoteId, value: values[0] }] }));
    const cpu0 = await sandbox.command<{ cpuMs: number }>({ type: 'usage' });
    const results = await Promise.all(values.map(async (v) => ({ v, res: await post(v) })));
    const bad = results.filter((r) => r.res.status !== 201);
    if (bad.length) throw new Error(`${label}: ${bad.length} POSTs failed, e.g. HTTP ${bad[0]?.res.status} ${bad[0]?.res.body.slice(0, 300)}`);
    await until(async () => (values.every((v) => arrivalOf.has(v)) ? true : undefined), `${label} arrivals`, 30_000);
    const cpu1 = await sandbox.command<{ cpuMs: number }>({ type: 'usage' });
    const latencies = results.map(({ v, res }) => (arrivalOf.get(v) as number) - res.startMs);
    const first = Math.min(...results.map((r) => r.res.startMs));
    const last = Math.max(...values.map((v) => arrivalOf.get(v) as number));
    const { counts } = await sandbox.command<{ counts: IdentifierCounts }>({ type: 'identifiers', resourceType: 'DocumentReference' });
    const missing = values.filter((v) => counts[`${SYSTEM.consultNoteId}|${v}`] !== 1).length;
    if (missing) throw new Error(`${label}: ${missing} documents not stored exactly once`);
    return { label, latency: stats(latencies), throughput: n / ((last - first) / 1000), spanMs: last - first, bytes, sandboxCpuMs: cpu1.cpuMs - cpu0.cpuMs };
  } finally {
    ctx.sandboxes.delete(sandbox);
    await sandbox.stop();
  }
}

