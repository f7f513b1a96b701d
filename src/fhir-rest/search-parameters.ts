import type { ResourceType } from '@medplum/fhirtypes';
import { decodeCursor, type DateFilter, isStoreTime } from '../store/resource-store.ts';
import { invalid, issue } from '../fhir/outcomes.ts';

/**
 * The search parameters this service supports, per resource type, and how each becomes a
 * jsonb containment document. The CapabilityStatement is generated from the same table,
 * so it always lists exactly what works.
 */
export type SearchParamKind = 'reference' | 'token' | 'identifier' | 'id' | 'coding' | 'last-updated';

interface SearchParamDef {
  name: string;
  /**
   * `coding`: a token on a Coding (`system|code` or `code`); `last-updated`: a date parameter
   * answered from the row's last-updated time (as `_lastUpdated`), for resources that never change.
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

export const SEARCH_PARAMETERS: Partial<Record<ResourceType, SearchParamDef[]>> = {
  Task: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'owner', kind: 'reference', path: ['owner'], target: 'Organization', documentation: 'The consultant organization (Organization/{id} or bare id)', definition: base('Task-owner') },
    { name: 'status', kind: 'token', path: ['status'], documentation: 'Task status (comma-separated for OR)', definition: base('Task-status') },
    { name: 'focus', kind: 'reference', path: ['focus'], target: 'ServiceRequest', documentation: 'The referral (ServiceRequest/{id} or bare id)', definition: base('Task-focus') },
    { name: 'patient', kind: 'reference', path: ['for'], target: 'Patient', documentation: "The patient, as the absolute reference on the referrer's EHR", definition: base('Task-patient') },
  ],
  ServiceRequest: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'identifier', kind: 'identifier', path: ['identifier'], documentation: "The referrer's request id: system|value or value", definition: base('clinical-identifier') },
    { name: 'patient', kind: 'reference', path: ['subject'], target: 'Patient', documentation: "The patient, as the absolute reference on the referrer's EHR", definition: base('clinical-patient') },
    { name: 'status', kind: 'token', path: ['status'], documentation: 'ServiceRequest status', definition: base('ServiceRequest-status') },
  ],
  // AuditEvents are read by auditors only (issue 3 §5), through the 'system' reader.
  AuditEvent: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'entity', kind: 'reference', path: ['entity[]', 'what'], documentation: 'A resource the event is about (Task/{id}, ServiceRequest/{id}, Bundle/{id}, DocumentReference/{id}, Binary/{id})', definition: base('AuditEvent-entity') },
    { name: 'agent', kind: 'reference', path: ['agent[]', 'who'], target: 'Organization', documentation: "The participant's Organization (Organization/{id} or bare id)", definition: base('AuditEvent-agent') },
    { name: 'patient', kind: 'reference', path: ['entity[]', 'what'], target: 'Patient', documentation: "The patient, as the absolute reference on the referrer's EHR", definition: base('AuditEvent-patient') },
    { name: 'action', kind: 'token', path: ['action'], documentation: 'C R U D E', definition: base('AuditEvent-action') },
    { name: 'outcome', kind: 'token', path: ['outcome'], documentation: '0 success, 4 refused, 8 failure', definition: base('AuditEvent-outcome') },
    { name: 'subtype', kind: 'coding', path: ['subtype[]'], documentation: 'read, vread, history-instance, search-type (restful-interaction), disclose (iso-21089-lifecycle); system|code or code', definition: base('AuditEvent-subtype') },
    { name: 'date', kind: 'last-updated', path: ['recorded'], documentation: 'When the event was recorded (the time it was stored); eq, ne, gt, lt, ge, le prefixes', definition: base('AuditEvent-date') },
  ],
  Bundle: [{ name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id of a record-set Bundle', definition: base('Resource-id') }],
  DocumentReference: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'patient', kind: 'reference', path: ['subject'], target: 'Patient', documentation: "The patient, as the absolute reference on the referrer's EHR", definition: base('clinical-patient') },
  ],
  // Where record sets and referrals came from: readable by whoever may read what they target.
  Provenance: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'target', kind: 'reference', path: ['target[]'], documentation: 'What it is the provenance of (Bundle/{id}, ServiceRequest/{id}, DocumentReference/{id})', definition: base('Provenance-target') },
  ],
  // Copies of reports and studies in record sets: read by id like their DocumentReferences.
  DiagnosticReport: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'patient', kind: 'reference', path: ['subject'], target: 'Patient', documentation: "The patient, as the absolute reference on the referrer's EHR", definition: base('clinical-patient') },
  ],
  ImagingStudy: [
    { name: '_id', kind: 'id', path: ['id'], documentation: 'Logical id', definition: base('Resource-id') },
    { name: 'patient', kind: 'reference', path: ['subject'], target: 'Patient', documentation: "The patient, as the absolute reference on the referrer's EHR", definition: base('clinical-patient') },
  ],
};

/** Parameters every search understands besides the table above. */
export const COMMON_PARAMETERS = ['_lastUpdated', '_count', '_cursor', '_format'] as const;

/** A cursor is opaque: only one taken from a `next` link is accepted, never a page one in disguise. */
export const CURSOR_REFUSED = '_cursor is not a cursor this service made: take it from the next link as it is';

export const DEFAULT_COUNT = 20;
export const MAX_COUNT = 100;

export interface ParsedSearch {
  contains: object[][];
  lastUpdated: DateFilter[];
  count: number;
  cursor?: string;
  /** Parameters that were not understood (ignored unless the client asked for strict handling). */
  unknown: string[];
}

/** `a.b` + value -> `{a: {b: value}}`; `a[].b` + value -> `{a: [{b: value}]}` */
function nest(path: string[], value: unknown): object {
  return path.reduceRight<unknown>((acc, key) => (key.endsWith('[]') ? { [key.slice(0, -2)]: [acc] } : { [key]: acc }), value) as object;
}

function referenceValue(raw: string, target: string | undefined): string {
  if (/^https?:\/\//.test(raw) || raw.includes('/') || !target) return raw;
  return `${target}/${raw}`;
}

const DATE_PREFIX = /^(eq|ne|gt|lt|ge|le)?(\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?)$/;

/**
 * Turns query parameters (each name with all its values) into a store query.
 * Repeated parameters AND together; comma-separated values OR together (FHIR search rules).
 */
export function parseSearch(resourceType: ResourceType, params: Record<string, string[]>, strict: boolean): ParsedSearch {
  const defs = SEARCH_PARAMETERS[resourceType] ?? [];
  const result: ParsedSearch = { contains: [], lastUpdated: [], count: DEFAULT_COUNT, unknown: [] };
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
    if (!def || modifier) {
      result.unknown.push(name);
      continue;
    }
    for (const v of values) {
      const alternatives = v.split(',').filter((x) => x.length > 0);
      if (alternatives.length === 0) {
        problems.push(issue('value', `${name} needs a value`, name));
        continue;
      }
      result.contains.push(alternatives.map((alt) => containmentFor(def, alt)));
    }
  }
  if (strict && result.unknown.length) {
    for (const u of result.unknown) problems.push(issue('not-supported', `Search parameter '${u}' is not supported on ${resourceType}`, u));
  }
  if (problems.length) throw invalid(problems);
  return result;
}

function containmentFor(def: SearchParamDef, value: string): object {
  switch (def.kind) {
    case 'id':
      return { id: value };
    case 'token':
      return nest(def.path, value.includes('|') ? value.split('|')[1] : value);
    case 'reference':
      return nest(def.path, { reference: referenceValue(value, def.target) });
    case 'coding': {
      const bar = value.indexOf('|');
      if (bar < 0) return nest(def.path, { code: value });
      const system = value.slice(0, bar);
      const code = value.slice(bar + 1);
      return nest(def.path, { ...(system ? { system } : {}), ...(code ? { code } : {}) });
    }
    case 'last-updated':
      throw new Error(`${def.name} is a date parameter`);
    case 'identifier': {
      const bar = value.indexOf('|');
      if (bar < 0) return nest(def.path, [{ value }]);
      const system = value.slice(0, bar);
      const v = value.slice(bar + 1);
      return nest(def.path, [{ ...(system ? { system } : {}), ...(v ? { value: v } : {}) }]);
    }
  }
}
