import type { Resource, ResourceType, Task } from '@medplum/fhirtypes';
import { decodeCursor, type DateFilter, isStoreTime } from '../store/resource-store.ts';
import { invalid, issue } from '../fhir/outcomes.ts';
import { SYSTEM } from '../fhir/constants.ts';

/**
 * The search parameters this service supports, per resource type, and how each becomes a
 * jsonb containment document. The CapabilityStatement is generated from the same table,
 * so it always lists exactly what works.
 */
export type SearchParamKind = 'reference' | 'token' | 'identifier' | 'id' | 'coding' | 'last-updated' | 'string';

export interface SearchParamDef {
  name: string;
  /**
   * `coding`: a token on a Coding (`system|code` or `code`); `last-updated`: a date parameter
   * answered from the row's last-updated time (as `_lastUpdated`), for resources that never change;
   * `string`: FHIR string matching (case-insensitive prefix; `:exact`, `:contains`), answered
   * only for the network directory, which is searched in memory (fhir-rest/directory-search.ts).
   */
  kind: SearchParamKind;
  /**
   * The element path the value sits at, e.g. ['owner'] or ['for']. A segment ending in `[]`
   * is an array (`['entity[]', 'what']` matches `{entity: [{what: ...}]}` in jsonb `@>`).
   */
  path: string[];
  /** Resource type assumed for a bare id in a reference parameter. */
  target?: string;
  documentation: string;
  /** Canonical of the base SearchParameter (for the CapabilityStatement). */
  definition: string;
}

const base = (name: string) => `http://hl7.org/fhir/SearchParameter/${name}`;

const PATIENT_DOC = "The patient: the absolute reference on the referrer's EHR, or Patient/{id} (or a bare id) on the caller's own EHR";

