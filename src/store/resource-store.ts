import { randomUUID } from 'node:crypto';
import { notFound, OperationOutcomeError, preconditionFailed } from '@medplum/core';
import type { Resource, ResourceType } from '@medplum/fhirtypes';
import { and, desc, eq, inArray, or, sql, type SQL } from 'drizzle-orm';
import type { Db } from './database.ts';
import { resourceHistory, resources } from './schema.ts';
import { accessFilter, countResources, dateCondition, decodeCursor, encodeCursor } from './search-sql.ts';
import { executeNamed } from './named-statement.ts';
import { buildWriteStatement, type ClaimPart, type CreateRow, readOutcomes, type StatementPart, type VersionRow } from './write-batch.ts';

export { accessFilter, countResources, decodeCursor, encodeCursor, isStoreTime } from './search-sql.ts';

/** Checks a resource before it is written; throws when it does not conform. */
export interface ResourceValidator {
  validate(resource: Resource): void;
}

/**
 * Who is reading. A participant sees only resources whose `access` list names it; a reader
 * restricted to some keys (`anyOf`, e.g. one clinician's requester key: access/audience.ts)
 * sees only resources whose list holds one of them (none when `anyOf` is empty); `system` is
 * the service itself (jobs, and use cases after their own access check). Build a caller's
 * reader with `readerOf` (access/reader.ts).
 */
export type Reader = { participantId: string } | { anyOf: readonly string[] } | 'system';

export interface NewResource<T extends Resource = Resource> {
  resource: T;
  /** Participant ids allowed to read it. */
  access: readonly string[];
}

export interface UpdateOptions {
  /** Optimistic concurrency: the version the caller based its change on (If-Match). */
  expectedVersion?: string;
  /** Replaces the access list; kept as is when absent. */
  access?: readonly string[];
}

/** `_lastUpdated` comparisons. */
export interface DateFilter {
  op: 'eq' | 'ne' | 'gt' | 'lt' | 'ge' | 'le';
  value: Date;
}

export interface SearchQuery {
  resourceType: ResourceType;
  /**
   * AND of groups; each group is an OR of JSON documents the resource must contain
   * (jsonb `@>`), e.g. `[[{ status: 'requested' }, { status: 'accepted' }], [{ owner: { reference: 'Organization/x' } }]]`.
   */
  contains?: object[][];
  lastUpdated?: DateFilter[];
  count: number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
}

export interface SearchPage<T extends Resource = Resource> {
  resources: T[];
  /** Cursor of the next page, when there is one. */
  next?: string;
}

type Row = typeof resources.$inferSelect;

/** What changed in one write, as an observer sees it. */
export interface ResourceChange {
  resource: Resource;
  /** Status and business-status code of the version before (absent on create). */
  previous?: { status?: string; businessStatus?: string };
  /** Who may read the new version. */
  access: readonly string[];
  /** What the observer's `lookup` found, evaluated in the writing statement. */
  lookup?: unknown;
}

/**
 * Runs inside the writing transaction after each create or update of `resourceType`
 * (the outbox: a job it enqueues exists if and only if the write commits).
 */
export interface WriteObserver {
  resourceType: string;
  onWrite(tx: ResourceStore, change: ResourceChange): Promise<void>;
  /**
   * A scalar jsonb expression evaluated inside the statement that writes a new version or a new
   * resource, given its access list as an SQL expression: what `onWrite` would otherwise read in a
   * statement of its own (it receives the value as `change.lookup`).
   */
  lookup?(access: SQL): SQL;
  /**
   * For a new resource: an SQL boolean that holds when `onWrite` will write nothing for it
   * (nothing it would act on exists), or false when it may write. With it, a claimed batch of
   * new resources runs as one statement outside a transaction when it holds (see `write`).
   */
  quietOnCreate?(change: { resource: Resource; access: readonly string[] }): SQL | false;
}

/** A new version, written only if the current one is still `expectedVersion` (412 otherwise; 404 when there is no such resource). */
export interface VersionedWrite<T extends Resource = Resource> {
  resource: T;
  expectedVersion: string;
  /** Replaces the access list; kept as is when absent. */
  access?: readonly string[];
}

