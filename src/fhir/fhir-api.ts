import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Bundle, BundleLink, OperationOutcome, Resource, ResourceType } from '@medplum/fhirtypes';
import type { Caller } from '../http/context.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { outcome, issue } from './outcomes.ts';
import { parseSearch, SEARCH_PARAMETERS } from './search-parameters.ts';

/**
 * The FHIR read API (issue 2 §7) as plain functions: no Express in here. Every call sees
 * only what belongs to the caller's participant; anything else is "not found".
 */
export interface FhirApiDeps {
  store: ResourceStore;
  /** Base of the FHIR endpoint as clients see it, e.g. https://host/fhir */
  fhirBaseUrl: string;
}

/** Resource types served by /fhir. */
export const SERVED_TYPES = Object.keys(SEARCH_PARAMETERS) as ResourceType[];

function assertServed(resourceType: string): asserts resourceType is ResourceType {
  if (!(SERVED_TYPES as string[]).includes(resourceType)) {
    throw new OperationOutcomeError({ ...outcome([issue('not-supported', `Resource type '${resourceType}' is not served here`)]), id: 'not-found' });
  }
}

export async function readResource(resourceType: string, id: string, caller: Caller, deps: FhirApiDeps): Promise<Resource> {
  assertServed(resourceType);
  const resource = await deps.store.read(resourceType, id, { participantId: caller.participantId });
  if (!resource) throw new OperationOutcomeError(notFound);
  return resource;
}

export async function readVersion(resourceType: string, id: string, versionId: string, caller: Caller, deps: FhirApiDeps): Promise<Resource> {
  assertServed(resourceType);
  const resource = await deps.store.readVersion(resourceType, id, versionId, { participantId: caller.participantId });
  if (!resource) throw new OperationOutcomeError(notFound);
  return resource;
}

export async function readHistory(resourceType: string, id: string, caller: Caller, deps: FhirApiDeps): Promise<Bundle> {
  assertServed(resourceType);
  const versions = await deps.store.history(resourceType, id, { participantId: caller.participantId });
  if (!versions) throw new OperationOutcomeError(notFound);
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
 * Type-level search returning a searchset Bundle with a `next` link (keyset cursor).
 * Unknown parameters are ignored and reported in an OperationOutcome entry, or refused
 * with 400 when the client sent `Prefer: handling=strict` (FHIR R4 §3.1.1.5.1).
 */
export async function searchResources(resourceType: string, params: Record<string, string[]>, strict: boolean, caller: Caller, deps: FhirApiDeps): Promise<Bundle> {
  assertServed(resourceType);
  const parsed = parseSearch(resourceType, params, strict);
  const page = await deps.store.search(
    { resourceType, contains: parsed.contains, lastUpdated: parsed.lastUpdated, count: parsed.count, cursor: parsed.cursor },
    { participantId: caller.participantId },
  );
  const self = new URLSearchParams();
  for (const [name, values] of Object.entries(params)) {
    if (parsed.unknown.includes(name)) continue;
    for (const v of values) self.append(name, v);
  }
  const link: BundleLink[] = [{ relation: 'self', url: withQuery(`${deps.fhirBaseUrl}/${resourceType}`, self) }];
  if (page.next) {
    const next = new URLSearchParams(self);
    next.set('_cursor', page.next);
    next.set('_count', String(parsed.count));
    link.push({ relation: 'next', url: withQuery(`${deps.fhirBaseUrl}/${resourceType}`, next) });
  }
  const entry: Bundle['entry'] = page.resources.map((r) => ({
    fullUrl: `${deps.fhirBaseUrl}/${resourceType}/${r.id}`,
    resource: r,
    search: { mode: 'match' },
  }));
  if (parsed.unknown.length) {
    const warning: OperationOutcome = outcome(parsed.unknown.map((u) => issue('not-supported', `Search parameter '${u}' is not supported and was ignored`, u, 'warning')));
    entry.push({ resource: warning, search: { mode: 'outcome' } });
  }
  return { resourceType: 'Bundle', type: 'searchset', link, entry };
}

function withQuery(url: string, params: URLSearchParams): string {
  const q = params.toString();
  return q ? `${url}?${q}` : url;
}
