/**
 * The rows one intake writes, for the raw-insert baseline of `npm run bench:intake`: read back
 * from the service's own store after one real intake (the intake_request key, the 5 resources
 * and their 5 history rows, the record-assembly job), then written again and again by a bare
 * client with fresh ids of the same length, so every copy has the same sizes.
 */
import { randomUUID } from 'node:crypto';

/** A query on PostgreSQL (pg) or PGlite: both take `$n` parameters and return `{ rows }`. */
export type Query = (text: string, params?: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>;

export interface TableRows {
  /** Table name; `job` is pg-boss's job table, in the job queue's schema. */
  table: 'intake_request' | 'resource' | 'resource_history' | 'job';
  columns: string[];
  rows: Record<string, unknown>[];
}

export interface ReferralRows {
  tables: TableRows[];
  /** Values that must be fresh in every copy: resource ids, the job id, the referrer's request id. */
  ids: string[];
}

/** The columns pg-boss's send() writes (the others keep their defaults). */
const JOB_COLUMNS = [
  'id', 'name', 'data', 'priority', 'start_after', 'created_on', 'singleton_key', 'singleton_on', 'group_id', 'group_tier', 'expire_seconds', 'deletion_seconds',
  'keep_until', 'retry_limit', 'retry_delay', 'retry_backoff', 'retry_delay_max', 'policy', 'dead_letter', 'heartbeat_seconds', 'blocked', 'blocking', 'pending_dependencies',
];

/**
 * The rows the intake of ServiceRequest `serviceRequestId` wrote. Run it while no other
 * intake is under way: the resources are those of version 1 written at the ServiceRequest's
 * instant (one createMany writes them all with one timestamp).
 */
export async function readReferralRows(query: Query, jobSchema: string, serviceRequestId: string): Promise<ReferralRows> {
  const same = `version_id = 1 AND last_updated = (SELECT last_updated FROM resource WHERE resource_type = 'ServiceRequest' AND id = $1)`;
  const read = async (table: TableRows['table'], text: string): Promise<TableRows> => {
    const { rows } = await query(text, [serviceRequestId]);
    if (rows.length === 0) throw new Error(`no ${table} rows for ServiceRequest/${serviceRequestId}`);
    return { table, columns: Object.keys(rows[0] as object), rows };
  };
  const tables = [
    await read('intake_request', 'SELECT * FROM intake_request WHERE service_request_id = $1'),
    await read('resource', `SELECT * FROM resource WHERE ${same}`),
    await read('resource_history', `SELECT * FROM resource_history WHERE ${same}`),
    await read('job', `SELECT ${JOB_COLUMNS.join(', ')} FROM ${jobSchema}.job WHERE name = 'assemble-record-set' AND data->>'serviceRequestId' = $1`),
  ];
  const [intake, resources, , job] = tables as [TableRows, TableRows, TableRows, TableRows];
  if (resources.rows.length !== 5 || job.rows.length !== 1) throw new Error(`expected 5 resources and 1 job, read ${resources.rows.length} and ${job.rows.length}`);
  const ids = [String(intake.rows[0]?.request_id), ...resources.rows.map((r) => String(r.id)), String(job.rows[0]?.id)];
  return { tables, ids };
}

/** `INSERT` of one table's rows from one jsonb parameter (the rows as a JSON array). */
export function insertStatement(t: TableRows, jobSchema: string): string {
  const table = t.table === 'job' ? `${jobSchema}.job` : t.table;
  const columns = t.columns.map((c) => `"${c}"`).join(', ');
  return `INSERT INTO ${table} (${columns}) SELECT ${columns} FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb)`;
}

/**
 * A maker of copies: each call returns one JSON parameter per table, every id of `rows.ids`
 * replaced by a fresh one of the same length (UUIDs by UUIDs), consistently across tables.
 */
export function copier(rows: ReferralRows): () => string[] {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`(${rows.ids.map(escape).join('|')})`);
  // split() with a capture group: text, id, text, id, ..., text
  const parts = rows.tables.map((t) => JSON.stringify(t.rows).split(pattern));
  const fresh = (old: string) => (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(old) ? randomUUID() : freshText(old.length));
  return () => {
    const map = new Map(rows.ids.map((id) => [id, fresh(id)]));
    return parts.map((p) => p.map((s, i) => (i % 2 ? (map.get(s) as string) : s)).join(''));
  };
}

function freshText(length: number): string {
  let s = '';
  while (s.length < length) s += randomUUID().replaceAll('-', '');
  return s.slice(0, length);
}

/** Rows per table now: the sanity check after a run. */
export async function countRows(query: Query, jobSchema: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of ['intake_request', 'resource', 'resource_history', `${jobSchema}.job`]) {
    const { rows } = await query(`SELECT count(*)::int AS n FROM ${table}`);
    out[table.replace(`${jobSchema}.`, '')] = Number(rows[0]?.n);
  }
  const { rows } = await query("SELECT count(*)::int AS n FROM resource WHERE resource_type = 'ServiceRequest'");
  out.ServiceRequest = Number(rows[0]?.n);
  return out;
}
