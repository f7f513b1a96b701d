/**
 * The end of a soak: waits (bounded) for the queues to drain, then checks every referral
 * against the service's store and the sandbox EHR and gathers the findings for the report.
 */
import { readFileSync } from 'node:fs';
import { OPINION_NOTIFICATION_SYSTEM } from '../../src/delivery/deliver-opinion.ts';
import { SYSTEM } from '../../src/fhir/constants.ts';
import { QUEUE } from '../../src/jobs/queues.ts';
import { explainDeadLetter, explainServerError } from './attribution.ts';
import { auditCoverage, type Disclosure, loadAuditEvents } from './audits.ts';
import type { ClientCall, DrivenReferral } from './driver.ts';
import type { FaultWindow } from './faults.ts';
import { identifierCounts } from './identifier-index.ts';
import type { SoakFindings } from './report.ts';
import type { SoakTopology } from './topology.ts';

/** The queues whose work the checks wait for: record assembly, post-back, notifications, pushes. */
const DRAINED_QUEUES = [QUEUE.assembleRecordSet, QUEUE.deliverOpinion, QUEUE.notifyWebhook, QUEUE.notifySubscription, QUEUE.pushRecordSet];

/** Jobs still to run in those queues, plus opinion deliveries and pushes still pending. */
async function outstandingWork(topology: SoakTopology): Promise<number> {
  const [row] = await topology.postgres.query<{ n: string }>(
    `SELECT (SELECT count(*) FROM pgboss.job WHERE name = ANY($1) AND state IN ('created', 'retry', 'active'))
          + (SELECT count(*) FROM opinion_delivery WHERE status = 'pending')
          + (SELECT count(*) FROM record_set_push WHERE status = 'pending') AS n`,
    [DRAINED_QUEUES],
  );
  return Number(row?.n ?? 0);
}