export const SEARCH_PARAMETERS: Partial<Record<ResourceType, SearchParamDef[]>> = {
  Task: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'owner', kind: 'reference', path: ['owner'], target: 'Organization', documentation: 'The consultant organization (Organization/{id} or bare id)', definition: base('Task-owner') },
    { name: 'status', kind: 'token', path: ['status'], documentation: 'Task status (comma-separated for OR)', definition: base('Task-status') },
    { name: 'focus', kind: 'reference', path: ['focus'], target: 'ServiceRequest', documentation: 'The referral (ServiceRequest/{id} or bare id)', definition: base('Task-focus') },
    { name: 'patient', kind: 'reference', path: ['for'], target: 'Patient', documentation: PATIENT_DOC, definition: base('Task-patient') },
    { name: 'subject', kind: 'reference', path: ['for'], target: 'Patient', documentation: PATIENT_DOC, definition: base('Task-subject') },
  ],
  ServiceRequest: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'identifier', kind: 'identifier', path: ['identifier'], documentation: "The referrer's request id: system|value or value", definition: base('clinical-identifier') },
    { name: 'patient', kind: 'reference', path: ['subject'], target: 'Patient', documentation: PATIENT_DOC, definition: base('clinical-patient') },
    { name: 'subject', kind: 'reference', path: ['subject'], target: 'Patient', documentation: PATIENT_DOC, definition: base('ServiceRequest-subject') },
    { name: 'status', kind: 'token', path: ['status'], documentation: 'ServiceRequest status', definition: base('ServiceRequest-status') },
  ],
  // AuditEvents are read by auditors only, through the 'system' reader.
  AuditEvent: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'entity', kind: 'reference', path: ['entity[]', 'what'], documentation: 'A resource the event is about (Task/{id}, ServiceRequest/{id}, Bundle/{id}, DocumentReference/{id}, Binary/{id}, Subscription/{id})', definition: base('AuditEvent-entity') },
    { name: 'agent', kind: 'reference', path: ['agent[]', 'who'], target: 'Organization', documentation: "The participant's Organization (Organization/{id} or bare id)", definition: base('AuditEvent-agent') },
    { name: 'patient', kind: 'reference', path: ['entity[]', 'what'], target: 'Patient', documentation: PATIENT_DOC, definition: base('AuditEvent-patient') },
    { name: 'action', kind: 'token', path: ['action'], documentation: 'C R U D E', definition: base('AuditEvent-action') },
    { name: 'outcome', kind: 'token', path: ['outcome'], documentation: '0 success, 4 refused, 8 failure', definition: base('AuditEvent-outcome') },
    { name: 'subtype', kind: 'coding', path: ['subtype[]'], documentation: 'read, vread, history-instance, search-type, operation (restful-interaction), disclose (iso-21089-lifecycle); system|code or code', definition: base('AuditEvent-subtype') },
    { name: 'date', kind: 'last-updated', path: ['recorded'], documentation: 'When the event was recorded (the time it was stored); eq, ne, gt, lt, ge, le prefixes', definition: base('AuditEvent-date') },
  ],
  Bundle: [{ name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id of a record-set Bundle', definition: base('Resource-id') }],
  DocumentReference: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'patient', kind: 'reference', path: ['subject'], target: 'Patient', documentation: PATIENT_DOC, definition: base('clinical-patient') },
    { name: 'subject', kind: 'reference', path: ['subject'], target: 'Patient', documentation: PATIENT_DOC, definition: base('DocumentReference-subject') },
  ],
  // Follow-up questions and answers after an opinion: the referrer and that consultant read them.
  Communication: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'based-on', kind: 'reference', path: ['basedOn[]'], target: 'Task', documentation: "The consultant's Task the question or answer belongs to (Task/{id} or bare id)", definition: base('Communication-based-on') },
    { name: 'patient', kind: 'reference', path: ['subject'], target: 'Patient', documentation: PATIENT_DOC, definition: base('clinical-patient') },
    { name: 'subject', kind: 'reference', path: ['subject'], target: 'Patient', documentation: PATIENT_DOC, definition: base('Communication-subject') },
  ],
  // Where record sets and referrals came from: readable by whoever may read what they target.
  Provenance: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'target', kind: 'reference', path: ['target[]'], documentation: 'What it is the provenance of (Bundle/{id}, ServiceRequest/{id}, DocumentReference/{id})', definition: base('Provenance-target') },
  ],
  // Copies of reports and studies in record sets: read by id like their DocumentReferences.
  DiagnosticReport: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'patient', kind: 'reference', path: ['subject'], target: 'Patient', documentation: PATIENT_DOC, definition: base('clinical-patient') },
    { name: 'subject', kind: 'reference', path: ['subject'], target: 'Patient', documentation: PATIENT_DOC, definition: base('DiagnosticReport-subject') },
  ],
  ImagingStudy: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'patient', kind: 'reference', path: ['subject'], target: 'Patient', documentation: PATIENT_DOC, definition: base('clinical-patient') },
    { name: 'subject', kind: 'reference', path: ['subject'], target: 'Patient', documentation: PATIENT_DOC, definition: base('ImagingStudy-subject') },
  ],
  // The network directory (network/fhir-directory.ts): built from the network file, searched in memory.
  Organization: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id (the Organization/{id} of the network file)', definition: base('Resource-id') },
    { name: 'name', kind: 'string', path: ['name'], documentation: 'Name: case-insensitive prefix; :exact, :contains', definition: base('Organization-name') },
    { name: 'identifier', kind: 'identifier', path: ['identifier'], documentation: 'An identifier other systems know it by: system|value or value', definition: base('Organization-identifier') },
    { name: 'type', kind: 'coding', path: ['type[]', 'coding[]'], documentation: `Its roles in the network (${SYSTEM.participantRole}|referrer, consultant, physician, auditor, admin): system|code or code`, definition: base('Organization-type') },
  ],
  Endpoint: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'organization', kind: 'reference', path: ['managingOrganization'], target: 'Organization', documentation: 'The participant\'s Organization (Organization/{id} or bare id)', definition: base('Endpoint-organization') },
    { name: 'connection-type', kind: 'coding', path: ['connectionType'], documentation: 'endpoint-connection-type: hl7-fhir-rest', definition: base('Endpoint-connection-type') },
    { name: 'status', kind: 'token', path: ['status'], documentation: 'Endpoint status (active)', definition: base('Endpoint-status') },
  ],
};

/**
 * `_include` (and, read backwards, `_revinclude`) per type: the reference elements a search may
 * follow, and the types each may bring in. `Task:input` and `Task:output` are not R4 search
 * parameters (R4 defines none on Task.input/output): they follow the record set the Task carries
 * and the opinion it returned, as the CapabilityStatement says.
 */
