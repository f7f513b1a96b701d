/**
 * Our compiled profiles (profiles/generated/profiles.json, built by `npm run profiles`),
 * parsed once per process into Medplum's internal schema form, plus a code table of our
 * own CodeSystems for the required-binding check Medplum does not do.
 *
 * Why the schemas are registered in Medplum's data-type map: `validateResource(r, { profile })`
 * re-parses the StructureDefinition on every call (~3.6 ms for our ServiceRequest profile),
 * while a type found by name in `getAllDataTypes()` is parsed once. Medplum itself keys
 * logical models by canonical URL in that map, so each profile is registered under its
 * canonical URL and validated with `validateTypedValue({ type: <url>, value })`. The
 * registered copy has no `kind`, so `getResourceTypes()`/`isResourceType()` never list a
 * profile as a resource type.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { getAllDataTypes, parseStructureDefinition, type InternalTypeSchema } from '@medplum/core';
import type { Bundle, CodeSystem, CodeSystemConcept, StructureDefinition, ValueSet } from '@medplum/fhirtypes';

/** Works from `src/fhir` (tsx, vitest) and `dist/fhir` (compiled): both are two levels down. */
export const GENERATED_PROFILES_PATH = path.resolve(import.meta.dirname, '..', '..', 'profiles', 'generated', 'profiles.json');

/** One profile or extension definition of ours, parsed once. */
export interface CompiledDefinition {
  url: string;
  /** Resource type a profile constrains, or `Extension`. */
  type: string;
  /** Key under which the parsed schema is registered in Medplum's data-type map. */
  schemaKey: string;
  schema: InternalTypeSchema;
  /**
   * For a complex extension: the required value set of each sub-extension's value, by
   * sub-extension url (Medplum does not collect bound values inside extension slices).
   */
  subExtensionBindings: ReadonlyMap<string, string>;
}

/**
 * Which codes a value set of ours allows: per code system, the set of codes. Only value
 * sets that are fully made of our own code systems are listed (we can check those offline).
 */
export type ValueSetTable = ReadonlyMap<string, ReadonlyMap<string, ReadonlySet<string>>>;

export interface ProfileRegistry {
  /** Profiles (constraints on resources) by canonical URL. */
  profiles: ReadonlyMap<string, CompiledDefinition>;
  /** Extension definitions by canonical URL. */
  extensions: ReadonlyMap<string, CompiledDefinition>;
  /** Required-binding table of our value sets, by value-set URL. */
  valueSets: ValueSetTable;
}

const registries = new Map<string, ProfileRegistry>();

/**
 * Loads and compiles the generated profiles once per process and path. Requires the R4
 * base definitions to be indexed already (profiles are parsed against them).
 */
export function loadProfileRegistry(file: string = GENERATED_PROFILES_PATH): ProfileRegistry {
  const cached = registries.get(file);
  if (cached) return cached;

  const bundle = JSON.parse(readFileSync(file, 'utf8')) as Bundle;
  const resources = (bundle.entry ?? []).map((e) => e.resource).filter((r) => r !== undefined);
  const profiles = new Map<string, CompiledDefinition>();
  const extensions = new Map<string, CompiledDefinition>();
  const dataTypes = getAllDataTypes();
  // A second profiles file (tests) must not replace the first one's schemas in Medplum's map.
  const keySuffix = registries.size === 0 ? '' : `#${registries.size}`;

  for (const sd of resources.filter((r): r is StructureDefinition => r.resourceType === 'StructureDefinition')) {
    if (sd.derivation !== 'constraint' || !sd.type) continue;
    const schema = parseStructureDefinition(sd);
    const subExtensionBindings = new Map<string, string>();
    for (const element of sd.snapshot?.element ?? []) {
      const match = /^Extension\.extension:([^.]+)\.value\[x\]$/.exec(element.id ?? '');
      if (match?.[1] && element.binding?.strength === 'required' && element.binding.valueSet) subExtensionBindings.set(match[1], element.binding.valueSet);
    }
    const compiled: CompiledDefinition = { url: sd.url, type: sd.type, schemaKey: sd.url + keySuffix, schema, subExtensionBindings };
    // No `kind`: keep the profile out of Medplum's list of resource types.
    dataTypes[compiled.schemaKey] = { ...schema, kind: undefined };
    (sd.type === 'Extension' ? extensions : profiles).set(sd.url, compiled);
  }

  const registry: ProfileRegistry = {
    profiles,
    extensions,
    valueSets: buildValueSetTable(
      resources.filter((r): r is CodeSystem => r.resourceType === 'CodeSystem'),
      resources.filter((r): r is ValueSet => r.resourceType === 'ValueSet'),
    ),
  };
  registries.set(file, registry);
  return registry;
}

function conceptCodes(concepts: CodeSystemConcept[] | undefined, into: Set<string>): Set<string> {
  for (const concept of concepts ?? []) {
    into.add(concept.code);
    conceptCodes(concept.concept, into);
  }
  return into;
}

/**
 * Expands our value sets against our code systems: whole-system includes and explicit
 * concept lists. A value set with filters, excludes or a system we do not define is left
 * out (it cannot be checked from this table).
 */
export function buildValueSetTable(codeSystems: CodeSystem[], valueSets: ValueSet[]): ValueSetTable {
  const systems = new Map<string, Set<string>>();
  for (const cs of codeSystems) {
    if (cs.url) systems.set(cs.url, conceptCodes(cs.concept, new Set()));
  }
  const table = new Map<string, Map<string, ReadonlySet<string>>>();
  for (const vs of valueSets) {
    const includes = vs.compose?.include ?? [];
    if (!vs.url || includes.length === 0 || (vs.compose?.exclude?.length ?? 0) > 0) continue;
    const allowed = new Map<string, ReadonlySet<string>>();
    let checkable = true;
    for (const include of includes) {
      const codes = include.system ? systems.get(include.system) : undefined;
      if (!include.system || !codes || include.filter?.length || include.valueSet?.length) {
        checkable = false;
        break;
      }
      const selected = include.concept ? new Set(include.concept.map((c) => c.code)) : codes;
      const previous = allowed.get(include.system);
      allowed.set(include.system, previous ? new Set([...previous, ...selected]) : selected);
    }
    if (checkable) table.set(vs.url, allowed);
  }
  return table;
}
