/**
 * The SQL of reads and searches over the resource tables: who may see a row, `_lastUpdated`
 * conditions, counts, and the opaque keyset cursors of search pages.
 */
import { and, eq, or, sql, type SQL } from 'drizzle-orm';
import type { Db } from './database.ts';
import type { DateFilter, Reader, SearchQuery } from './resource-store.ts';
import { resourceHistory, resources } from './schema.ts';

/** The rows of `resourceType` matching `query` that `reader` may see: how many (`_summary=count`). */
export async function countResources(db: Db, query: Omit<SearchQuery, 'count' | 'cursor'>, reader: Reader): Promise<number> {
  const conditions: (SQL | undefined)[] = [eq(resources.resourceType, query.resourceType), accessFilter(resources.access, reader)];
  for (const group of query.contains ?? []) {
    conditions.push(or(...group.map((doc) => sql`${resources.content} @> ${JSON.stringify(doc)}::jsonb`)));
  }
  for (const f of query.lastUpdated ?? []) conditions.push(dateCondition(f));
  const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(resources).where(and(...conditions));
  return Number(row?.n ?? 0);
}

/** The SQL condition that lets `reader` see a row (undefined: no condition). Exported for tables joined to resources (Binary). */
export function accessFilter(column: typeof resources.access | typeof resourceHistory.access, reader: Reader): SQL | undefined {
  if (reader === 'system') return undefined;
  if ('participantId' in reader) return sql`${column} @> ARRAY[${reader.participantId}]::text[]`;
  if (reader.anyOf.length === 0) return sql`false`;
  return sql`${column} && ${`{${reader.anyOf.map((k) => JSON.stringify(k)).join(',')}}`}::text[]`;
}

export function dateCondition(f: DateFilter): SQL {
  const v = f.value.toISOString();
  const col = resources.lastUpdated;
  switch (f.op) {
    case 'eq':
      return sql`${col} = ${v}::timestamptz`;
    case 'ne':
      return sql`${col} <> ${v}::timestamptz`;
    case 'gt':
      return sql`${col} > ${v}::timestamptz`;
    case 'lt':
      return sql`${col} < ${v}::timestamptz`;
    case 'ge':
      return sql`${col} >= ${v}::timestamptz`;
    case 'le':
      return sql`${col} <= ${v}::timestamptz`;
  }
}

/** The opaque cursor of the page after the row (`lastUpdated`, `id`); decodeCursor reads it back. */
export function encodeCursor(lastUpdated: Date, id: string): string {
  return Buffer.from(JSON.stringify([lastUpdated.toISOString(), id])).toString('base64url');
}

/**
 * Whether `date` is a time this store can compare against: the years 0001 to 9999, as its ISO
 * text has them. PostgreSQL has no year 0 and reads no six-digit year, so a time outside fails
 * the statement; search bounds and cursors outside are refused at the door instead.
 */
export function isStoreTime(date: Date): boolean {
  const year = date.getUTCFullYear();
  return !Number.isNaN(date.getTime()) && year >= 1 && year <= 9999;
}

/** The ids this store gives resources (UUIDs) fit in; a cursor naming anything else was not made here. */
const CURSOR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * Returns undefined for a cursor that was not made by encodeCursor. Searches refuse such a
 * cursor (400) rather than start again at the first page, which a client paging through
 * results would take for the next page.
 */
export function decodeCursor(cursor: string): { lastUpdated: Date; id: string } | undefined {
  try {
    const decoded: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (!Array.isArray(decoded) || decoded.length !== 2) return undefined;
    const [ts, id] = decoded as unknown[];
    if (typeof ts !== 'string' || typeof id !== 'string' || !CURSOR_ID.test(id)) return undefined;
    const lastUpdated = new Date(ts);
    if (!isStoreTime(lastUpdated)) return undefined;
    return { lastUpdated, id };
  } catch {
    return undefined;
  }
}
