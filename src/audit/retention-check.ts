/**
 * What audit retention means while the service runs: each replica looks, every
 * AUDIT_RETENTION_CHECK_INTERVAL_SECONDS, for AuditEvents older than the retention that were
 * not exported yet. While there are some it logs a warning (how many, since when, the command
 * that archives them) and the gauge `second_opinion_audit_events_past_retention` says how many. Nothing is
 * deleted by the service itself: removing audit records is an operator's act, done by
 * `npm run audit:export`, which keeps them in an archive first. The check never affects
 * readiness: an old audit log is not a reason to stop serving.
 *
 * The same run deletes coalescing windows (`audit_read_window`) of minutes long past.
 */
import type { Logger } from '../log/logger.ts';
import type { ServiceMetrics } from '../metrics/metrics.ts';
import { startPeriodic } from '../jobs/periodic.ts';
import type { Db } from '../store/database.ts';
import { auditRetentionStatus, describeRetention, pruneReadWindows, type AuditRetention, type RetentionStatus } from './audit-archive.ts';

export interface RetentionCheckDeps {
  db: Db;
  now: () => Date;
  retention: AuditRetention;
  /** Where the count is reported (the gauge `second_opinion_audit_events_past_retention`). */
  metrics?: Pick<ServiceMetrics, 'auditEventsPastRetention'>;
}

/** One check: the status, a warning when AuditEvents past the retention remain, the gauge, and the pruning of old windows. */
export async function checkAuditRetention(deps: RetentionCheckDeps, log: Logger): Promise<RetentionStatus> {
  const now = deps.now();
  const status = await auditRetentionStatus(deps.db, now, deps.retention);
  deps.metrics?.auditEventsPastRetention(status.pastRetention);
  if (status.pastRetention > 0) {
    const before = status.cutoff.toISOString().slice(0, 10);
    log.warn(
      { pastRetention: status.pastRetention, oldest: status.oldest?.toISOString(), cutoff: status.cutoff.toISOString() },
      `AuditEvents older than the audit retention (${describeRetention(deps.retention)}) are still in the store; archive them with: npm run audit:export -- --before ${before}`,
    );
  }
  await pruneReadWindows(deps.db, now);
  return status;
}

export function startAuditRetentionCheck(deps: RetentionCheckDeps, intervalSeconds: number, log: Logger): { stop(): Promise<void> } {
  return startPeriodic(
    async () => {
      await checkAuditRetention(deps, log);
    },
    intervalSeconds,
    (err) => log.warn({ err }, 'audit retention check failed'),
  );
}
