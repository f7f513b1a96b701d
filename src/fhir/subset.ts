import { tryGetDataType } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import { ensureR4Definitions } from './validator.ts';

/** The tag a subsetted resource carries (FHIR R4 §3.1.1.5.9 `_elements`, §2.9.1 "SUBSETTED"). */
export const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED', display: 'subsetted' } as const;

/**
 * `resource` with only the top-level `elements` asked for (`_elements`), plus what every copy keeps:
 * `resourceType`, `id`, `meta` and the elements R4 makes mandatory (the spec asks servers to
 * return those). A choice element is named without its type (`occurrence` keeps
 * `occurrenceDateTime`). Tagged SUBSETTED, so no one takes it for the whole resource.
 */
export function subsetElements<T extends Resource>(resource: T, elements: readonly string[]): T {
  ensureR4Definitions();
  const schema = tryGetDataType(resource.resourceType);
  const mandatory = Object.entries(schema?.elements ?? {}).filter(([, e]) => e.min > 0).map(([name]) => name.replace(/\[x\]$/, ''));
  const wanted = new Set([...elements, ...mandatory]);
  const choices = Object.keys(schema?.elements ?? {}).filter((name) => name.endsWith('[x]')).map((name) => name.slice(0, -3)).filter((c) => wanted.has(c));
  const keep = (key: string) => wanted.has(key) || choices.some((c) => key.startsWith(c) && /^[A-Z]/.test(key.slice(c.length)));
  const out: Record<string, unknown> = { resourceType: resource.resourceType };
  for (const [key, value] of Object.entries(resource)) {
    if (key === 'resourceType' || key === 'id' || key === 'meta' || keep(key)) out[key] = value;
  }
  out.meta = { ...resource.meta, tag: [...(resource.meta?.tag ?? []), SUBSETTED] };
  return out as T;
}