/** A new resource readable by `access`, or by whoever may read `updates[sameAs]` as written. */
export type BatchCreate = NewResource | { resource: Resource; access: { sameAs: number } };

export interface WriteBatch {
  updates?: readonly VersionedWrite[];
  creates?: readonly BatchCreate[];
  /** Other writes of the same statement (a use case's own table, queued jobs). */
  parts?: readonly StatementPart[];
  /**
   * A part run first that returns at most one row (an idempotency key's
   * `INSERT ... ON CONFLICT DO NOTHING RETURNING`, write-batch.ts): without its row nothing of
   * `updates` and `creates` is written, no observer runs, and `write` answers `claimed: false`.
   * Parts that must not run then guard themselves on it (JobQueue.enqueueParts' `onlyIf`).
   */
  claim?: ClaimPart;
}

export interface WriteResult {
  updated: Resource[];
  created: Resource[];
  /** False when the batch's `claim` returned no row, and nothing of the batch was written; true otherwise. */
  claimed: boolean;
}

/**
 * FHIR resources as versioned jsonb rows: `resource` holds the current version,
 * `resource_history` every version. Every write is validated first, so nothing that
 * fails our profiles is ever stored. Works unchanged on PostgreSQL and PGlite.
 */
export class ResourceStore {
  private readonly db: Db;
  private readonly validator: ResourceValidator;
  private readonly now: () => Date;
  private readonly observers: readonly WriteObserver[];
  private readonly inTransaction: boolean;

  constructor(db: Db, validator: ResourceValidator, now: () => Date = () => new Date(), options: { observers?: readonly WriteObserver[]; inTransaction?: boolean } = {}) {
    this.db = db;
    this.validator = validator;
    this.now = now;
    this.observers = options.observers ?? [];
    this.inTransaction = options.inTransaction ?? false;
  }

  /**
   * Runs `fn` in one database transaction: every write inside commits together or not at all.
   * Nested calls become savepoints.
   */
  async withTransaction<R>(fn: (store: ResourceStore) => Promise<R>): Promise<R> {
    return this.db.transaction(async (tx) => fn(new ResourceStore(tx as unknown as Db, this.validator, this.now, { observers: this.observers, inTransaction: true })));
  }

  private observersOf(resourceType: string): WriteObserver[] {
    return this.observers.filter((o) => o.resourceType === resourceType);
  }

  /** What the observers of `resourceType` look up inside the writing statement, in observer order. */
  private lookupsOf(resourceType: string): ((access: SQL) => SQL)[] {
    return this.observersOf(resourceType).flatMap((o) => (o.lookup ? [(access: SQL) => o.lookup?.(access) as SQL] : []));
  }

  /**
   * When every observer of these new resources can say in SQL that it will write nothing for them
   * (`quietOnCreate`), that condition, ANDed; undefined when there is no observer, or one may write.
   */
  private quietWhen(creates: readonly BatchCreate[]): SQL | undefined {
    const conditions: SQL[] = [];
    for (const { resource, access } of creates) {
      for (const observer of this.observersOf(resource.resourceType)) {
        if (!observer.quietOnCreate || !Array.isArray(access)) return undefined;
        const quiet = observer.quietOnCreate({ resource, access: access as readonly string[] });
        if (quiet === false) return undefined;
        conditions.push(quiet);
      }
    }
    return conditions.length > 0 ? sql.join(conditions, sql` AND `) : undefined;
  }

  /** A write its observers see must run in a transaction, so what they enqueue commits with it. */
  private needsTransaction(types: readonly string[]): boolean {
    return !this.inTransaction && types.some((t) => this.observersOf(t).length > 0);
  }

  /** The underlying drizzle handle, for use cases that write their own tables in the same transaction. */
  get database(): Db {
    return this.db;
  }

  async create<T extends Resource>(resource: T, access: readonly string[]): Promise<T> {
    const [created] = await this.createMany([{ resource, access }]);
    return created as T;
  }

  /** Creates several resources in one statement (ids are assigned when missing); see `write`. */
  async createMany(items: readonly NewResource[]): Promise<Resource[]> {
    return (await this.write({ creates: items })).created;
  }

