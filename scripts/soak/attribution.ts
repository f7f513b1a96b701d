/**
 * Which injected fault explains a server error a client saw or a job the queue gave up on.
 * Pure: windows and calls in, causes out, so the rules are unit-tested (test/soak/).
 *
 * - A client's 5xx (or reset connection) is explained by a fault that hit the replica that
 *   answered (kill-replica on THAT replica), by one that hit the database both replicas share
 *   (postgres-restart, postgres-terminate), or, for a request that reads the referring EHR while
 *   the client waits, by a fault on the EHR's reads.
 * - A dead-lettered job is explained only by a PERMANENT fault (one that answers every matching
 *   request until it is cleared) of a kind that can fail THAT queue's work, in force during the
 *   job's life. The schedule's EHR faults fail 1-6 requests, and every queue retries more often
 *   than that (record assembly 13 attempts, post-back 31, notifications 21), so no transient fault
 *   may ever use up a job's retries: a dead letter with only transient faults around it is a bug.
 */
import { QUEUE } from '../../src/jobs/queues.ts';
import type { FaultWindow } from './faults.ts';

/** A second of slack before a fault's start: the clocks of the schedule and of the call differ by the time it took to inject. */
const SLACK_MS = 1_000;

const isEhrRead = (kind: string) => kind.startsWith('ehr-read-') || kind === 'ehr-binary-truncated';
const isPostback = (kind: string) => kind.startsWith('ehr-postback-');
const isDatabase = (kind: string) => kind === 'postgres-restart' || kind === 'postgres-terminate';

/** The kinds of fault that can fail each queue's work (a queue not named here: none). */
export const FAULTS_BY_QUEUE: Readonly<Record<string, (kind: string) => boolean>> = {
  [QUEUE.assembleRecordSet]: isEhrRead,
  [QUEUE.deliverOpinion]: isPostback,
  [QUEUE.deliverFollowUpAnswer]: isPostback,
  [QUEUE.notifyWebhook]: (kind) => kind === 'webhook-receiver-down',
  [QUEUE.notifySubscription]: (kind) => kind === 'webhook-receiver-down',
  [QUEUE.pushRecordSet]: (kind) => kind.startsWith('clinic-push-'),
};

/**
 * Calls that read the referring EHR while the client waits: intake (the patient, the Consent),
 * the referrer's answer to a question, and the clinic's reads of a record set and its
 * attachments (the Consent is read again before a disclosure once CONSENT_RECHECK_SECONDS passed).
 * A summary, a consult action or a Task read does not.
 */
export function readsEhrSynchronously(method: string, path: string): boolean {
  const bare = path.split('?')[0] as string;
  if (method === 'POST') return bare === '/second-opinions' || /^\/second-opinions\/[^/]+\/info$/.test(bare);
  if (method === 'GET') return /^\/fhir\/(Bundle|Binary)\//.test(bare);
  return false;
}

/** The fault was in force at some moment of [from, to] (a second's slack before its start). */
const inForce = (w: FaultWindow, from: number, to = from) => to >= w.start - SLACK_MS && from <= (w.end ?? Infinity);

/** The text of the service's 503 when its database is unreachable (src/http/errors.ts). */
const DATABASE_UNREACHABLE = /cannot reach its database/;

/**
 * The fault that explains a 5xx or a reset connection a client saw between `at` and `endedAt` from replica
 * `replica`, if any. An answer saying the database is unreachable is put down to a database
 * fault only; otherwise a kill of that replica comes first, then a database fault, then (for a
 * call that reads the EHR) an EHR read fault.
 */
export function explainServerError(call: { at: number; endedAt?: number; replica: number; method: string; path: string; outcome?: string }, windows: readonly FaultWindow[]): FaultWindow | undefined {
  // From the moment the call was made to the moment it failed: a request in flight when a
  // replica is killed fails when the process dies, seconds after it was sent.
  const current = windows.filter((w) => inForce(w, call.at, call.endedAt ?? call.at));
  const database = current.find((w) => isDatabase(w.kind));
  if (call.outcome && DATABASE_UNREACHABLE.test(call.outcome)) return database;
  const readsEhr = readsEhrSynchronously(call.method, call.path);
  return current.find((w) => w.kind === 'kill-replica' && w.replica === call.replica) ?? database ?? (readsEhr ? current.find((w) => isEhrRead(w.kind)) : undefined);
}

/** The fault that explains a dead-lettered job of `queue` that lived from `from` to `to`, if any. */
export function explainDeadLetter(job: { queue: string; from: number; to: number }, windows: readonly FaultWindow[]): FaultWindow | undefined {
  const fits = FAULTS_BY_QUEUE[job.queue];
  if (!fits) return undefined;
  return windows.find((w) => w.permanent === true && fits(w.kind) && w.start - SLACK_MS <= job.to && (w.end ?? Infinity) >= job.from);
}

/** What a client saw of one 5xx (never a body beyond the OperationOutcome's text, which carries no PHI). */
export interface ServerErrorSeen {
  status: string;
  explainedBy?: string;
  retryAfter?: string;
  outcome?: string;
}

/**
 * The "5xx by cause" line: one group per cause, status, Retry-After and OperationOutcome text,
 * most frequent first: `postgres-restart: 7 × 503 Retry-After 1 "The database is unavailable"`.
 */
export function summarizeByCause(errors: readonly ServerErrorSeen[]): string[] {
  const groups = new Map<string, number>();
  for (const e of errors) {
    const key = `${e.explainedBy ?? 'unexplained'}: ${'\u0000'}${e.status}${e.retryAfter ? ` Retry-After ${e.retryAfter}` : ''}${e.outcome ? ` "${e.outcome}"` : ''}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  return [...groups]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([key, n]) => key.replace('\u0000', `${n} × `));
}

/** The OperationOutcome's first text, shortened, or undefined: what a 5xx said, for the report. */
export function outcomeText(body: unknown): string | undefined {
  const issue = (body as { resourceType?: string; issue?: { details?: { text?: string }; diagnostics?: string; code?: string }[] } | undefined)?.issue?.[0];
  if (!issue) return undefined;
  const text = issue.details?.text ?? issue.diagnostics ?? issue.code;
  return text ? (text.length > 100 ? `${text.slice(0, 99)}…` : text) : undefined;
}