export interface IncludeDef {
  name: string;
  targets: readonly ResourceType[];
  /** The references the element holds in `resource` (relative ones are followed; others are not ours). */
  references(resource: Resource): (string | undefined)[];
  /** Whether `_revinclude=Source:name` is answered (needs a reference search parameter of the same name). */
  revinclude: boolean;
  documentation: string;
}

export const INCLUDES: Partial<Record<ResourceType, IncludeDef[]>> = {
  Task: [
    { name: 'focus', targets: ['ServiceRequest'], references: (r) => [(r as Task).focus?.reference], revinclude: true, documentation: 'The referral' },
    {
      name: 'input',
      targets: ['Bundle', 'DocumentReference'],
      references: (r) => ((r as Task).input ?? []).map((i) => i.valueReference?.reference),
      revinclude: false,
      documentation: 'The record set (Bundle) and documents the Task carries',
    },
    { name: 'output', targets: ['DocumentReference'], references: (r) => ((r as Task).output ?? []).map((o) => o.valueReference?.reference), revinclude: false, documentation: 'The opinion (consult note)' },
    { name: 'owner', targets: ['Organization'], references: (r) => [(r as Task).owner?.reference], revinclude: false, documentation: 'The consultant Organization (directory)' },
  ],
};

/** An `_include` or `_revinclude` of a search: `source:param`, optionally narrowed to one target type. */
export interface IncludeRequest {
  source: ResourceType;
  def: IncludeDef;
  /** `Task:input:Bundle`: only this type. */
  target?: ResourceType;
}

/** `_revinclude` answered on `type`: the includes of other types that point at it and may be read backwards. */
export function revincludesOf(type: ResourceType): { source: ResourceType; def: IncludeDef }[] {
  return Object.entries(INCLUDES).flatMap(([source, defs]) =>
    (defs ?? []).filter((d) => d.revinclude && d.targets.includes(type)).map((def) => ({ source: source as ResourceType, def })),
  );
}

/** Parameters every search understands besides the table above. */
export const COMMON_PARAMETERS = ['_lastUpdated', '_count', '_cursor', '_format', '_include', '_revinclude', '_summary', '_elements'] as const;

/** A cursor is opaque: only one taken from a `next` link is accepted, never a page one in disguise. */
export const CURSOR_REFUSED = '_cursor is not a cursor this service made: take it from the next link as it is';

export const DEFAULT_COUNT = 20;
export const MAX_COUNT = 100;

/** A string parameter's test (directory only): `value` against the element at `path`. */
export interface StringMatch {
  path: string[];
  value: string;
  match: 'prefix' | 'exact' | 'contains';
}

export interface ParsedSearch {
  contains: object[][];
  /** AND of ORs of string matches (`name=`): only the in-memory directory answers them. */
  strings: StringMatch[][];
  lastUpdated: DateFilter[];
  count: number;
  cursor?: string;
  include: IncludeRequest[];
  revinclude: IncludeRequest[];
  /** `_summary=count`: the total only, no entries. */
  summaryCount: boolean;
  /** `_elements`: the top-level elements to return of each match. */
  elements?: string[];
  /** Parameters that were not understood (ignored unless the client asked for strict handling). */
  unknown: string[];
  /** Values of understood parameters that are not supported (`_include=Task:requester`, `_summary=text`): ignored likewise. */
  unsupported: { name: string; value: string; text: string }[];
}

/** How references in a search are read (relative or absolute, bare ids). */
export interface ReferenceContext {
  /** This FHIR endpoint's base (`https://host/fhir`): an absolute reference to it is a local one. */
  ownBase?: string;
  /**
   * Where patients and practitioners live (stored references to them are absolute, on the
   * referrer's EHR): a relative `Patient/123` is that id on each of these bases.
   */
  externalBases?: readonly string[];
}

/** Types this service stores only as absolute references to an EHR. */
const EXTERNAL_TYPES = ['Patient', 'Practitioner', 'PractitionerRole', 'RelatedPerson'];