  /**
   * Lets `participantId` read these resources, every version of them, without making a new
   * version: who may read a resource is not part of its content (a released blinded record
   * set stays the same Bundle). Returns the number of current rows changed.
   */
  async grantAccess(resourceType: string, ids: readonly string[], participantId: string): Promise<number> {
    if (ids.length === 0) return 0;
    const grant = { access: sql`array_append(${resources.access}, ${participantId}::text)` };
    const changed = await this.db
      .update(resources)
      .set(grant)
      .where(and(eq(resources.resourceType, resourceType), inArray(resources.id, [...ids]), sql`NOT (${resources.access} @> ARRAY[${participantId}]::text[])`))
      .returning({ id: resources.id });
    await this.db
      .update(resourceHistory)
      .set({ access: sql`array_append(${resourceHistory.access}, ${participantId}::text)` })
      .where(and(eq(resourceHistory.resourceType, resourceType), inArray(resourceHistory.id, [...ids]), sql`NOT (${resourceHistory.access} @> ARRAY[${participantId}]::text[])`));
    return changed.length;
  }

  /**
   * Takes `participantId` off these resources' access lists, every version, without a new
   * version (as `grantAccess` gives it), putting `marker` in its place so a later refusal can
   * say why it was refused. Returns the number of current rows changed.
   */
  async revokeAccess(resourceType: string, ids: readonly string[], participantId: string, marker: string): Promise<number> {
    if (ids.length === 0) return 0;
    const changed = await this.db
      .update(resources)
      .set({ access: sql`array_replace(${resources.access}, ${participantId}::text, ${marker}::text)` })
      .where(and(eq(resources.resourceType, resourceType), inArray(resources.id, [...ids]), sql`${resources.access} @> ARRAY[${participantId}]::text[]`))
      .returning({ id: resources.id });
    await this.db
      .update(resourceHistory)
      .set({ access: sql`array_replace(${resourceHistory.access}, ${participantId}::text, ${marker}::text)` })
      .where(and(eq(resourceHistory.resourceType, resourceType), inArray(resourceHistory.id, [...ids]), sql`${resourceHistory.access} @> ARRAY[${participantId}]::text[]`));
    return changed.length;
  }

  /** The access list of the current version; undefined when there is no such resource. */
  async accessList(resourceType: string, id: string): Promise<string[] | undefined> {
    const [row] = await this.db
      .select({ access: resources.access })
      .from(resources)
      .where(and(eq(resources.resourceType, resourceType), eq(resources.id, id)));
    return row?.access;
  }

  /**
   * Writes a new version. With `expectedVersion` (If-Match; every use case passes the version it
   * read) the write succeeds only if the current version is still that one (412 otherwise), so
   * concurrent updates never lose one another. Without it, the row is locked to learn its
   * version first (last writer wins).
   */
  async update<T extends Resource>(resource: T, options: UpdateOptions = {}): Promise<T> {
    const type = resource.resourceType;
    const id = resource.id;
    if (!id) throw new Error('update needs a resource id');
    if (options.expectedVersion !== undefined && !/^\d+$/.test(options.expectedVersion)) throw new OperationOutcomeError(preconditionFailed);
    // Observers need a transaction; so does the lock below.
    if (!this.inTransaction && (options.expectedVersion === undefined || this.observersOf(type).length > 0)) return this.withTransaction((tx) => tx.update(resource, options));
    let expected = options.expectedVersion;
    if (expected === undefined) {
      const [row] = await this.db
        .select({ versionId: resources.versionId })
        .from(resources)
        .where(and(eq(resources.resourceType, type), eq(resources.id, id)))
        .for('update');
      if (!row) throw new OperationOutcomeError(notFound);
      expected = String(row.versionId);
    }
    return this.writeVersion(resource, Number(expected), options.access);
  }

  /** One new version in one statement (the update, its history row, what the observers look up). */
  private async writeVersion<T extends Resource>(resource: T, expected: number, newAccess: readonly string[] | undefined): Promise<T> {
    const { updated } = await this.write({ updates: [{ resource, expectedVersion: String(expected), ...(newAccess ? { access: newAccess } : {}) }] });
    return updated[0] as T;
  }

