/**
 * The helpers the generated validators (src/fhir/generated/r4-validators.ts) call: primitive
 * formats, empty values, unknown properties, reference target types and invariants. Texts and
 * paths follow Medplum's validator (@medplum/core typeschema/validation) so that the two can
 * be compared issue by issue.
 */
import { OperationOutcomeError, parseFhirPath, validateResource, validationRegexes, type FhirPathAtom } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';

type NodeFn = (v: any, p: string, o: OperationOutcomeIssue[], r: any) => void;

/**
 * The generated function of a resource type, or undefined. Own properties only: a
 * `resourceType` of "constructor" or "toString" must not find Object.prototype's.
 */
export function validatorOf(resourceType: unknown): NodeFn | undefined {
  return typeof resourceType === 'string' && Object.hasOwn(linked.resources, resourceType) ? linked.resources[resourceType] : undefined;
}

/** Filled by generated-validator.ts (avoids an import cycle with the generated module). */
export const linked: {
  resources: Readonly<Record<string, NodeFn>>;
  constraints: readonly { key: string; description: string; expression: string }[];
  parsed: FhirPathAtom[];
} = { resources: {}, constraints: [], parsed: [] };

export function S(path: string, text: string): OperationOutcomeIssue {
  return { severity: 'error', code: 'structure', details: { text }, expression: [path] };
}

export function unknown(v: Record<string, unknown>, keys: ReadonlySet<string>, p: string, o: OperationOutcomeIssue[]): void {
  for (const k in v) {
    if (!keys.has(k) && v[k] !== undefined) o.push(S(`${p}.${k}`, `Invalid additional property "${k}"`));
  }
}

/**
 * Medplum's "Invalid null value" and "Invalid empty non-primitive value": true when there is
 * nothing further to check. `companion`: the `_name` entry of a primitive, which lets a null
 * stand in a primitive array (`given: [null], _given: [{ extension }]`).
 */
export function empty(x: unknown, p: string, o: OperationOutcomeIssue[], companion?: unknown): boolean {
  if (x === null) {
    if (companion === undefined || companion === null) o.push(S(p, 'Invalid null value'));
    return true;
  }
  if (typeof x === 'object' && !Array.isArray(x)) {
    for (const _ in x) return false;
    o.push(S(p, 'Invalid empty non-primitive value'));
    return true;
  }
  return false;
}

/** A complex value must be an object. */
export function obj(x: unknown, p: string, o: OperationOutcomeIssue[]): boolean {
  if (typeof x === 'object' && x !== null && !Array.isArray(x)) return true;
  o.push(S(p, `Invalid JSON type: expected object, but got ${typeof x}`));
  return false;
}

const JS: Record<string, string> = {
  boolean: 'boolean', decimal: 'number', integer: 'number', positiveInt: 'number', unsignedInt: 'number',
};
const INT_MAX = 2147483647;

export function prim(x: unknown, type: string, p: string, o: OperationOutcomeIssue[]): void {
  if (x === undefined) return;
  const expected = JS[type] ?? 'string';
  if (typeof x !== expected) {
    if (x !== null) o.push(S(p, `Invalid JSON type: expected ${expected}, but got ${typeof x}`));
    return;
  }
  if (expected === 'number') {
    const n = x as number;
    if (!Number.isFinite(n)) o.push(S(p, 'Invalid numeric value'));
    else if (type !== 'decimal' && !Number.isInteger(n)) o.push(S(p, 'Expected number to be an integer'));
    else if (type === 'integer' && (n < -INT_MAX - 1 || n > INT_MAX)) o.push(S(p, `Expected number to be in the range ${-INT_MAX - 1}..${INT_MAX}`));
    else if (type === 'positiveInt' && (n < 1 || n > INT_MAX)) o.push(S(p, `Expected number to be in the range 1..${INT_MAX}`));
    else if (type === 'unsignedInt' && (n < 0 || n > INT_MAX)) o.push(S(p, `Expected number to be in the range 0..${INT_MAX}`));
    return;
  }
  if (expected !== 'string') return;
  const s = x as string;
  if (type === 'base64Binary') {
    if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(s)) o.push(S(p, 'Invalid base64Binary format'));
    return;
  }
  if (!s.trim()) {
    o.push(S(p, 'String must contain non-whitespace content'));
    return;
  }
  if (s.length > 1024 * 1024) {
    o.push(S(p, 'String cannot be larger than 1 MB'));
    return;
  }
  const regex = validationRegexes[type];
  if (regex && !regex.test(s)) o.push(S(p, `Invalid ${type} format`));
  else if ((type === 'date' || type === 'dateTime' || type === 'instant') && !validDay(s)) o.push(S(p, `Invalid ${type} value`));
}

