/**
 * The soak's verdict and table. Pure: given what the checks found, decides pass/fail and
 * formats the one table a run prints. A run fails on any lost or duplicated clinical document
 * (or duplicated referral), any successful disclosure (record-set read, attachment download,
 * post-back) without its AuditEvent, any record supplied later that did not reach the clinic's
 * record set, any 5xx (or refused connection) that no injected fault explains, and any
 * dead-lettered job no permanent fault explains; on a Task change without its webhook or
 * Subscription event (notification-checks.ts); and on a record set disclosed to the push clinic
 * and not pushed, or pushed twice (push-checks.ts).
 */
import { type AuditCoverage, AUDIT_KINDS } from './audits.ts';
import { summarizeByCause } from './attribution.ts';
import { type NotificationFindings, notificationFailures, notificationRows } from './notification-checks.ts';
import { type PushFindings, pushFailures, pushRows } from './push-checks.ts';

/** What the checks found, per referral where it matters. */
export interface SoakFindings {
  seed: number;
  referrals: number;
  started: number;
  completed: number;
  /** Referrals that did not reach their end, with why. */
  open: { referral: string; why: string }[];
  /** Referrals for which intake handed out more than one referral id under one requestId. */
  duplicatedReferrals: string[];
  opinionsSubmitted: number;
  deliveredOnce: number;
  /** Opinions with two or more consult notes (or Communications) on the EHR. */
  deliveredTwice: string[];
  /** Opinions submitted and never delivered (no consult note on the EHR after the drain). */
  lost: string[];
  recordSetsComplete: number;
  recordSetsBad: string[];
  deadLettered: { job: string; explainedBy?: string }[];
  /** Per kind of disclosure: how many had their AuditEvent, and the ones that did not. */
  audits: AuditCoverage;
  /** Records left out at intake and supplied later: how many the driver wrote and posted, how many the clinic found verified in its newest record set, and the others. */
  laterRecords: { supplied: number; reached: number; postedAgain: number; failures: string[] };
  /** Each 5xx or reset connection: the replica in `call`, the fault that explains it, and what the answer said (Retry-After, the OperationOutcome's text). */
  serverErrors: { at: string; call: string; status: string; explainedBy?: string; retryAfter?: string; outcome?: string; nearby?: string }[];
  endToEndMs: number[];
  peakRss: Record<string, number>;
  largestTables: { table: string; bytes: number; rows?: number }[];
  faultsInjected: Record<string, number>;
  /** Service processes that exited without being killed by the schedule (restarted by the soak). */
  crashes: { replica: string; at: string; code: number | null; tail: string }[];
  durationMs: number;
  /** Webhooks and the Subscription (notification-checks.ts); absent when the run had no receiver. */
  notifications?: NotificationFindings;
  /** The push clinic's record sets on its own server (push-checks.ts); absent when the run had none. */
  pushes?: PushFindings;
}

export interface Verdict {
  ok: boolean;
  failures: string[];
}

export function verdict(f: SoakFindings): Verdict {
  const failures: string[] = [];
  if (f.lost.length) failures.push(`lost opinions (${f.lost.length}): ${f.lost.join(', ')}`);
  if (f.deliveredTwice.length) failures.push(`opinions delivered more than once (${f.deliveredTwice.length}): ${f.deliveredTwice.join(', ')}`);
  if (f.duplicatedReferrals.length) failures.push(`duplicated referrals (${f.duplicatedReferrals.length}): ${f.duplicatedReferrals.join(', ')}`);
  if (f.recordSetsBad.length) failures.push(`record sets incomplete or failing their hashes (${f.recordSetsBad.length}): ${f.recordSetsBad.join(', ')}`);
  for (const kind of AUDIT_KINDS) {
    const { missing } = f.audits[kind];
    if (missing.length) failures.push(`${kind} without an AuditEvent (${missing.length}): ${missing.join(', ')}`);
  }
  if (f.laterRecords.failures.length) failures.push(`records supplied later that did not reach the clinic's record set (${f.laterRecords.failures.length}): ${f.laterRecords.failures.join(', ')}`);
  const unexplained = f.serverErrors.filter((e) => !e.explainedBy);
  if (unexplained.length) failures.push(`5xx or refused calls without an injected cause (${unexplained.length}): ${unexplained.map((e) => `${e.call} ${e.status} at ${e.at}${e.nearby ? ` (the replica logged: ${e.nearby})` : ''}`).join('; ')}`);
  const deadUnexplained = f.deadLettered.filter((d) => !d.explainedBy);
  if (deadUnexplained.length) failures.push(`dead-lettered jobs without an injected permanent fault (${deadUnexplained.length}): ${deadUnexplained.map((d) => d.job).join(', ')}`);
  if (f.crashes.length) failures.push(`service processes exited on their own (${f.crashes.length}): ${f.crashes.map((c) => `${c.replica} at ${c.at} (exit code ${c.code})\n${c.tail}`).join('\n')}`);
  failures.push(...notificationFailures(f.notifications));
  failures.push(...pushFailures(f.pushes));
  if (f.open.length) failures.push(`referrals still open (${f.open.length}): ${f.open.map((o) => `${o.referral} (${o.why})`).join(', ')}`);
  return { ok: failures.length === 0, failures };
}