/** Waits until no work, notification or push job is outstanding and no opinion delivery or push is pending, or `ms` passed. */
export async function drain(topology: SoakTopology, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if ((await outstandingWork(topology)) === 0) return true;
    } catch {
      // the database is coming back from a fault
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

/** Samples the resident set size of a process from /proc (Linux), bytes; 0 when gone. */
export function rssOf(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export async function gatherFindings(
  topology: SoakTopology,
  driven: readonly DrivenReferral[],
  calls: readonly ClientCall[],
  windows: readonly FaultWindow[],
  extra: { seed: number; peakRss: Record<string, number>; durationMs: number },
): Promise<SoakFindings> {
  const { ehr, postgres } = topology;
  const label = (r: DrivenReferral) => r.id ?? r.requestId;
  const open: SoakFindings['open'] = [];
  const deliveredTwice: string[] = [];
  const lost: string[] = [];
  const recordSetsBad: string[] = [];
  const disclosed: Disclosure[] = [];
  const laterRecords: SoakFindings['laterRecords'] = { supplied: 0, reached: 0, postedAgain: 0, failures: [] };
  let deliveredOnce = 0;
  let recordSetsComplete = 0;
  const endToEndMs: number[] = [];
  const deliveries = new Map(
    (await postgres.query<{ id: string; status: string; delivered_at: Date | null }>('SELECT id, status, delivered_at FROM opinion_delivery')).map((d) => [d.id, d]),
  );

  const notesOnEhr = await identifierCounts(ehr.repo, 'DocumentReference', SYSTEM.consultNoteId);
  const communicationsOnEhr = await identifierCounts(ehr.repo, 'Communication', OPINION_NOTIFICATION_SYSTEM);

  for (const r of driven) {
    if (r.stuck) open.push({ referral: label(r), why: `${r.stuck}${r.id ? jobTrail(topology, r.id) : ''}` });
    // A record set is judged once the clinic has read it (a referral stuck before that is reported as open).
    if (r.recordStatus === 'records-ready' && r.attachmentsBad === 0 && r.attachmentsVerified > 0) recordSetsComplete++;
    else if (r.attachmentsBad > 0 || (r.recordStatus && r.recordStatus !== 'records-ready')) recordSetsBad.push(`${label(r)} (${r.recordStatus}, ${r.attachmentsBad} bad)`);
    for (const read of r.reads) disclosed.push({ ...read, referral: label(r) });
    if (r.later) {
      if (r.later.supplied) laterRecords.supplied++;
      if (r.later.postedAgain) laterRecords.postedAgain++;
      if (r.later.reached) laterRecords.reached++;
      else laterRecords.failures.push(`${label(r)} (${r.later.supplied?.reference ?? 'not supplied'}: ${r.later.why ?? r.stuck ?? 'the clinic did not read it'})`);
    }
    // Each opinion the service delivered to the EHR is a disclosure of its own.
    if (r.noteId && deliveries.get(r.noteId)?.status === 'delivered') disclosed.push({ kind: 'post-backs', reference: `DocumentReference/${r.noteId}`, referral: label(r) });
    if (r.noteId) {
      const notes = notesOnEhr(r.noteId);
      const comms = communicationsOnEhr(r.noteId);
      if (notes > 1 || comms > 1) deliveredTwice.push(`${label(r)} (note ${r.noteId}: ${notes} notes, ${comms} Communications)`);
      else if (notes === 0 || comms === 0) lost.push(`${label(r)} (note ${r.noteId}: ${notes} notes, ${comms} Communications, delivery ${deliveries.get(r.noteId)?.status ?? 'missing'})`);
      else deliveredOnce++;
      const deliveredAt = deliveries.get(r.noteId)?.delivered_at;
      if (deliveredAt) endToEndMs.push(new Date(deliveredAt).getTime() - r.startedAt);
    } else if (r.finishedAt) {
      endToEndMs.push(r.finishedAt - r.startedAt);
    }
  }

  const audits = auditCoverage(await loadAuditEvents(topology), disclosed);

  // Dead-lettered jobs: each needs a permanent fault that can fail its queue's work, in force during its life (attribution.ts).
  const dead = await postgres.query<{ name: string; id: string; created_on: Date; completed_on: Date | null; output: unknown }>(
    "SELECT name, id, created_on, completed_on, output FROM pgboss.job WHERE state = 'failed'",
  );
  const deadLettered = dead.map((j) => {
    const from = new Date(j.created_on).getTime();
    const to = j.completed_on ? new Date(j.completed_on).getTime() : Date.now();
    const cause = explainDeadLetter({ queue: j.name, from, to }, windows);
    return { job: `${j.name} ${j.id}`, ...(cause ? { explainedBy: cause.kind } : {}) };
  });

  // 5xx and refused connections a client saw: explained by a fault on the replica that answered, on the database, or on the EHR for a call that reads it (attribution.ts).
  const serverErrors = calls
    .filter((c) => (c.status !== undefined && c.status >= 500) || (c.error !== undefined && c.error !== 'replica down'))
    .map((c) => {
      const cause = explainServerError(c, windows);
      return {
        at: new Date(c.at).toISOString(),
        call: `${c.method} ${c.path} (replica ${c.replica}${c.reused ? ', on a reused connection' : ''})`,
        status: c.status ? String(c.status) : (c.error as string),
        ...(cause ? { explainedBy: cause.kind === 'kill-replica' ? `kill-replica (replica ${cause.replica})` : cause.kind } : {}),
        ...(c.retryAfter ? { retryAfter: c.retryAfter } : {}),
        ...(c.outcome ? { outcome: c.outcome } : {}),
        ...(cause ? {} : { nearby: replicaLogNear(topology, c.replica, c.at) }),
      };
    });

  const largestTables = (
    await postgres.query<{ table: string; bytes: string; rows: string }>(
      "SELECT schemaname || '.' || relname AS table, pg_total_relation_size(relid) AS bytes, n_live_tup AS rows FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC LIMIT 5",
    )
  ).map((t) => ({ table: t.table, bytes: Number(t.bytes), rows: Math.max(0, Number(t.rows)) }));

  const faultsInjected: Record<string, number> = {};
  for (const w of windows) faultsInjected[w.kind] = (faultsInjected[w.kind] ?? 0) + 1;
  return {
    seed: extra.seed,
    referrals: driven.length,
    started: driven.filter((r) => r.id).length,
    completed: driven.filter((r) => r.finishedAt && !r.stuck).length,
    open,
    duplicatedReferrals: driven.filter((r) => r.ids.size > 1).map((r) => `${r.requestId} (${[...r.ids].join(', ')})`),
    opinionsSubmitted: driven.filter((r) => r.noteId).length,
    deliveredOnce,
    deliveredTwice,
    lost,
    recordSetsComplete,
    recordSetsBad,
    deadLettered,
    audits,
    laterRecords,
    serverErrors,
    endToEndMs,
    peakRss: extra.peakRss,
    largestTables,
    faultsInjected,
    crashes: topology.replicas.flatMap((r) => r.crashes.map((c) => ({ replica: `replica ${r.index}`, at: new Date(c.at).toISOString(), code: c.code, tail: c.tail }))),
    durationMs: extra.durationMs,
  };
}

/** A logged error as the service's log keeps it (type, code, status: never a message, which could carry PHI). */
function errorOf(err: unknown): string {
  const e = err as { type?: string; code?: string | number; status?: number; cause?: unknown } | undefined;
  if (!e) return '';
  return [e.type, e.code, e.status, e.cause ? `caused by ${errorOf(e.cause)}` : undefined].filter((x) => x !== undefined).join(' ');
}

/** What the replicas logged about a referral's jobs (ids and outcomes only: the service logs no PHI), for a referral left open. */
function jobTrail(topology: SoakTopology, serviceRequestId: string): string {
  const lines = topology.replicas.flatMap((r) =>
    r.pastLogs.flatMap((logs, run) => logs.filter((l) => l.serviceRequestId === serviceRequestId).map((l) => `replica ${r.index} run ${run + 1} ${l.time ?? ''} ${l.msg ?? ''} ${l.outcome ?? ''} ${errorOf(l.err)}`.trim())),
  );
  return lines.length ? `; its job log: ${lines.slice(-6).join(' | ')}` : '; no job log line names it';
}

/**
 * What replica `index` logged at warning level or above within 3 s of `at` (ids, outcomes and
 * error types only: the service logs no PHI), to explain a 5xx no injected fault explains.
 */
function replicaLogNear(topology: SoakTopology, index: number, at: number): string {
  const replica = topology.replicas[index];
  if (!replica) return '';
  const lines = replica.pastLogs.flatMap((logs, run) =>
    logs
      .filter((l) => (l.level === 'warn' || l.level === 'error' || l.level === 'fatal') && typeof l.time === 'string' && Math.abs(Date.parse(l.time) - at) <= 3_000)
      .map((l) => `run ${run + 1} ${l.time} ${l.msg ?? ''} ${errorOf(l.err)}`.trim()),
  );
  return lines.length ? lines.slice(0, 6).join(' | ') : 'nothing logged at warning level or above';
}