function validDay(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(s);
  if (!m) return true;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return d.getUTCDate() === Number(m[3]);
}

const HL7 = 'http://hl7.org/fhir/StructureDefinition/';
/** Medplum's reference-type warning, with its text (validator.ts settles it into an error or nothing). */
export function refType(x: any, targets: readonly string[], elementPath: string, p: string, o: OperationOutcomeIssue[]): void {
  const reference = x?.reference;
  if (typeof reference !== 'string' || reference.startsWith('#')) return;
  const type = reference.includes('?') ? reference.split('?')[0] : reference.split('/')[0];
  if (!type || (reference === 'system' && elementPath === 'AuditEvent.agent.who')) return;
  for (const t of targets) {
    if (t === HL7 + 'Resource' || t === HL7 + type || t === 'https://medplum.com/fhir/StructureDefinition/' + type) return;
    if (!t.startsWith(HL7) && !t.startsWith('https://medplum.com/fhir/StructureDefinition/')) return;
  }
  o.push({
    severity: 'warning',
    code: 'structure',
    details: { text: `Invalid reference: got "${type}", expected "${targets.join('", "')}"` },
    expression: [p],
  });
}

/** The properties of Extension.value[x] in R4 (an unknown one is left to FHIRPath). */
const EXTENSION_VALUE = new RegExp(
  '^value(' +
    'Base64Binary|Boolean|Canonical|Code|Date|DateTime|Decimal|Id|Instant|Integer|Markdown|Oid|PositiveInt|String|Time|' +
    'UnsignedInt|Uri|Url|Uuid|Address|Age|Annotation|Attachment|CodeableConcept|Coding|ContactPoint|Count|Distance|' +
    'Duration|HumanName|Identifier|Money|Period|Quantity|Range|Ratio|Reference|SampledData|Signature|Timing|' +
    'ContactDetail|Contributor|DataRequirement|Expression|ParameterDefinition|RelatedArtifact|TriggerDefinition|' +
    'UsageContext|Dosage|Meta)$',
);
const present = (v: unknown): boolean =>
  typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v !== '') || (typeof v === 'object' && v !== null && Object.keys(v).length > 0);
const absent = (o: any, ...keys: string[]): boolean => keys.every((k) => o[k] === undefined && o['_' + k] === undefined);

/**
 * Invariants evaluated often (every extension, every resource, every Bundle entry), with a JS
 * test that says when one is certainly met on the JSON as it is. Anything else (not met, or an
 * unusual shape) goes to FHIRPath, so a refusal always comes from the FHIRPath expression.
 * Keyed by key and expression: a profile reusing a key with another expression is not matched.
 */
const CERTAINLY_MET: Record<string, (x: any) => boolean> = {
  'ext-1|extension.exists() != value.exists()': (x) => {
    const keys = Object.keys(x);
    if (keys.some((k) => k.startsWith('_value'))) return false;
    const values = keys.filter((k) => k.startsWith('value'));
    if (x.extension === undefined) return values.length === 1 && EXTENSION_VALUE.test(values[0]!) && present(x[values[0]!]);
    return values.length === 0 && Array.isArray(x.extension) && x.extension.length > 0;
  },
  'dom-2|contained.contained.empty()': (x) => x.contained === undefined,
  'dom-4|contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()': (x) => x.contained === undefined,
  'dom-5|contained.meta.security.empty()': (x) => x.contained === undefined,
  'prr-1|orderDetail.empty() or code.exists()': (x) => absent(x, 'orderDetail'),
  'inv-1|lastModified.exists().not() or authoredOn.exists().not() or lastModified >= authoredOn': (x) => absent(x, 'lastModified'),
  "bdl-8|fullUrl.exists() implies fullUrl.contains('/_history/').not()": (x) =>
    x._fullUrl === undefined && (x.fullUrl === undefined || (typeof x.fullUrl === 'string' && x.fullUrl !== '' && !x.fullUrl.includes('/_history/'))),
  'bdl-5|resource.exists() or request.exists() or response.exists()': (x) => typeof x.resource === 'object' && x.resource !== null && Object.keys(x.resource).length > 0,
  "so-task-1|status in ('rejected' | 'cancelled' | 'failed') implies statusReason.exists()": (x) =>
    typeof x.status === 'string' && x.status !== '' && !['rejected', 'cancelled', 'failed'].includes(x.status) && x._status === undefined,
  "so-task-2|status = 'completed' implies output.exists()": (x) => typeof x.status === 'string' && x.status !== '' && x.status !== 'completed' && x._status === undefined,
  'so-recordset-1|resource is DocumentReference or resource is DiagnosticReport or resource is ImagingStudy': (x) =>
    ['DocumentReference', 'DiagnosticReport', 'ImagingStudy'].includes(x.resource?.resourceType),
};
const certainlyMet: ((x: any) => boolean)[] = [];