  /**
   * Several writes in one SQL statement (write-batch.ts): new versions (each only if its expected
   * version is still current: 412 otherwise, 404 for a missing resource), new resources (ids
   * assigned when missing) and other modules' parts (their tables, queued jobs). Observers run
   * after it, with what they look up already read by the statement. Everything is validated
   * first. Outside a transaction it opens one when the batch has observers or more than a new
   * version, so a refused version leaves nothing behind. The rows go in as one jsonb parameter:
   * the query builder's per-value work was a fifth of intake's CPU (scripts/bench-intake.ts --cpu-prof).
   */
  async write(batch: WriteBatch): Promise<WriteResult> {
    const updates = batch.updates ?? [];
    const creates = batch.creates ?? [];
    const parts = batch.parts ?? [];
    if (updates.length + creates.length + parts.length === 0 && !batch.claim) return { updated: [], created: [], claimed: true };
    for (const u of updates) {
      if (!u.resource.id) throw new Error('update needs a resource id');
      if (!/^\d+$/.test(u.expectedVersion)) throw new OperationOutcomeError(preconditionFailed);
    }
    const types = [...updates, ...creates].map((w) => w.resource.resourceType);
    // A claimed batch of new resources whose observers will stay quiet is one statement, no
    // transaction: it writes only if they will (`quietOnCreate`, evaluated by the statement), and
    // is run again in a transaction otherwise.
    const when = !this.inTransaction && batch.claim && updates.length === 0 ? this.quietWhen(creates) : undefined;
    if (!this.inTransaction && !when && (this.needsTransaction(types) || (updates.length > 0 && updates.length + creates.length + parts.length + (batch.claim ? 1 : 0) > 1))) return this.withTransaction((tx) => tx.write(batch));
    const lastUpdated = this.now();
    const meta = (r: Resource, versionId: number) => ({ ...r, meta: { ...r.meta, versionId: String(versionId), lastUpdated: lastUpdated.toISOString() } }) as Resource;
    const versions: VersionRow[] = updates.map((u) => {
      const expected = Number(u.expectedVersion);
      const content = meta(u.resource, expected + 1);
      this.validator.validate(content);
      return { resourceType: content.resourceType, id: content.id as string, versionId: expected + 1, expected, lastUpdated, content, ...(u.access ? { access: u.access } : {}), lookups: this.lookupsOf(content.resourceType) };
    });
    const rows: CreateRow[] = creates.map(({ resource, access }) => {
      const content = meta({ ...resource, id: resource.id ?? randomUUID() }, 1);
      this.validator.validate(content);
      return { resourceType: content.resourceType, id: content.id as string, lastUpdated, content, access, lookups: this.lookupsOf(content.resourceType) };
    });
    const result = await executeNamed(this.db, buildWriteStatement(versions, rows, parts, batch.claim, when));
    const row = result.rows[0] ?? {};
    if (when && row.proceeded !== true) return this.withTransaction((tx) => tx.write(batch));
    if (batch.claim && row.claimed !== true) return { updated: [], created: [], claimed: false };
    const { versions: outcomes, creates: createLookups } = readOutcomes(versions, rows, row);
    for (const outcome of outcomes) {
      if (!outcome.found) throw new OperationOutcomeError(notFound);
      if (!outcome.access) throw new OperationOutcomeError(preconditionFailed);
    }
    for (const [i, v] of versions.entries()) {
      const { access, status, businessStatus, lookups } = outcomes[i] as (typeof outcomes)[number];
      const previous = { ...(status ? { status } : {}), ...(businessStatus ? { businessStatus } : {}) };
      let l = 0;
      for (const observer of this.observersOf(v.resourceType)) {
        await observer.onWrite(this, { resource: v.content as Resource, access: access ?? [], previous, ...(observer.lookup ? { lookup: lookups[l++] } : {}) });
      }
    }
    for (const [i, r] of rows.entries()) {
      const access = Array.isArray(r.access) ? r.access : (outcomes[(r.access as { sameAs: number }).sameAs]?.access ?? []);
      const lookups = createLookups[i] ?? [];
      let l = 0;
      for (const observer of this.observersOf(r.resourceType)) await observer.onWrite(this, { resource: r.content as Resource, access, ...(observer.lookup ? { lookup: lookups[l++] } : {}) });
    }
    return { updated: versions.map((v) => v.content as Resource), created: rows.map((r) => r.content as Resource), claimed: true };
  }