/** `a.b` + value -> `{a: {b: value}}`; `a[].b` + value -> `{a: [{b: value}]}` */
function nest(path: string[], value: unknown): object {
  return path.reduceRight<unknown>((acc, key) => (key.endsWith('[]') ? { [key.slice(0, -2)]: [acc] } : { [key]: acc }), value) as object;
}

/**
 * The stored forms a reference parameter's value may take: an absolute reference to this endpoint
 * becomes relative (`https://host/fhir/ServiceRequest/1` -> `ServiceRequest/1`); a bare id gets the
 * parameter's target type; a relative reference to a patient or practitioner, which live on EHRs,
 * is that id on each of `externalBases`.
 */
export function referenceAlternatives(raw: string, target: string | undefined, context: ReferenceContext = {}): string[] {
  let ref = raw;
  if (context.ownBase && ref.startsWith(`${context.ownBase}/`)) ref = ref.slice(context.ownBase.length + 1);
  if (/^(https?|urn):/.test(ref)) return [ref];
  if (!ref.includes('/') && target) ref = `${target}/${ref}`;
  const type = ref.split('/')[0] ?? '';
  if (!EXTERNAL_TYPES.includes(type) || !context.externalBases?.length) return [ref];
  return [ref, ...context.externalBases.map((b) => `${b.replace(/\/+$/, '')}/${ref}`)];
}

const DATE_PREFIX = /^(eq|ne|gt|lt|ge|le)?(\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?)$/;
const ELEMENT = /^[A-Za-z][A-Za-z0-9]{0,63}$/;

/** `Task:focus` or `Task:focus:ServiceRequest`: the include it names, if this service answers it. */
function resolveInclude(value: string, resourceType: ResourceType, reverse: boolean): IncludeRequest | string {
  const [source, param, target, ...rest] = value.split(':');
  if (!source || !param || rest.length > 0) return `${reverse ? '_revinclude' : '_include'} must be Type:parameter or Type:parameter:TargetType`;
  if (!reverse && source !== resourceType) return `_include on ${resourceType} must start ${resourceType}:`;
  const def = INCLUDES[source as ResourceType]?.find((d) => d.name === param && (!reverse || d.revinclude));
  const supported = reverse ? revincludesOf(resourceType).map((r) => `${r.source}:${r.def.name}`) : (INCLUDES[resourceType] ?? []).map((d) => `${resourceType}:${d.name}`);
  const list = supported.length ? `supported: ${supported.join(', ')}` : `none is supported on ${resourceType}`;
  if (!def) return `${value} is not supported (${list})`;
  if (reverse && !def.targets.includes(resourceType)) return `${value} does not point at ${resourceType} (${list})`;
  if (target && !def.targets.includes(target as ResourceType)) return `${value}: ${source}:${param} does not point at ${target}`;
  if (reverse && target && target !== resourceType) return `${value}: a _revinclude on ${resourceType} targets ${resourceType}`;
  return { source: source as ResourceType, def, ...(target ? { target: target as ResourceType } : {}) };
}

/**
 * Turns query parameters (each name with all its values) into a store query.
 * Repeated parameters AND together; comma-separated values OR together (FHIR search rules).
 */
