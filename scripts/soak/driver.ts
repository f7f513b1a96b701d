/**
 * The soak's driver: N referrals through the whole loop with bounded concurrency, spread over
 * both replicas. Each referral: intake (some replayed under the same requestId, some sent twice
 * at once), the record set (the clinic reads the Bundle and every Binary and checks the
 * hashes), the clinic's actions (accept, start, opinion; some request-info answered by the
 * referrer; some decline). Every call a client made is logged with its status, so 5xx can be
 * explained later. Calls are retried on 5xx and refused connections as a real client would.
 */
import { createHash } from 'node:crypto';
import type { Bundle, DocumentReference, Task } from '@medplum/fhirtypes';
import type { ReferralSummary } from '../../src/intake/get-referral-summary.ts';
import { clientIdOf } from '../../test/support/example-network.ts';
import { makeSecondOpinionRequest, type ReferralChart } from '../../test/support/referrals.ts';
import { getAccessToken } from '../../test/support/tokens.ts';
import type { Replica } from './topology.ts';
import { seededRandom } from './schedule.ts';

/** Two clinics that pull their record sets, and one whose record sets are pushed to its own server (push-clinic.ts). */
export const CLINICS = ['lakeside-consults', 'northfield-pathology', 'riverside-imaging'] as const;

const OPINION = {
  diagnosisAgreement: 'agree',
  planAgreement: 'agree-with-modifications',
  diagnosis: [{ system: 'http://snomed.info/sct', code: '428341000124104', display: 'Complication of breast implant' }],
  summary: 'Revision is reasonable once capsular contracture is graded.',
  recommendations: [{ option: 'Implant exchange with capsulectomy', preferred: true, rationale: 'Grade IV contracture', risks: ['Infection'], recovery: '6 weeks' }],
  missingInformation: [],
  followUp: 'Review after imaging.',
};

/** One HTTP call a client made (or tried to). */
export interface ClientCall {
  at: number;
  replica: number;
  method: string;
  path: string;
  status?: number;
  error?: string;
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
}

/** A client of the two replicas: tokens per (process, participant), retries on 5xx and refused connections, every call logged. */
export class SoakClient {
  readonly calls: ClientCall[] = [];
  private tokens = new Map<string, Promise<string>>();
  private readonly replicas: readonly Replica[];
  constructor(replicas: readonly Replica[]) {
    this.replicas = replicas;
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
        const res = await fetch(`${proc.url}${path}`, {
          method,
          headers: { authorization: `Bearer ${await token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(30_000),
        });
        const raw = Buffer.from(await res.arrayBuffer());
        entry.status = res.status;
        const type = res.headers.get('content-type') ?? '';
        const parsed = (type.includes('json') && raw.length ? JSON.parse(raw.toString('utf8')) : undefined) as T;
        last = { status: res.status, body: parsed };
        if (res.status === 401) this.tokens.delete(key);
        if (res.status >= 500 || res.status === 401 || res.status === 429) {
          await sleep(300 * Math.min(attempt + 1, 6));
          continue;
        }
        return { status: res.status, body: parsed, raw, headers: res.headers };
      } catch (err) {
        entry.error = (err as Error).cause ? String(((err as Error).cause as Error).message ?? (err as Error).cause) : (err as Error).message;
        this.tokens.delete(`${proc.url} ${participant}`);
        await sleep(300 * Math.min(attempt + 1, 6));
      }
    }
    if (last) return last;
    throw new Error(`${method} ${path}: no answer after ${retries + 1} attempts`);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs every referral, `concurrency` at a time; `onProgress` after each. */
export async function drive(client: SoakClient, options: DriverOptions, onProgress?: (done: number) => void): Promise<DrivenReferral[]> {
  const random = seededRandom(options.seed ^ 0x5eed);
  const plans = Array.from({ length: options.referrals }, (_, index) => {
    const r = random.next();
    const fate: Fate = r < 0.1 ? 'decline' : r < 0.2 ? 'opinion-after-info' : 'opinion';
    const d = random.next();
    return { index, fate, clinic: CLINICS[index % CLINICS.length] as string, duplicate: d < 0.1 ? ('concurrent' as const) : d < 0.2 ? ('replay' as const) : undefined };
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
        attachmentsVerified: 0,
        attachmentsBad: 0,
        startedAt: Date.now(),
      };
      results.push(referral);
      try {
        await runOne(client, referral, plan.duplicate, { ...options.chart, consentId: options.consents[plan.clinic] ?? options.chart.consentId });
      } catch (err) {
        referral.stuck ??= (err as Error).message;
      }
      onProgress?.(++done);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return results.sort((a, b) => a.index - b.index);
}

async function runOne(client: SoakClient, r: DrivenReferral, duplicate: 'concurrent' | 'replay' | undefined, chart: ReferralChart): Promise<void> {
  const referrer = r.index % 2; // intake on one replica...
  const clinicSide = (r.index + 1) % 2; // ...the clinic's actions on the other
  const request = { ...makeSecondOpinionRequest({ consultants: [r.clinic], blinded: false, firstOpinion: { documents: [] } }, chart), requestId: r.requestId };
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
  const summary = await until(async () => {
    const s = await client.call<ReferralSummary>(referrer, 'GET', `/second-opinions/${r.id}`, 'st-olaf');
    return s.status === 200 && s.body.recordSet.status !== 'records-pending' ? s.body : undefined;
  }, 180_000, 'record assembly');
  r.recordStatus = summary.recordSet.status;
  if (r.recordStatus !== 'records-ready') throw new Error(`records ${r.recordStatus}: ${JSON.stringify(summary.recordSet.consent).slice(0, 300)}`);
  await readRecordSet(client, r, clinicSide);

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

/** The clinic reads the latest record-set Bundle and every attachment; checks size and SHA-1 against the DocumentReference. */
async function readRecordSet(client: SoakClient, r: DrivenReferral, replica: number): Promise<void> {
  const task = await client.call<Task>(replica, 'GET', `/fhir/Task/${r.taskId}`, r.clinic);
  const bundleRef = task.body?.input?.find((i) => i.valueReference?.reference?.startsWith('Bundle/'))?.valueReference?.reference;
  if (!bundleRef) throw new Error('Task without a record-set Bundle');
  r.bundleId = bundleRef.split('/')[1];
  const bundle = await client.call<Bundle>(replica, 'GET', `/fhir/${bundleRef}`, r.clinic);
  if (bundle.status !== 200) throw new Error(`record set answered ${bundle.status}`);
  r.bundleReads++;
  for (const entry of bundle.body.entry ?? []) {
    const doc = entry.resource as DocumentReference;
    if (doc?.resourceType !== 'DocumentReference') continue;
    for (const content of doc.content) {
      const url = content.attachment.url;
      if (!url) continue;
      const binary = await client.call(replica, 'GET', `/fhir/Binary/${url.split('/').pop()}`, r.clinic);
      const bytes = binary.raw ?? Buffer.alloc(0);
      const ok = binary.status === 200 && bytes.length === content.attachment.size && createHash('sha1').update(bytes).digest('base64') === content.attachment.hash;
      if (ok) r.attachmentsVerified++;
      else r.attachmentsBad++;
    }
  }
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
