/**
 * The overdue sweep: a periodic job that marks consult Tasks past their due date
 * (`restriction.period.end`) with business status `overdue`, so worklists, summaries, FHIR
 * searches and webhooks all show it.
 *
 * Only Tasks waiting on the consultant are marked: open (requested, received, accepted, ready,
 * in-progress) with the record set ready. A Task waiting on someone else (records still
 * coming, information requested from the referrer) or carrying a decision-bearing business
 * status (cancellation requested) keeps it: those are not the consultant's delay, and the
 * business status is what the next action depends on. The mark goes when the Task moves on
 * (its next action sets its own business status) and returns at the next sweep if still late.
 *
 * Every replica runs the sweep; it is idempotent (a marked Task is not a candidate any more)
 * and each change is a versioned update, so two replicas marking the same Task cannot both
 * write: the second gets a version conflict and skips it.
 */
import type { Task } from '@medplum/fhirtypes';
import { and, eq, inArray, sql } from 'drizzle-orm';
import { businessStatus } from '../fhir/business-status.ts';
import { BUSINESS_STATUS, type BusinessStatus } from '../fhir/constants.ts';
import { startPeriodic } from '../jobs/periodic.ts';
import type { Logger } from '../log/logger.ts';
import { isVersionConflict } from '../store/conflict-retry.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { resources } from '../store/schema.ts';

/** Statuses in which the consultant owes the next step. */
const WAITING_ON_CONSULTANT: readonly Task['status'][] = ['requested', 'received', 'accepted', 'ready', 'in-progress'];
/** Business statuses the overdue mark may replace ('' = none). */
const REPLACEABLE = new Set<string>(['', 'records-ready']);

export interface SweepResult {
  /** Tasks marked overdue by this run. */
  marked: string[];
  /** Candidates another writer changed first (left for the next run). */
  skipped: number;
}

export async function sweepOverdue(deps: { store: ResourceStore; now: () => Date }): Promise<SweepResult> {
  const now = deps.now();
  const code = sql<string>`coalesce(${resources.content}#>>'{businessStatus,coding,0,code}', '')`;
  const candidates = await deps.store.database
    .select({ id: resources.id, due: sql<string>`${resources.content}#>>'{restriction,period,end}'`, businessStatus: code })
    .from(resources)
    .where(
      and(
        eq(resources.resourceType, 'Task'),
        inArray(sql<string>`${resources.content}->>'status'`, [...WAITING_ON_CONSULTANT]),
        sql`${resources.content}#>>'{restriction,period,end}' IS NOT NULL`,
        inArray(code, [...REPLACEABLE]),
      ),
    );
  // FHIR dateTimes may be partial (2026-12): compared as dates here, not in SQL.
  const late = candidates.filter((c) => isPast(c.due, now));
  const result: SweepResult = { marked: [], skipped: 0 };
  for (const { id } of late) {
    const marked = await deps.store
      .withTransaction(async (tx) => {
        const task = await tx.read<Task>('Task', id, 'system');
        if (!task || !isOverdueCandidate(task, now)) return false;
        const previous = task.businessStatus?.coding?.[0]?.code as BusinessStatus | undefined;
        const text = `Due ${task.restriction?.period?.end}${previous ? `; was: ${BUSINESS_STATUS[previous] ?? previous}` : ''}`;
        await tx.update<Task>({ ...task, businessStatus: businessStatus('overdue', text) }, { expectedVersion: task.meta?.versionId });
        return true;
      })
      .catch((err: unknown) => {
        // Someone acted on the Task meanwhile: their change stands; the next run looks again.
        if (isVersionConflict(err)) return undefined;
        throw err;
      });
    if (marked) result.marked.push(id);
    else if (marked === undefined) result.skipped++;
  }
  return result;
}

/** Open Tasks the sweep has marked overdue, counted in one statement (for metrics scrapes). */
export async function countOverdueTasks(store: ResourceStore): Promise<number> {
  const [row] = await store.database
    .select({ n: sql<number>`count(*)::int` })
    .from(resources)
    .where(
      and(
        eq(resources.resourceType, 'Task'),
        inArray(sql<string>`${resources.content}->>'status'`, [...WAITING_ON_CONSULTANT]),
        sql`${resources.content}#>>'{businessStatus,coding,0,code}' = 'overdue'`,
      ),
    );
  return Number(row?.n ?? 0);
}

/** Runs the sweep now and every `intervalSeconds`, one run at a time; `stop()` waits for a run in progress. */
export function startOverdueSweep(deps: { store: ResourceStore; now: () => Date }, intervalSeconds: number, log: Logger): { stop(): Promise<void> } {
  return startPeriodic(
    async () => {
      const r = await sweepOverdue(deps);
      if (r.marked.length > 0 || r.skipped > 0) log.info({ marked: r.marked.length, skipped: r.skipped }, 'overdue sweep');
    },
    intervalSeconds,
    (err) => log.warn({ err }, 'overdue sweep failed'),
  );
}

export function isOverdueCandidate(task: Task, now: Date): boolean {
  const due = task.restriction?.period?.end;
  return !!due && WAITING_ON_CONSULTANT.includes(task.status) && REPLACEABLE.has(task.businessStatus?.coding?.[0]?.code ?? '') && isPast(due, now);
}

function isPast(due: string, now: Date): boolean {
  const time = new Date(due).getTime();
  return Number.isFinite(time) && time < now.getTime();
}
