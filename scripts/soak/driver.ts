/**
 * The soak's driver: N referrals through the whole loop with bounded concurrency, spread over
 * both replicas. Each referral: intake (some replayed under the same requestId, some sent twice
 * at once), the record set (the clinic reads the Bundle and every Binary and checks the
 * hashes), the clinic's actions (accept, start, opinion; some request-info answered by the
 * referrer; some decline). About 10 % leave out a required record, which the referrer supplies
 * once the first assembly reports it missing (later-records.ts). Every call a client made is
 * logged with its status (a 5xx with its Retry-After and OperationOutcome text), so 5xx can be
 * explained later, and every successful read with the request id the service answered with, so
 * its AuditEvent can be found. Calls are retried on 5xx and refused connections as a real client would.
 */
import { createHash } from 'node:crypto';
import type { Bundle, DocumentReference, Task } from '@medplum/fhirtypes';
import type { ReferralSummary } from '../../src/intake/get-referral-summary.ts';
import { clientIdOf } from '../../test/support/example-network.ts';
import { makeSecondOpinionRequest, type ReferralChart } from '../../test/support/referrals.ts';
import { getAccessToken } from '../../test/support/tokens.ts';
import { outcomeText } from './attribution.ts';
import { AgentPerProcess, HttpCallError, request } from './http-client.ts';
import type { AuditKind } from './audits.ts';
import { type LaterRecord, namesRecord } from './later-records.ts';
import type { Replica } from './topology.ts';
import { seededRandom } from './schedule.ts';
import { IMPLANT_OPINION as OPINION } from '../../test/support/opinions.ts';

/** Two clinics that pull their record sets, and one whose record sets are pushed to its own server (push-clinic.ts). */
export const CLINICS = ['lakeside-consults', 'northfield-pathology', 'riverside-imaging'] as const;

/** One HTTP call a client made (or tried to). */
export interface ClientCall {
  at: number;
  replica: number;
  method: string;
  path: string;
  status?: number;
  error?: string;
  /** A 5xx's Retry-After header and its OperationOutcome's text (no PHI: the service's own words). */
  retryAfter?: string;
  outcome?: string;
  /** The request went out on a kept-alive connection (an earlier answer came on it). */
  reused?: boolean;
  /** When its answer or its error came. */
  endedAt?: number;
}

export type Fate = 'opinion' | 'opinion-after-info' | 'decline';

/** What the driver knows of one referral at the end. */
export interface DrivenReferral {
  index: number;
  requestId: string;
  clinic: string;
  fate: Fate;
  /** Every referral id an intake answer named (more than one: a duplicate referral). */
  ids: Set<string>;
  id?: string;
  taskId?: string;
  /** The consult note id (= the delivery id) when an opinion was submitted. */
  noteId?: string;
  recordStatus?: string;
  bundleId?: string;
  /** Successful reads of the record-set Bundle by the clinic (each a disclosure). */
  bundleReads: number;
  /** Every successful disclosure read (record set, attachment), with the X-Request-Id of its answer: each must have its AuditEvent. */
  reads: { kind: AuditKind; reference: string; requestId?: string }[];
  /** Planned to leave out a required record and supply it later: what was supplied, and whether the clinic found it in its record set, verified. */
  later?: { supplied?: LaterRecord; reached: boolean; why?: string; postedAgain?: number };
  /** Attachments read and checked against their declared size and SHA-1. */
  attachmentsVerified: number;
  attachmentsBad: number;
  startedAt: number;
  finishedAt?: number;
  /** Where it stopped, when it did not reach its end. */
  stuck?: string;
}

export interface DriverOptions {
  referrals: number;
  concurrency: number;
  seed: number;
  chart: ReferralChart;
  /** The Consent id that covers each clinic. */
  consents: Record<string, string>;
  /** Writes a record on the referrer's EHR (the one supplied later); without it no referral leaves a record out. */
  supplyRecord?: (label: string) => Promise<LaterRecord>;
}

/** A client of the two replicas: tokens per (process, participant), retries on 5xx and refused connections, every call logged. */
export class SoakClient {
  readonly calls: ClientCall[] = [];
  private tokens = new Map<string, Promise<string>>();
  private readonly replicas: readonly Replica[];
  private readonly agents = new AgentPerProcess<object>();
  constructor(replicas: readonly Replica[]) {
    this.replicas = replicas;
  }

  /** Closes the connections still open. */
  close(): void {
    this.agents.destroy();
  }

