import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Bundle, BundleLink, OperationOutcome, Resource, ResourceType } from '@medplum/fhirtypes';
import { auditedRead, requestedEntity, touchedResources } from '../audit/audited-read.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { requireRole, requireScope } from '../access/caller.ts';
import type { Caller } from '../access/caller.ts';
import type { Reader, ResourceStore } from '../store/resource-store.ts';
import { outcome, issue } from '../fhir/outcomes.ts';
import { subsetElements } from '../fhir/subset.ts';
import { type DirectoryType, type FhirDirectory, isDirectoryType } from '../network/fhir-directory.ts';
import { COMMON_PARAMETERS, type ParsedSearch, parseSearch, SEARCH_PARAMETERS } from './search-parameters.ts';
import { readerOf } from '../access/reader.ts';
import { FHIR_TYPE_ACCESS } from '../access/route-rules.ts';
import { countInMemory, searchInMemory } from './directory-search.ts';
import { resolveIncludes } from './search-includes.ts';

/**
 * The FHIR read API as plain functions: no Express in here. Every call sees
 * only what belongs to the caller's participant; anything else is "not found".
 *
 * Every read, vread, history and search of a served type is authorized here (scope, and the
 * auditor role for AuditEvent) and leaves an AuditEvent, success or refused, stored before the
 * result is returned. Reads of AuditEvents are audited too, as BALP does; the
 * audit write itself goes straight to the store, so there is no recursion. A request for a
 * type this endpoint does not serve is not audited: no resource of it can be read here.
 */
export interface FhirApiDeps {
  store: ResourceStore;
  /** Base of the FHIR endpoint as clients see it, e.g. https://host/fhir */
  fhirBaseUrl: string;
  audit: AuditLog;
  /** The network as Organization and Endpoint resources (not PHI: read by any participant, not audited). */
  directory: FhirDirectory;
}

/** Resource types served by /fhir. */
export const SERVED_TYPES = Object.keys(SEARCH_PARAMETERS) as ResourceType[];

function assertServed(resourceType: string): asserts resourceType is ResourceType {
  if (!(SERVED_TYPES as string[]).includes(resourceType)) {
    throw new OperationOutcomeError({ ...outcome([issue('not-supported', `Resource type '${resourceType}' is not served here`)]), id: 'not-found' });
  }
}

/**
 * Checks the scope for `interaction` and the type's row of `FHIR_TYPE_ACCESS`, and picks the
 * reader. AuditEvents have empty access lists: the auditor role reads them all through the
 * 'system' reader, anyone else is refused (403).
 */
function authorize(resourceType: ResourceType, interaction: 'r' | 's', caller: Caller): Reader {
  requireScope(caller, resourceType, interaction);
  const rule = FHIR_TYPE_ACCESS[resourceType];
  if (rule && rule.roles !== 'any') {
    requireRole(caller, rule.roles);
    if (rule.readsAll) return 'system';
  }
  return readerOf(caller);
}

/** A directory resource: any authenticated participant, no scope, no audit (the network file is not PHI). */
function readDirectory(type: DirectoryType, id: string, deps: FhirApiDeps): Resource {
  const resource = deps.directory.read(type, id);
  if (!resource) throw new OperationOutcomeError(notFound);
  return resource;
}

export async function readResource(resourceType: string, id: string, caller: Caller, deps: FhirApiDeps): Promise<Resource> {
  assertServed(resourceType);
  if (isDirectoryType(resourceType)) return readDirectory(resourceType, id, deps);
  return auditedRead(deps.audit, caller, { action: 'read', requested: requestedEntity(resourceType, id), touched: (r) => touchedResources([r]) }, async () => {
    const resource = await deps.store.read(resourceType, id, authorize(resourceType, 'r', caller));
    if (!resource) throw new OperationOutcomeError(notFound);
    return resource;
  });
}

export async function readVersion(resourceType: string, id: string, versionId: string, caller: Caller, deps: FhirApiDeps): Promise<Resource> {
  assertServed(resourceType);
  if (isDirectoryType(resourceType)) {
    const resource = readDirectory(resourceType, id, deps);
    if (versionId !== resource.meta?.versionId) throw new OperationOutcomeError(notFound);
    return resource;
  }
  const requested = requestedEntity(resourceType, id, versionId);
  return auditedRead(deps.audit, caller, { action: 'vread', requested, touched: (r) => ({ ...touchedResources([r]), entities: requested }) }, async () => {
    const resource = await deps.store.readVersion(resourceType, id, versionId, authorize(resourceType, 'r', caller));
    if (!resource) throw new OperationOutcomeError(notFound);
    return resource;
  });
}

export async function readHistory(resourceType: string, id: string, caller: Caller, deps: FhirApiDeps): Promise<Bundle> {
  assertServed(resourceType);
  const requested = requestedEntity(resourceType, id);
  const versions = isDirectoryType(resourceType) ? [readDirectory(resourceType, id, deps)] : await auditedRead(
    deps.audit,
    caller,
    // Newest version first: its patient is the one recorded.
    { action: 'history', requested, touched: (v) => ({ ...touchedResources(v.slice(0, 1)), entities: requested }) },
    async () => {
      const found = await deps.store.history(resourceType, id, authorize(resourceType, 'r', caller));
      if (!found) throw new OperationOutcomeError(notFound);
      return found;
    },
  );
  return {
    resourceType: 'Bundle',
    type: 'history',
    total: versions.length,
    link: [{ relation: 'self', url: `${deps.fhirBaseUrl}/${resourceType}/${id}/_history` }],
    entry: versions.map((r) => ({
      fullUrl: `${deps.fhirBaseUrl}/${resourceType}/${id}`,
      resource: r,
      request: { method: r.meta?.versionId === '1' ? 'POST' : 'PUT', url: r.meta?.versionId === '1' ? resourceType : `${resourceType}/${id}` },
      response: { status: r.meta?.versionId === '1' ? '201 Created' : '200 OK', etag: `W/"${r.meta?.versionId}"`, lastModified: r.meta?.lastUpdated },
    })),
  };
}

