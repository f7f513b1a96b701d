/**
 * Several writes as one SQL statement (data-modifying CTEs): new versions of existing resources,
 * each matching only the version the caller based it on, new resources, and parts other modules
 * add (their own tables, queued jobs). One round trip however many rows; every part sees the same
 * snapshot, and the final SELECT reports, per new version, whether it matched and what the
 * version before looked like. `ResourceStore.write` runs it; this module only builds the text.
 */
import { sql, type SQL } from 'drizzle-orm';
import { resourceHistory, resources } from './schema.ts';

/** One named part (`WITH <name> AS (<sql>)`) of a statement that several modules write into. */
export interface StatementPart {
  name: string;
  sql: SQL;
}

export interface VersionRow {
  resourceType: string;
  id: string;
  versionId: number;
  /** The version the new one replaces: the row is written only if it is still current. */
  expected: number;
  lastUpdated: Date;
  content: unknown;
  /** Replaces the access list; kept as is when absent. */
  access?: readonly string[];
  /** Scalar jsonb expressions the statement evaluates with the access list as written (`$access`), for write observers. */
  lookups: readonly ((access: SQL) => SQL)[];
}

export interface CreateRow {
  resourceType: string;
  id: string;
  lastUpdated: Date;
  content: unknown;
  /** Who may read it; or `{ sameAs: i }`: whoever may read `versions[i]`, as written. */
  access: readonly string[] | { sameAs: number };
  /** As for VersionRow, with the access list the new resource is given. */
  lookups: readonly ((access: SQL) => SQL)[];
}

/** What the final SELECT reports of each new version. */
export interface VersionOutcome {
  /** The row existed. */
  found: boolean;
  /** The access list of the new version; null when the expected version was no longer current. */
  access: string[] | null;
  status: string | null;
  businessStatus: string | null;
  lookups: unknown[];
}

/** A text[] parameter: one string, not one parameter per element. */
export const textArray = (values: readonly string[]): SQL => sql`${`{${values.map((a) => JSON.stringify(a)).join(',')}}`}::text[]`;

/**
 * A part run first that returns at most one row (an idempotency key's
 * `INSERT ... SELECT ... WHERE ${when} ON CONFLICT DO NOTHING RETURNING ...`): the statement's
 * other writes happen only if it returned its row. `sql(when)` must write nothing where `when`
 * (an SQL boolean) is false.
 */
export interface ClaimPart {
  name: string;
  sql: (when: SQL) => SQL;
}

/** Names the store's own CTEs use; a part may not take them. */
const RESERVED = /^(v\d+(_old|_history)?|new_rows|new_current|new_history|write_when)$/;

function checkPartName(name: string): void {
  if (!/^[a-z_][a-z0-9_]*$/.test(name) || RESERVED.test(name)) throw new Error(`statement part name '${name}' is not allowed`);
}

/**
 * The statement; its single result row is read back by `readOutcomes`. With a `claim`, the new
 * versions and new resources are written only if the claim returned its row; the result row's
 * `claimed` column says whether it did. Other parts guard themselves on it
 * (`EXISTS (SELECT 1 FROM <claim>)`: JobQueue.enqueueParts' `onlyIf`). With `when` too, the
 * claim, and so everything, is written only if `when` holds; the `proceeded` column says so.
 */