/** The p-th percentile (nearest rank) of `values`, or undefined when there are none. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (!values.length) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const mb = (bytes: number) => `${(bytes / 1_048_576).toFixed(0)} MB`;
const secs = (ms: number | undefined) => (ms === undefined ? 'n/a' : `${(ms / 1000).toFixed(1)} s`);

/** The table of a run, as Markdown (readable in a terminal, pasteable into the docs). */
export function formatTable(f: SoakFindings): string {
  const explained = f.serverErrors.filter((e) => e.explainedBy);
  const byCause = new Map<string, number>();
  for (const e of explained) byCause.set(e.explainedBy as string, (byCause.get(e.explainedBy as string) ?? 0) + 1);
  const rows: [string, string][] = [
    ['seed', String(f.seed)],
    ['referrals started / completed / still open', `${f.started} / ${f.completed} / ${f.open.length}`],
    ['duplicated referrals (one requestId, two ids)', String(f.duplicatedReferrals.length)],
    ['opinions submitted', String(f.opinionsSubmitted)],
    ['opinions delivered exactly once / twice / lost', `${f.deliveredOnce} / ${f.deliveredTwice.length} / ${f.lost.length}`],
    ['record sets complete and hash-verified', `${f.recordSetsComplete} of ${f.recordSetsComplete + f.recordSetsBad.length}`],
    ['jobs dead-lettered (explained)', `${f.deadLettered.length} (${f.deadLettered.filter((d) => d.explainedBy).length})`],
    ['records supplied later / reached the clinic\'s record set', `${f.laterRecords.supplied} / ${f.laterRecords.reached}${f.laterRecords.postedAgain ? ` (${f.laterRecords.postedAgain} posted again after the assembly left them out)` : ''}`],
    ['record-set reads / attachment downloads / post-backs: audited / missing', AUDIT_KINDS.map((k) => `${f.audits[k].audited} / ${f.audits[k].missing.length}`).join(', ')],
    ['5xx or refused calls seen by clients (explained)', `${f.serverErrors.length} (${explained.length}${byCause.size ? `: ${[...byCause].map(([k, v]) => `${k} ${v}`).join(', ')}` : ''})`],
    ['5xx by cause', summarizeByCause(f.serverErrors).join('; ') || 'none'],
    ['end-to-end p50 / p95 (intake to delivered or declined)', `${secs(percentile(f.endToEndMs, 50))} / ${secs(percentile(f.endToEndMs, 95))}`],
    ['peak RSS', Object.entries(f.peakRss).map(([k, v]) => `${k} ${mb(v)}`).join(', ')],
    ['largest tables', f.largestTables.map((t) => `${t.table} ${mb(t.bytes)}${t.rows !== undefined ? ` (${t.rows} rows)` : ''}`).join(', ')],
    ...notificationRows(f.notifications),
    ...pushRows(f.pushes),
    ['service processes that exited on their own', String(f.crashes.length)],
    ['faults injected', Object.entries(f.faultsInjected).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'],
    ['duration', secs(f.durationMs)],
  ];
  return ['| measure | value |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n');
}