/** An invariant, FHIRPath parsed once per process, evaluated in the element's context. */
export function inv(index: number, type: string, x: unknown, p: string, o: OperationOutcomeIssue[], r: any): void {
  const c = linked.constraints[index]!;
  const met = (certainlyMet[index] ??= CERTAINLY_MET[`${c.key}|${c.expression}`] ?? (() => false));
  if (typeof x === 'object' && x !== null && !Array.isArray(x) && met(x)) return;
  const atom = (linked.parsed[index] ??= parseFhirPath(c.expression));
  try {
    const result = atom.eval(
      { variables: { '%context': { type, value: x }, '%resource': { type: r.resourceType, value: r }, '%rootResource': { type: r.resourceType, value: r } } },
      [{ type, value: x }],
    );
    if (result.length === 1 && result[0]!.value === true) return;
  } catch {
    // falls through: Medplum reports a processing issue, which is an error too
  }
  o.push({ severity: 'error', code: 'invariant', details: { text: `Constraint ${c.key} not met: ${c.description}` }, expression: [p] });
}

/** A resource in a Resource-typed element (Bundle.entry.resource, contained): generated or Medplum. */
export function anyResource(x: any, p: string, o: OperationOutcomeIssue[]): void {
  if (typeof x !== 'object' || x === null || typeof x.resourceType !== 'string') {
    o.push(S(p, 'Missing resource type'));
    return;
  }
  const fn = validatorOf(x.resourceType);
  if (fn) {
    fn(x, p, o, x);
    return;
  }
  try {
    const found = validateResource(x as Resource);
    o.push(...found.map((i) => rebase(i, x.resourceType, p)));
  } catch (err) {
    if (!(err instanceof OperationOutcomeError)) throw err;
    o.push(...(err.outcome.issue ?? []).map((i) => rebase(i, x.resourceType, p)));
  }
}

function rebase(i: OperationOutcomeIssue, type: string, p: string): OperationOutcomeIssue {
  return { ...i, expression: i.expression?.map((e) => (e.startsWith(type) ? p + e.slice(type.length) : e)) };
}


/**
 * A FHIR pattern match: every property of the pattern is in the value with a matching value;
 * each item of an array in the pattern matches some item of the value's array.
 */
export function pat(x: unknown, pattern: unknown): boolean {
  if (Array.isArray(pattern)) return Array.isArray(x) && pattern.every((p) => x.some((item) => pat(item, p)));
  if (typeof pattern === 'object' && pattern !== null) {
    if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
    for (const k in pattern) if (!pat((x as Record<string, unknown>)[k], (pattern as Record<string, unknown>)[k])) return false;
    return true;
  }
  return x === pattern;
}

/** A fixed value: exactly equal (deep). */
export function same(x: unknown, fixed: unknown): boolean {
  if (Array.isArray(fixed)) return Array.isArray(x) && x.length === fixed.length && fixed.every((f, i) => same(x[i], f));
  if (typeof fixed === 'object' && fixed !== null) {
    if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
    const keys = Object.keys(fixed);
    return keys.length === Object.keys(x).length && keys.every((k) => same((x as Record<string, unknown>)[k], (fixed as Record<string, unknown>)[k]));
  }
  return x === fixed;
}

/**
 * A required binding to one of our value sets (`allowed`: system -> codes): a code must be one
 * of them, a Coding or CodeableConcept must carry one (system and code). Medplum does not
 * check these; the texts are those of validator.ts's check for Medplum.
 */
export function bound(x: any, type: string, allowed: Readonly<Record<string, readonly string[]>>, valueSet: string, p: string, o: OperationOutcomeIssue[]): void {
  let ok: boolean;
  let shown: string;
  if (type === 'code') {
    ok = Object.values(allowed).some((codes) => codes.includes(String(x)));
    shown = String(x);
  } else {
    const codings: any[] = type === 'Coding' ? [x] : type === 'CodeableConcept' && Array.isArray(x?.coding) ? x.coding : [];
    ok = codings.some((c) => typeof c?.code === 'string' && typeof c.system === 'string' && Object.hasOwn(allowed, c.system) && allowed[c.system]!.includes(c.code));
    shown = codings.map((c) => `${c?.system ?? ''}#${c?.code ?? ''}`).join(', ');
  }
  if (!ok) o.push({ severity: 'error', code: 'code-invalid', details: { text: `Code ${shown || '(none)'} is not in the required value set ${valueSet}` }, expression: [p] });
}