export function buildWriteStatement(versions: readonly VersionRow[], creates: readonly CreateRow[], parts: readonly StatementPart[], claim?: ClaimPart, when?: SQL): SQL {
  const ctes: SQL[] = [];
  const columns: SQL[] = [];
  if (when && !claim) throw new Error('a write condition needs a claim');
  if (when) ctes.push(sql`write_when AS (SELECT (${when}) AS ok)`);
  if (claim) {
    checkPartName(claim.name);
    ctes.push(sql`${sql.raw(claim.name)} AS (${claim.sql(when ? sql.raw('(SELECT ok FROM write_when)') : sql`true`)})`);
  }
  const claimed = claim ? sql.raw(` AND EXISTS (SELECT 1 FROM ${claim.name})`) : sql``;
  versions.forEach((v, i) => {
    const when = v.lastUpdated.toISOString();
    const json = JSON.stringify(v.content);
    const access = v.access ? textArray(v.access) : sql`NULL::text[]`;
    ctes.push(sql`${sql.raw(`v${i}_old`)} AS (
        SELECT version_id, content->>'status' AS status, content#>>'{businessStatus,coding,0,code}' AS business_status
          FROM ${resources} WHERE resource_type = ${v.resourceType} AND id = ${v.id})`);
    ctes.push(sql`${sql.raw(`v${i}`)} AS (
        UPDATE ${resources} SET version_id = ${v.versionId}, last_updated = ${when}::timestamptz, content = ${json}::jsonb, access = coalesce(${access}, access)
         WHERE resource_type = ${v.resourceType} AND id = ${v.id} AND version_id = ${v.expected}${claimed}
        RETURNING access)`);
    ctes.push(sql`${sql.raw(`v${i}_history`)} AS (
        INSERT INTO ${resourceHistory} (resource_type, id, version_id, last_updated, content, access)
        SELECT ${v.resourceType}, ${v.id}, ${v.versionId}, ${when}::timestamptz, ${json}::jsonb, access FROM ${sql.raw(`v${i}`)})`);
    const written = sql.raw(`(SELECT access FROM v${i})`);
    columns.push(sql`(SELECT count(*) FROM ${sql.raw(`v${i}_old`)}) > 0`, written, sql.raw(`(SELECT status FROM v${i}_old)`), sql.raw(`(SELECT business_status FROM v${i}_old)`));
    for (const lookup of v.lookups) columns.push(lookup(written));
  });
  for (const c of creates) {
    const access = Array.isArray(c.access) ? textArray(c.access) : sql.raw(`(SELECT access FROM v${(c.access as { sameAs: number }).sameAs})`);
    for (const lookup of c.lookups) columns.push(lookup(access));
  }
  if (creates.length > 0) {
    const payload = JSON.stringify(
      creates.map((c) => ({
        resource_type: c.resourceType,
        id: c.id,
        last_updated: c.lastUpdated.toISOString(),
        content: c.content,
        access: Array.isArray(c.access) ? c.access : null,
        same_as: Array.isArray(c.access) ? null : (c.access as { sameAs: number }).sameAs,
      })),
    );
    const sameAs = versions.length > 0 ? sql.raw(`CASE same_as ${versions.map((_, i) => `WHEN ${i} THEN (SELECT access FROM v${i})`).join(' ')} END`) : sql`NULL::text[]`;
    // A resource readable "as the new version is" is left out when that version did not match:
    // the write is refused then (412) and the transaction rolled back.
    ctes.push(sql`new_rows AS (
        SELECT resource_type, id, last_updated, content, coalesce(access, ${sameAs}) AS access
          FROM jsonb_to_recordset(${payload}::jsonb) AS x(resource_type text, id text, last_updated timestamptz, content jsonb, access text[], same_as integer)
         WHERE true${claimed})`);
    ctes.push(sql`new_current AS (
        INSERT INTO ${resources} (resource_type, id, version_id, last_updated, content, access)
        SELECT resource_type, id, 1, last_updated, content, access FROM new_rows WHERE access IS NOT NULL)`);
    ctes.push(sql`new_history AS (
        INSERT INTO ${resourceHistory} (resource_type, id, version_id, last_updated, content, access)
        SELECT resource_type, id, 1, last_updated, content, access FROM new_rows WHERE access IS NOT NULL)`);
  }
  for (const part of parts) {
    checkPartName(part.name);
    ctes.push(sql`${sql.raw(part.name)} AS (${part.sql})`);
    // Read every part: a part that is a plain SELECT (a NOTIFY) runs only when something reads it.
    columns.push(sql.raw(`(SELECT count(*) FROM ${part.name})`));
  }
  const named = columns.map((c, i) => sql`${c} AS ${sql.raw(`c${i}`)}`);
  if (claim) named.push(sql.raw(`EXISTS (SELECT 1 FROM ${claim.name}) AS claimed`));
  if (when) named.push(sql.raw('(SELECT ok FROM write_when) AS proceeded'));
  if (named.length === 0) named.push(sql`1`);
  return sql`WITH ${sql.join(ctes, sql`, `)} SELECT ${sql.join(named, sql`, `)}`;
}

/** Reads the statement's result row back: one outcome per new version, and each new resource's lookups. */
export function readOutcomes(versions: readonly VersionRow[], creates: readonly CreateRow[], row: Record<string, unknown>): { versions: VersionOutcome[]; creates: unknown[][] } {
  let column = 0;
  const next = () => row[`c${column++}`];
  const outcomes = versions.map((v) => {
    const found = next() === true;
    const access = (next() as string[] | null) ?? null;
    const status = (next() as string | null) ?? null;
    const businessStatus = (next() as string | null) ?? null;
    const lookups = v.lookups.map(() => next());
    return { found, access, status, businessStatus, lookups };
  });
  return { versions: outcomes, creates: creates.map((c) => c.lookups.map(() => next())) };
}