  async call<T>(replica: number, method: string, path: string, participant: string, body?: unknown, options: { retries?: number; accept?: (status: number) => boolean } = {}): Promise<{ status: number; body: T; raw?: Buffer; headers?: Headers }> {
    const retries = options.retries ?? 12;
    let last: { status: number; body: T } | undefined;
    for (let attempt = 0; attempt <= retries; attempt++) {
      // Fail over to the other replica when this one is down (a load balancer would).
      const slot = this.replicas[(replica + attempt) % this.replicas.length] as Replica;
      const proc = slot.current;
      const entry: ClientCall = { at: Date.now(), replica: slot.index, method, path };
      this.calls.push(entry);
      if (!proc || proc.exited) {
        entry.error = 'replica down';
        await sleep(500 * Math.min(attempt + 1, 4));
        continue;
      }
      try {
        const key = `${proc.url} ${participant}`;
        let token = this.tokens.get(key);
        if (!token) {
          token = getAccessToken(proc.url, clientIdOf(participant));
          this.tokens.set(key, token);
          token.catch(() => this.tokens.delete(key));
        }
        const res = await request(`${proc.url}${path}`, {
          agent: this.agents.agentFor(slot.index, proc),
          method,
          headers: { authorization: `Bearer ${await token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          timeoutMs: 30_000,
        });
        const raw = res.raw;
        entry.endedAt = Date.now();
        entry.status = res.status;
        if (res.reused) entry.reused = true;
        const type = res.headers.get('content-type') ?? '';
        const parsed = (type.includes('json') && raw.length ? JSON.parse(raw.toString('utf8')) : undefined) as T;
        last = { status: res.status, body: parsed };
        if (res.status >= 500) {
          const retryAfter = res.headers.get('retry-after');
          if (retryAfter) entry.retryAfter = retryAfter;
          const text = outcomeText(parsed);
          if (text) entry.outcome = text;
        }
        if (res.status === 401) this.tokens.delete(key);
        if (res.status >= 500 || res.status === 401 || res.status === 429) {
          await sleep(300 * Math.min(attempt + 1, 6));
          continue;
        }
        return { status: res.status, body: parsed, raw, headers: res.headers };
      } catch (err) {
        entry.error = (err as Error).cause ? String(((err as Error).cause as Error).message ?? (err as Error).cause) : (err as Error).message;
        entry.endedAt = Date.now();
        if (err instanceof HttpCallError && err.reused) entry.reused = true;
        this.tokens.delete(`${proc.url} ${participant}`);
        await sleep(300 * Math.min(attempt + 1, 6));
      }
    }
    if (last) return last;
    throw new Error(`${method} ${path}: no answer after ${retries + 1} attempts`);
  }
}

/** How many times the referrer posts a record supplied later while the assembly leaves it out. */
const REPOSTS = 8;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs every referral, `concurrency` at a time; `onProgress` after each. */
export async function drive(client: SoakClient, options: DriverOptions, onProgress?: (done: number) => void): Promise<DrivenReferral[]> {
  const random = seededRandom(options.seed ^ 0x5eed);
  // Its own sequence, so adding it left every other referral's path for a seed as it was.
  const laterRandom = seededRandom(options.seed ^ 0x1a7e);
  const plans = Array.from({ length: options.referrals }, (_, index) => {
    const r = random.next();
    const fate: Fate = r < 0.1 ? 'decline' : r < 0.2 ? 'opinion-after-info' : 'opinion';
    const d = random.next();
    const later = laterRandom.next() < 0.1 && options.supplyRecord !== undefined;
    return { index, fate, later, clinic: CLINICS[index % CLINICS.length] as string, duplicate: d < 0.1 ? ('concurrent' as const) : d < 0.2 ? ('replay' as const) : undefined };
  });
  const results: DrivenReferral[] = [];
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (;;) {
      const plan = plans[next++];
      if (!plan) return;
      const referral: DrivenReferral = {
        index: plan.index,
        requestId: `SOAK-${options.seed}-${plan.index}`,
        clinic: plan.clinic,
        fate: plan.fate,
        ids: new Set(),
        bundleReads: 0,
        reads: [],
        ...(plan.later ? { later: { reached: false } } : {}),
        attachmentsVerified: 0,
        attachmentsBad: 0,
        startedAt: Date.now(),
      };
      results.push(referral);
      try {
        await runOne(client, referral, plan.duplicate, { ...options.chart, consentId: options.consents[plan.clinic] ?? options.chart.consentId }, options.supplyRecord);
      } catch (err) {
        referral.stuck ??= (err as Error).message;
      }
      onProgress?.(++done);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return results.sort((a, b) => a.index - b.index);
}

async function runOne(client: SoakClient, r: DrivenReferral, duplicate: 'concurrent' | 'replay' | undefined, chart: ReferralChart, supplyRecord?: DriverOptions['supplyRecord']): Promise<void> {
  const referrer = r.index % 2; // intake on one replica...
  const clinicSide = (r.index + 1) % 2; // ...the clinic's actions on the other
  const request: Record<string, unknown> = { ...makeSecondOpinionRequest({ consultants: [r.clinic], blinded: false, firstOpinion: { documents: [] } }, chart), requestId: r.requestId };
  if (r.later) {
    // A revision without its surgical operation note (named, and searched for, by the example): only a progress note.
    const progress = chart.documents.find((d) => d.key === 'progress-2024');
    if (!progress) throw new Error('the sandbox chart has no progress-2024');
    request.records = { documents: [{ reference: `DocumentReference/${progress.id}` }] };
  }
  type Created = { id: string; tasks: Task[] };
  const intake = () => client.call<Created>(referrer, 'POST', '/second-opinions', 'st-olaf', request);
  const answers = duplicate === 'concurrent' ? await Promise.all([intake(), client.call<Created>(clinicSide, 'POST', '/second-opinions', 'st-olaf', request)]) : [await intake()];
  if (duplicate === 'replay') answers.push(await intake());
  for (const a of answers) if ((a.status === 200 || a.status === 201) && a.body?.id) r.ids.add(a.body.id);
  const first = answers.find((a) => a.status === 200 || a.status === 201);
  if (!first) throw new Error(`intake answered ${answers.map((a) => a.status).join(', ')}`);
  r.id = first.body.id;
  r.taskId = first.body.tasks?.[0]?.id;
  if (!r.taskId) throw new Error('intake answer without a Task');

  // Records: wait for the assembly.
  const assembled = (revision: number) =>
    until(async () => {
      const s = await client.call<ReferralSummary>(referrer, 'GET', `/second-opinions/${r.id}`, 'st-olaf');
      return s.status === 200 && s.body.recordSet.status !== 'records-pending' && (s.body.recordSet.assembledRevision ?? 0) >= revision ? s.body : undefined;
    }, 180_000, 'record assembly');
  let summary = await assembled(0);
  if (r.later) {
    if (summary.recordSet.status !== 'awaiting-records') r.later.why = `the first assembly ended ${summary.recordSet.status}, not awaiting-records`;
    if (!supplyRecord) throw new Error('no way to supply a record');
    const supplied = await supplyRecord(r.requestId);
    r.later.supplied = supplied;
    // The referrer posts the record, and posts it again while the assembly reports it left out
    // (an attachment download cut short by the EHR fails its size check), as the docs say to:
    // up to REPOSTS times, more than the 6 requests an EHR fault of the schedule fails.
    for (let attempt = 1; ; attempt++) {
      const added = await client.call<{ recordsRevision: number }>(referrer, 'POST', `/second-opinions/${r.id}/records`, 'st-olaf', { documents: [{ reference: supplied.reference, display: 'Operative note' }] });
      if (added.status !== 202 && added.status !== 200) throw new Error(`adding records answered ${added.status}`);
      summary = await assembled(added.body.recordsRevision);
      const leftOut = [...summary.recordSet.integrityFailures, ...summary.recordSet.missing.documents].some((d) => namesRecord((d as { reference?: string }).reference, supplied.reference));
      if (!leftOut || attempt === REPOSTS) break;
      r.later.postedAgain = attempt;
    }
  }
  r.recordStatus = summary.recordSet.status;
  if (r.recordStatus !== 'records-ready') throw new Error(`records ${r.recordStatus}: ${JSON.stringify(summary.recordSet.consent).slice(0, 300)}`);
  const copies = await readRecordSet(client, r, clinicSide);
  if (r.later?.supplied) {
    const { supplied } = r.later;
    const copy = copies.find((c) => namesRecord(c.source, supplied.reference));
    if (r.bundleId !== summary.recordSet.versions[0]) r.later.why ??= `the clinic read record set ${r.bundleId}, not the newest (${summary.recordSet.versions[0]})`;
    else if (!copy) r.later.why ??= `not in record set ${r.bundleId}`;
    else if (!copy.ok || copy.size !== supplied.size || copy.sha1 !== supplied.sha1) r.later.why ??= `in record set ${r.bundleId}, but its attachment does not match the EHR's (${copy.size} bytes)`;
    else if (!r.later.why) r.later.reached = true;
  }

  const act = async (action: string, body?: unknown, wanted?: string) => {
    const res = await client.call<Task>(clinicSide, 'POST', `/consults/${r.taskId}/${action}`, r.clinic, body);
    if (res.status === 200) return res.body;
    // A retried action whose first attempt was done (its answer lost): the Task already moved on.
    const task = await client.call<Task>(clinicSide, 'GET', `/fhir/Task/${r.taskId}`, r.clinic);
    if (wanted && task.body?.status === wanted) return task.body;
    throw new Error(`${action} answered ${res.status}`);
  };
  if (r.fate === 'decline') {
    await act('decline', { reason: 'No capacity this month' }, 'rejected');
    r.finishedAt = Date.now();
    return;
  }
  await act('accept', undefined, 'accepted');
  await act('start', undefined, 'in-progress');
  if (r.fate === 'opinion-after-info') {
    await act('request-info', { question: 'Which implant was used?' }, 'on-hold');
    const answered = await client.call(referrer, 'POST', `/second-opinions/${r.id}/info`, 'st-olaf', { text: 'Silicone, 2019.' });
    if (answered.status !== 200) {
      const task = await client.call<Task>(clinicSide, 'GET', `/fhir/Task/${r.taskId}`, r.clinic);
      if (task.body?.status !== 'in-progress') throw new Error(`info answer ${answered.status}`);
    }
  }
  const task = await act('opinion', OPINION, 'completed');
  const reference = task.output?.find((o) => o.valueReference?.reference?.startsWith('DocumentReference/'))?.valueReference?.reference;
  if (!reference) throw new Error('opinion without a consult note');
  r.noteId = reference.split('/')[1];
  r.finishedAt = Date.now();
}

/** One attachment the clinic downloaded: the record it belongs to (the copy's `meta.source`), what it got, and whether that matched the copy's declaration. */
interface Downloaded {
  source?: string;
  size: number;
  sha1: string;
  ok: boolean;
}

/** The clinic reads the latest record-set Bundle and every attachment; checks size and SHA-1 against the DocumentReference. */
async function readRecordSet(client: SoakClient, r: DrivenReferral, replica: number): Promise<Downloaded[]> {
  const downloaded: Downloaded[] = [];
  const requestIdOf = (headers?: Headers) => headers?.get('x-request-id') ?? undefined;
  const task = await client.call<Task>(replica, 'GET', `/fhir/Task/${r.taskId}`, r.clinic);
  const bundleRef = task.body?.input?.find((i) => i.valueReference?.reference?.startsWith('Bundle/'))?.valueReference?.reference;
  if (!bundleRef) throw new Error('Task without a record-set Bundle');
  r.bundleId = bundleRef.split('/')[1];
  const bundle = await client.call<Bundle>(replica, 'GET', `/fhir/${bundleRef}`, r.clinic);
  if (bundle.status !== 200) throw new Error(`record set answered ${bundle.status}`);
  r.bundleReads++;
  r.reads.push({ kind: 'record-set reads', reference: bundleRef, ...(requestIdOf(bundle.headers) ? { requestId: requestIdOf(bundle.headers) } : {}) });
  for (const entry of bundle.body.entry ?? []) {
    const doc = entry.resource as DocumentReference;
    if (doc?.resourceType !== 'DocumentReference') continue;
    for (const content of doc.content) {
      const url = content.attachment.url;
      if (!url) continue;
      const id = url.split('/').pop() as string;
      const binary = await client.call(replica, 'GET', `/fhir/Binary/${id}`, r.clinic);
      const bytes = binary.raw ?? Buffer.alloc(0);
      if (binary.status === 200) r.reads.push({ kind: 'attachment downloads', reference: `Binary/${id}`, ...(requestIdOf(binary.headers) ? { requestId: requestIdOf(binary.headers) } : {}) });
      const sha1 = createHash('sha1').update(bytes).digest('base64');
      const ok = binary.status === 200 && bytes.length === content.attachment.size && sha1 === content.attachment.hash;
      if (ok) r.attachmentsVerified++;
      else r.attachmentsBad++;
      downloaded.push({ ...(doc.meta?.source ? { source: doc.meta.source } : {}), size: bytes.length, sha1, ok });
    }
  }
  return downloaded;
}

async function until<T>(probe: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}
