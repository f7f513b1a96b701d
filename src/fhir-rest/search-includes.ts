/**
 * `_include` and `_revinclude` (FHIR R4 §3.1.1.5.4): the resources a search's matches point at,
 * and those that point at them, read through the same access filter as the matches. What the
 * caller may not see does not exist for it, so it is never included (a clinic asking for a
 * referral's Tasks gets its own Task only); a type its token has no read scope for is left out
 * and said so in the searchset's OperationOutcome entry.
 */
import type { OperationOutcomeIssue, Resource, ResourceType } from '@medplum/fhirtypes';
import type { Caller } from '../access/caller.ts';
import { readerOf } from '../access/reader.ts';
import { FHIR_TYPE_ACCESS } from '../access/route-rules.ts';
import { hasScope } from '../auth/scopes.ts';
import { issue } from '../fhir/outcomes.ts';
import { type FhirDirectory, isDirectoryType } from '../network/fhir-directory.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { containmentFor, type IncludeRequest, MAX_COUNT, SEARCH_PARAMETERS } from './search-parameters.ts';

export interface IncludeDeps {
  store: ResourceStore;
  directory: FhirDirectory;
}

/** Pages of a `_revinclude` read at most (MAX_COUNT each): beyond, the rest is said to be left out. */
const MAX_REVINCLUDE_PAGES = 10;

/** Whether the caller may read resources of `type` at all (scope, and the type's role rule): else none is included. */
function mayReadType(caller: Caller, type: ResourceType): boolean {
  if (isDirectoryType(type)) return true;
  const rule = FHIR_TYPE_ACCESS[type];
  if (rule && rule.roles !== 'any' && !rule.roles.some((r) => caller.roles.includes(r))) return false;
  return hasScope(caller.scopes, type, 'r');
}

const LOCAL_REFERENCE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/;

/** The included resources (each once, none that is already a match) and notes on what was left out. */
export async function resolveIncludes(
  resourceType: ResourceType,
  matches: readonly Resource[],
  requests: { include: readonly IncludeRequest[]; revinclude: readonly IncludeRequest[] },
  caller: Caller,
  deps: IncludeDeps,
): Promise<{ included: Resource[]; notes: OperationOutcomeIssue[] }> {
  const seen = new Set(matches.map((r) => `${r.resourceType}/${r.id}`));
  const included: Resource[] = [];
  const notes: OperationOutcomeIssue[] = [];
  const add = (r: Resource) => {
    const key = `${r.resourceType}/${r.id}`;
    if (seen.has(key)) return;
    seen.add(key);
    included.push(r);
  };
  const refused = (what: string, type: string) => notes.push(issue('forbidden', `${what}: ${type} not included, the access token grants no system/${type}.r`, '_include', 'information'));
  const reader = readerOf(caller);

  for (const req of requests.include) {
    const wanted = new Map<ResourceType, Set<string>>();
    for (const match of matches) {
      for (const ref of req.def.references(match)) {
        const m = ref ? LOCAL_REFERENCE.exec(ref) : null;
        const type = m?.[1] as ResourceType | undefined;
        if (!m || !type || !req.def.targets.includes(type) || (req.target && req.target !== type)) continue;
        if (!wanted.has(type)) wanted.set(type, new Set());
        wanted.get(type)?.add(m[2] as string);
      }
    }
    for (const [type, ids] of wanted) {
      if (!mayReadType(caller, type)) {
        refused(`${req.source}:${req.def.name}`, type);
        continue;
      }
      const found = isDirectoryType(type) ? [...ids].flatMap((id) => deps.directory.read(type, id) ?? []) : await deps.store.readMany(type, [...ids], reader);
      found.forEach(add);
    }
  }

  for (const req of requests.revinclude) {
    const param = SEARCH_PARAMETERS[req.source]?.find((d) => d.name === req.def.name && d.kind === 'reference');
    if (!param || matches.length === 0) continue;
    if (!mayReadType(caller, req.source)) {
      refused(`${req.source}:${req.def.name}`, req.source);
      continue;
    }
    const contains = [matches.flatMap((m) => containmentFor(param, `${resourceType}/${m.id}`))];
    let cursor: string | undefined;
    for (let pageNo = 0; ; pageNo++) {
      if (pageNo === MAX_REVINCLUDE_PAGES) {
        notes.push(issue('too-costly', `_revinclude=${req.source}:${req.def.name}: only the first ${MAX_REVINCLUDE_PAGES * MAX_COUNT} are included; narrow the search`, '_revinclude', 'warning'));
        break;
      }
      const page = await deps.store.search({ resourceType: req.source, contains, count: MAX_COUNT, ...(cursor ? { cursor } : {}) }, reader);
      page.resources.forEach(add);
      if (!page.next) break;
      cursor = page.next;
    }
  }
  return { included, notes };
}
