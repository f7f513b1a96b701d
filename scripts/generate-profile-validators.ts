/**
 * Part of scripts/generate-validators.ts: one validation function per profile of ours
 * (profiles/generated/profiles.json), generated from its snapshot like the R4 types: the
 * profile's cardinalities and types, pattern and fixed values, required bindings to our value
 * sets (codes from our CodeSystems), slices (extensions by url, categories by pattern) with
 * their cardinalities and contents, reference target types and the profile's invariants.
 */
import { readFileSync } from 'node:fs';
import type { Bundle, CodeSystem, StructureDefinition, ValueSet } from '@medplum/fhirtypes';
import { buildValueSetTable } from '../src/fhir/profile-registry.ts';
import { constraintIndex } from './generate-validator-values.ts';
import { emitNode, type Emitter, rootConstraintsOf } from './generate-validators.ts';

export interface ProfileFunctions {
  /** Canonical URL -> name of the generated function validating a resource or extension against it. */
  resources: Record<string, string>;
  extensions: Record<string, string>;
}

/** Emits the functions of every profile in the compiled profiles file; returns their names by URL. */
export function emitProfiles(e: Emitter, profilesPath: string): ProfileFunctions {
  const resources = ((JSON.parse(readFileSync(profilesPath, 'utf8')) as Bundle).entry ?? []).map((entry) => entry.resource!);
  const valueSets = buildValueSetTable(
    resources.filter((r): r is CodeSystem => r.resourceType === 'CodeSystem'),
    resources.filter((r): r is ValueSet => r.resourceType === 'ValueSet'),
  );
  const out: ProfileFunctions = { resources: {}, extensions: {} };
  for (const sd of resources.filter((r): r is StructureDefinition => r.resourceType === 'StructureDefinition')) {
    const elements = sd.snapshot?.element ?? [];
    const prefix = `p_${sd.name ?? sd.id}_`.replace(/[^A-Za-z0-9_]/g, '_');
    const isResource = sd.kind === 'resource';
    emitNode(e, { elements, prefix, valueSets }, sd.type, isResource);
    // The profile's own function: its root invariants, then its elements.
    const name = `${prefix}validate`;
    const root = rootConstraintsOf(sd).map((c) => constraintIndex(e, c));
    e.lines.push(`function ${name}(v: any, p: string, o: OperationOutcomeIssue[], r: any): void {`);
    for (const index of root) e.lines.push(`  inv(${index}, ${JSON.stringify(sd.type)}, v, p, o, r);`);
    e.lines.push(`  ${prefix}${sd.type.replace(/[^A-Za-z0-9]/g, '_')}(v, p, o, r);`);
    e.lines.push(`}`);
    (isResource ? out.resources : out.extensions)[sd.url] = name;
  }
  return out;
}
