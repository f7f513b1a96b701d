/**
 * What a refused request must leave as it was: every resource but AuditEvents (type, id,
 * version), the referrals' records revisions, the record-set assemblies, the opinion deliveries,
 * the stored blobs and the jobs of each queue. Refused reads are audited by design, so
 * AuditEvents are left out; so are used client-assertion ids, which the token endpoint keeps by
 * design once a signature checks out, whatever it answers next.
 */
import { sql } from 'drizzle-orm';
import { QUEUE } from '../../src/jobs/queues.ts';
import type { TestService } from './service.ts';

export type StoreState = Record<string, string[]>;

/** One round trip: each part as a sorted list of `key:value` items. */
export async function storeState(service: TestService): Promise<StoreState> {
  const jobs = service.jobs.schema;
  const result = await service.database.db.execute(
    sql.raw(`SELECT
      (SELECT coalesce(array_agg(resource_type || '/' || id || '/' || version_id ORDER BY resource_type, id), '{}') FROM resource WHERE resource_type <> 'AuditEvent') AS resources,
      (SELECT coalesce(array_agg(service_request_id || ':' || records_revision ORDER BY service_request_id), '{}') FROM intake_request) AS intakes,
      (SELECT coalesce(array_agg(service_request_id || ':' || status || ':' || records_revision || ':' || attempts ORDER BY service_request_id), '{}') FROM record_set_assembly) AS assemblies,
      (SELECT coalesce(array_agg(id || ':' || status || ':' || attempts ORDER BY id), '{}') FROM opinion_delivery) AS deliveries,
      (SELECT coalesce(array_agg(sha256 ORDER BY sha256), '{}') FROM blob) AS blobs,
      (SELECT coalesce(array_agg(name || ':' || n ORDER BY name), '{}') FROM (SELECT name, count(*) AS n FROM ${jobs}.job GROUP BY name) j) AS jobs`),
  );
  return (result as unknown as { rows: StoreState[] }).rows[0] as StoreState;
}

/** What changed between two states, part by part (empty when nothing did). */
export function stateChanges(before: StoreState, after: StoreState): string[] {
  return Object.keys(before).flatMap((part) => {
    const was = new Set(before[part]);
    const now = new Set(after[part]);
    const added = [...now].filter((x) => !was.has(x));
    const removed = [...was].filter((x) => !now.has(x));
    return added.length || removed.length ? [`${part}: +[${added.join(' ')}] -[${removed.join(' ')}]`] : [];
  });
}

/**
 * Waits until no record-set assembly or opinion delivery is waiting or running: work a
 * successful write started must finish before the next refusal is judged by what it wrote.
 */
export async function settle(service: TestService, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const query = sql.raw(`SELECT count(*)::int AS n FROM ${service.jobs.schema}.job WHERE name IN ('${QUEUE.assembleRecordSet}', '${QUEUE.deliverOpinion}') AND state IN ('created', 'retry', 'active')`);
  for (;;) {
    const result = await service.database.db.execute(query);
    if ((result as unknown as { rows: { n: number }[] }).rows[0]?.n === 0) return;
    if (Date.now() > deadline) throw new Error(`background jobs still pending after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