export function parseSearch(resourceType: ResourceType, params: Record<string, string[]>, strict: boolean, references: ReferenceContext = {}): ParsedSearch {
  const defs = SEARCH_PARAMETERS[resourceType] ?? [];
  const result: ParsedSearch = { contains: [], strings: [], lastUpdated: [], count: DEFAULT_COUNT, include: [], revinclude: [], summaryCount: false, unknown: [], unsupported: [] };
  const problems = [];
  for (const [name, values] of Object.entries(params)) {
    if (name === '_count') {
      const n = Number(values[values.length - 1]);
      if (!Number.isInteger(n) || n < 1) problems.push(issue('value', `_count must be a positive integer`, '_count'));
      else result.count = Math.min(n, MAX_COUNT);
      continue;
    }
    if (name === '_cursor') {
      const cursor = values[values.length - 1] ?? '';
      if (decodeCursor(cursor)) result.cursor = cursor;
      else problems.push(issue('value', CURSOR_REFUSED, '_cursor'));
      continue;
    }
    if (name === '_format') continue;
    if (name === '_include' || name === '_revinclude') {
      for (const v of values) {
        const resolved = resolveInclude(v, resourceType, name === '_revinclude');
        if (typeof resolved === 'string') result.unsupported.push({ name, value: v, text: resolved });
        else (name === '_include' ? result.include : result.revinclude).push(resolved);
      }
      continue;
    }
    if (name === '_summary') {
      for (const v of values) {
        if (v === 'count') result.summaryCount = true;
        else if (v !== 'false') result.unsupported.push({ name, value: v, text: `_summary=${v} is not supported (supported: count, false)` });
      }
      continue;
    }
    if (name === '_elements') {
      const elements = values.flatMap((v) => v.split(',')).filter((e) => e.length > 0);
      const bad = elements.filter((e) => !ELEMENT.test(e));
      if (bad.length > 0 || elements.length === 0) problems.push(issue('value', '_elements must list element names (comma-separated), e.g. status,owner', '_elements'));
      else result.elements = [...new Set([...(result.elements ?? []), ...elements])];
      continue;
    }
    const [bare, modifier] = name.split(':');
    const def = defs.find((d) => d.name === bare);
    if (name === '_lastUpdated' || (def?.kind === 'last-updated' && !modifier)) {
      for (const v of values) {
        const m = DATE_PREFIX.exec(v);
        const date = m?.[2] ? new Date(m[2].length === 4 ? `${m[2]}-01-01` : m[2].length === 7 ? `${m[2]}-01` : m[2]) : undefined;
        if (!m || !date || Number.isNaN(date.getTime())) problems.push(issue('value', `${name} '${v}' is not [prefix]date`, name));
        else if (!isStoreTime(date)) problems.push(issue('value', `${name} '${v}' is outside the years 0001 to 9999`, name));
        else result.lastUpdated.push({ op: (m[1] ?? 'eq') as DateFilter['op'], value: date });
      }
      continue;
    }
    const stringMatch = def?.kind === 'string' && (modifier === undefined || modifier === 'exact' || modifier === 'contains');
    if (!def || (modifier && !stringMatch)) {
      result.unknown.push(name);
      continue;
    }
    for (const v of values) {
      const alternatives = v.split(',').filter((x) => x.length > 0);
      if (alternatives.length === 0) {
        problems.push(issue('value', `${name} needs a value`, name));
        continue;
      }
      if (def.kind === 'string') {
        const match = modifier === 'exact' ? 'exact' : modifier === 'contains' ? 'contains' : 'prefix';
        result.strings.push(alternatives.map((value) => ({ path: def.path, value, match })));
        continue;
      }
      result.contains.push(alternatives.flatMap((alt) => containmentFor(def, alt, references)));
    }
  }
  if (strict) {
    for (const u of result.unknown) problems.push(issue('not-supported', `Search parameter '${u}' is not supported on ${resourceType}`, u));
    for (const u of result.unsupported) problems.push(issue('not-supported', u.text, u.name));
  }
  if (problems.length) throw invalid(problems);
  return result;
}

/** The containment documents (OR) a value of `def` matches. */
export function containmentFor(def: SearchParamDef, value: string, references: ReferenceContext = {}): object[] {
  switch (def.kind) {
    case 'id':
      return [{ id: value }];
    case 'token':
      return [nest(def.path, value.includes('|') ? value.split('|')[1] : value)];
    case 'reference':
      return referenceAlternatives(value, def.target, references).map((reference) => nest(def.path, { reference }));
    case 'coding': {
      const bar = value.indexOf('|');
      if (bar < 0) return [nest(def.path, { code: value })];
      const system = value.slice(0, bar);
      const code = value.slice(bar + 1);
      return [nest(def.path, { ...(system ? { system } : {}), ...(code ? { code } : {}) })];
    }
    case 'last-updated':
    case 'string':
      throw new Error(`${def.name} is not a containment parameter`);
    case 'identifier': {
      const bar = value.indexOf('|');
      if (bar < 0) return [nest(def.path, [{ value }])];
      const system = value.slice(0, bar);
      const v = value.slice(bar + 1);
      return [nest(def.path, [{ ...(system ? { system } : {}), ...(v ? { value: v } : {}) }])];
    }
  }
}