  async read<T extends Resource>(resourceType: T['resourceType'], id: string, reader: Reader): Promise<T | undefined> {
    const rows = await this.db
      .select()
      .from(resources)
      .where(and(eq(resources.resourceType, resourceType), eq(resources.id, id), accessFilter(resources.access, reader)))
      .limit(1);
    return rows[0]?.content as T | undefined;
  }

  /** Reads several resources of one type by id; missing or unreadable ones are left out. */
  async readMany<T extends Resource>(resourceType: T['resourceType'], ids: readonly string[], reader: Reader): Promise<T[]> {
    if (ids.length === 0) return [];
    const rows = await this.db
      .select()
      .from(resources)
      .where(and(eq(resources.resourceType, resourceType), inArray(resources.id, [...ids]), accessFilter(resources.access, reader)));
    const byId = new Map(rows.map((r) => [r.id, r.content as T]));
    return ids.flatMap((id) => (byId.has(id) ? [byId.get(id) as T] : []));
  }

  /** Undefined for a version id this store cannot have made (not decimal digits, 0, or past the integer column's range), without asking the database. */
  async readVersion<T extends Resource>(resourceType: T['resourceType'], id: string, versionId: string, reader: Reader): Promise<T | undefined> {
    const version = /^\d{1,10}$/.test(versionId) ? Number(versionId) : 0;
    if (version < 1 || version > MAX_VERSION) return undefined;
    if (!(await this.read(resourceType, id, reader))) return undefined;
    const rows = await this.db
      .select()
      .from(resourceHistory)
      .where(and(eq(resourceHistory.resourceType, resourceType), eq(resourceHistory.id, id), eq(resourceHistory.versionId, version)))
      .limit(1);
    return rows[0]?.content as T | undefined;
  }

  /** Every version, newest first; undefined when the reader may not see the resource. */
  async history<T extends Resource>(resourceType: T['resourceType'], id: string, reader: Reader): Promise<T[] | undefined> {
    if (!(await this.read(resourceType, id, reader))) return undefined;
    const rows = await this.db
      .select()
      .from(resourceHistory)
      .where(and(eq(resourceHistory.resourceType, resourceType), eq(resourceHistory.id, id)))
      .orderBy(desc(resourceHistory.versionId));
    return rows.map((r) => r.content as T);
  }

  /** How many resources match `query` for `reader` (the same conditions as `search`, no page). */
  async count(query: Omit<SearchQuery, 'count' | 'cursor'>, reader: Reader): Promise<number> {
    return countResources(this.db, query, reader);
  }

  /** Newest first (by lastUpdated, then id), keyset-paginated so pages stay stable under inserts. */
  async search<T extends Resource>(query: SearchQuery, reader: Reader): Promise<SearchPage<T>> {
    const conditions: (SQL | undefined)[] = [eq(resources.resourceType, query.resourceType), accessFilter(resources.access, reader)];
    for (const group of query.contains ?? []) {
      conditions.push(or(...group.map((doc) => sql`${resources.content} @> ${JSON.stringify(doc)}::jsonb`)));
    }
    for (const f of query.lastUpdated ?? []) conditions.push(dateCondition(f));
    const after = query.cursor ? decodeCursor(query.cursor) : undefined;
    // The doors refuse a cursor not made here (400); one reaching the store is a bug, not page one.
    if (query.cursor && !after) throw new Error('search cursor was not made by this store');
    if (after) {
      conditions.push(sql`(${resources.lastUpdated}, ${resources.id}) < (${after.lastUpdated.toISOString()}::timestamptz, ${after.id})`);
    }
    const rows: Row[] = await this.db
      .select()
      .from(resources)
      .where(and(...conditions))
      .orderBy(desc(resources.lastUpdated), desc(resources.id))
      .limit(query.count + 1);
    const page = rows.slice(0, query.count);
    const last = page[page.length - 1];
    return {
      resources: page.map((r) => r.content as T),
      next: rows.length > query.count && last ? encodeCursor(last.lastUpdated, last.id) : undefined,
    };
  }
}

/** Versions are a PostgreSQL `integer`: a larger number in a query fails the statement. */
const MAX_VERSION = 2_147_483_647;
