/**
 * Searching the network directory (Organization, Endpoint) in memory, with the same parsed search
 * the store answers (search-parameters.ts): containment documents mean what jsonb `@>` means,
 * dates compare with `meta.lastUpdated`, and pages are cut and continued as the store does
 * (newest first, then id, with the same opaque cursor), so a client cannot tell the difference.
 */
import type { Resource } from '@medplum/fhirtypes';
import { decodeCursor, encodeCursor, type DateFilter, type SearchPage } from '../store/resource-store.ts';
import type { ParsedSearch, StringMatch } from './search-parameters.ts';

/** jsonb containment (`resource @> doc`): objects by key, arrays by "each element of doc is in some element". */
export function jsonContains(value: unknown, doc: unknown): boolean {
  if (Array.isArray(doc)) return Array.isArray(value) && doc.every((d) => value.some((v) => jsonContains(v, d)));
  if (doc !== null && typeof doc === 'object') {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
    return Object.entries(doc).every(([k, d]) => jsonContains((value as Record<string, unknown>)[k], d));
  }
  return value === doc;
}

/** FHIR string search: case- and accent-insensitive; prefix by default (R4 §3.1.1.4.7 string). */
function normalize(text: string): string {
  return text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

function valuesAt(value: unknown, path: readonly string[]): unknown[] {
  if (path.length === 0) return Array.isArray(value) ? value : [value];
  if (Array.isArray(value)) return value.flatMap((v) => valuesAt(v, path));
  if (value === null || typeof value !== 'object') return [];
  const [head, ...rest] = path;
  return valuesAt((value as Record<string, unknown>)[(head as string).replace(/\[\]$/, '')], rest);
}

function stringMatches(resource: Resource, m: StringMatch): boolean {
  return valuesAt(resource, m.path).some((v) => {
    if (typeof v !== 'string') return false;
    if (m.match === 'exact') return v === m.value;
    const [text, wanted] = [normalize(v), normalize(m.value)];
    return m.match === 'contains' ? text.includes(wanted) : text.startsWith(wanted);
  });
}

function dateMatches(resource: Resource, f: DateFilter): boolean {
  const t = new Date(resource.meta?.lastUpdated ?? 0).getTime();
  const v = f.value.getTime();
  return { eq: t === v, ne: t !== v, gt: t > v, lt: t < v, ge: t >= v, le: t <= v }[f.op];
}

/** Whether `resource` matches every AND group of `parsed` (one alternative of each). */
export function matchesSearch(resource: Resource, parsed: Pick<ParsedSearch, 'contains' | 'strings' | 'lastUpdated'>): boolean {
  return (
    parsed.contains.every((group) => group.some((doc) => jsonContains(resource, doc))) &&
    parsed.strings.every((group) => group.some((m) => stringMatches(resource, m))) &&
    parsed.lastUpdated.every((f) => dateMatches(resource, f))
  );
}

/** Newest first, then by id descending: the store's order. */
function keyOf(r: Resource): [string, string] {
  return [new Date(r.meta?.lastUpdated ?? 0).toISOString(), r.id ?? ''];
}

const before = (a: [string, string], b: [string, string]) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

/** One page of the matches, continued after `parsed.cursor`, as `ResourceStore.search` pages. */
export function searchInMemory(all: readonly Resource[], parsed: Pick<ParsedSearch, 'contains' | 'strings' | 'lastUpdated' | 'count' | 'cursor'>): SearchPage {
  const after = parsed.cursor ? decodeCursor(parsed.cursor) : undefined;
  const matches = all
    .filter((r) => matchesSearch(r, parsed))
    .sort((a, b) => (before(keyOf(a), keyOf(b)) ? 1 : before(keyOf(b), keyOf(a)) ? -1 : 0))
    .filter((r) => !after || before(keyOf(r), [after.lastUpdated.toISOString(), after.id]));
  const page = matches.slice(0, parsed.count);
  const last = page[page.length - 1];
  return { resources: page, ...(matches.length > parsed.count && last ? { next: encodeCursor(new Date(last.meta?.lastUpdated ?? 0), last.id as string) } : {}) };
}

/** How many resources match (`_summary=count`). */
export function countInMemory(all: readonly Resource[], parsed: Pick<ParsedSearch, 'contains' | 'strings' | 'lastUpdated'>): number {
  return all.filter((r) => matchesSearch(r, parsed)).length;
}
