/**
 * How many resources of one type on a sandbox FHIR server carry each value of one identifier
 * system, read in one pass. The end checks look up every opinion and every pushed copy by its
 * identifier; a search per lookup scans the in-memory store each time, which made the checks of
 * a 1,000-referral run take longer than the run.
 */
import type { MemoryRepository } from '@medplum/fhir-router';
import type { Resource, ResourceType } from '@medplum/fhirtypes';

export type IdentifierCounts = (value: string) => number;

export async function identifierCounts(repo: MemoryRepository, resourceType: ResourceType, system: string): Promise<IdentifierCounts> {
  const counts = new Map<string, number>();
  for (const resource of await repo.searchResources({ resourceType })) {
    const values = new Set(((resource as Resource & { identifier?: { system?: string; value?: string }[] }).identifier ?? []).filter((i) => i.system === system && i.value).map((i) => i.value as string));
    for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  }
  return (value) => counts.get(value) ?? 0;
}