/**
 * The search as recorded in its AuditEvent (BALP Query): `Type?name=value...` with only the
 * parameters this endpoint understands, so free text a client sends in an unknown parameter
 * is never stored. The paging cursor is left out (opaque, not part of the question).
 */
export function auditQuery(resourceType: ResourceType, params: Record<string, string[]>): string {
  const known = new Set<string>([...(SEARCH_PARAMETERS[resourceType] ?? []).map((d) => d.name), ...COMMON_PARAMETERS]);
  known.delete('_cursor');
  const q = new URLSearchParams();
  for (const [name, values] of Object.entries(params)) {
    if (!known.has(name)) continue;
    for (const v of values) q.append(name, v);
  }
  return withQuery(resourceType, q);
}

/**
 * Type-level search returning a searchset Bundle with a `next` link (keyset cursor).
 * Unknown parameters (and values of known ones this service does not support) are ignored and
 * reported in an OperationOutcome entry, or refused with 400 when the client sent
 * `Prefer: handling=strict` (FHIR R4 §3.1.1.5.1). `_include`/`_revinclude` add what the matches
 * point at, or what points at them, through the caller's access filter; they are audited with the
 * matches. `_summary=count` answers the total only; `_elements` subsets the matches.
 */
export async function searchResources(resourceType: string, params: Record<string, string[]>, strict: boolean, caller: Caller, deps: FhirApiDeps): Promise<Bundle> {
  assertServed(resourceType);
  const references = { ownBase: deps.fhirBaseUrl, externalBases: deps.directory.patientBasesFor(caller.participantId) };
  const run = async (): Promise<{ parsed: ParsedSearch; matches: Resource[]; included: Resource[]; notes: OperationOutcome['issue']; total?: number; next?: string }> => {
    const reader = isDirectoryType(resourceType) ? undefined : authorize(resourceType, 's', caller);
    const parsed = parseSearch(resourceType, params, strict, references);
    if (parsed.strings.length > 0 && !isDirectoryType(resourceType)) throw new Error(`string search parameters are answered for the directory only, not ${resourceType}`);
    const query = { resourceType, contains: parsed.contains, lastUpdated: parsed.lastUpdated };
    if (parsed.summaryCount) {
      const total = isDirectoryType(resourceType) ? countInMemory(deps.directory.all(resourceType), parsed) : await deps.store.count(query, reader as Reader);
      return { parsed, matches: [], included: [], notes: [], total };
    }
    const page = isDirectoryType(resourceType)
      ? searchInMemory(deps.directory.all(resourceType), parsed)
      : await deps.store.search({ ...query, count: parsed.count, cursor: parsed.cursor }, reader as Reader);
    const { included, notes } = await resolveIncludes(resourceType, page.resources, parsed, caller, deps);
    return { parsed, matches: page.resources, included, notes, ...(page.next ? { next: page.next } : {}) };
  };
  // The directory is not PHI (as /participants): a search of it alone is not audited; one that includes PHI would be.
  const result = isDirectoryType(resourceType)
    ? await run()
    : await auditedRead(deps.audit, caller, { action: 'search', requested: [], query: auditQuery(resourceType, params), touched: (r) => touchedResources([...r.matches, ...r.included]) }, run);
  const { parsed } = result;
  const self = new URLSearchParams();
  for (const [name, values] of Object.entries(params)) {
    if (parsed.unknown.includes(name)) continue;
    for (const v of values) if (!parsed.unsupported.some((u) => u.name === name && u.value === v)) self.append(name, v);
  }
  const link: BundleLink[] = [{ relation: 'self', url: withQuery(`${deps.fhirBaseUrl}/${resourceType}`, self) }];
  if (result.next) {
    const next = new URLSearchParams(self);
    next.set('_cursor', result.next);
    next.set('_count', String(parsed.count));
    link.push({ relation: 'next', url: withQuery(`${deps.fhirBaseUrl}/${resourceType}`, next) });
  }
  const entry: Bundle['entry'] = [
    ...result.matches.map((r) => ({
      fullUrl: `${deps.fhirBaseUrl}/${resourceType}/${r.id}`,
      resource: parsed.elements ? subsetElements(r, parsed.elements) : r,
      search: { mode: 'match' as const },
    })),
    ...result.included.map((r) => ({ fullUrl: `${deps.fhirBaseUrl}/${r.resourceType}/${r.id}`, resource: r, search: { mode: 'include' as const } })),
  ];
  const warnings = [
    ...parsed.unknown.map((u) => issue('not-supported', `Search parameter '${u}' is not supported and was ignored`, u, 'warning')),
    ...parsed.unsupported.map((u) => issue('not-supported', `${u.text}; ignored`, u.name, 'warning')),
    ...(result.notes ?? []),
  ];
  if (warnings.length) entry.push({ resource: outcome(warnings), search: { mode: 'outcome' } });
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    ...(result.total !== undefined ? { total: result.total } : {}),
    link,
    ...(parsed.summaryCount && entry.length === 0 ? {} : { entry }),
  };
}

function withQuery(url: string, params: URLSearchParams): string {
  const q = params.toString();
  return q ? `${url}?${q}` : url;
}
