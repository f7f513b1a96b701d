/**
 * Our conformance resources served read-only: the CodeSystems, ValueSets,
 * StructureDefinitions and the concordance Measure compiled from profiles/ (profiles/generated/profiles.json, `npm run
 * profiles`), so every canonical the service puts in a resource (a code system, a value set, a
 * profile in `meta.profile`, an extension url) resolves with a plain FHIR read or
 * `GET /fhir/{Type}?url=`. An EHR set to `profiles: keep` may look our profiles up this way.
 *
 * Not PHI: served to anyone, with no token (as the CapabilityStatement), never audited. Searched
 * in memory (the whole catalogue is a few dozen resources), so there is no paging: a search
 * returns every match.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Bundle, CodeSystem, Measure, OperationOutcomeIssue, StructureDefinition, ValueSet } from '@medplum/fhirtypes';
import { GENERATED_PROFILES_PATH } from '../fhir/profile-registry.ts';
import { invalid, issue, outcome } from '../fhir/outcomes.ts';

/** The conformance types served. */
export const CONFORMANCE_TYPES = ['CodeSystem', 'ValueSet', 'StructureDefinition', 'Measure'] as const;
export type ConformanceType = (typeof CONFORMANCE_TYPES)[number];
export type ConformanceResource = CodeSystem | ValueSet | StructureDefinition | Measure;

export function isConformanceType(type: string): type is ConformanceType {
  return (CONFORMANCE_TYPES as readonly string[]).includes(type);
}

/** A search parameter of the conformance types (the CapabilityStatement lists these). */
export interface ConformanceSearchParam {
  name: string;
  type: 'token' | 'uri' | 'string';
  definition: string;
  documentation: string;
  /** Whether `resource` matches one value of the parameter. */
  matches(resource: ConformanceResource, value: string): boolean;
}

const base = (name: string) => `http://hl7.org/fhir/SearchParameter/${name}`;

/** FHIR string search: case- and accent-insensitive prefix (R4 §3.1.1.4.7). */
const fold = (text: string) => text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();

export const CONFORMANCE_SEARCH_PARAMETERS: readonly ConformanceSearchParam[] = [
  { name: '_id', type: 'token', definition: base('Resource-id'), documentation: 'Logical id', matches: (r, v) => r.id === v },
  {
    name: 'url',
    type: 'uri',
    definition: base('conformance-url'),
    documentation: 'The canonical URL, exactly; a canonical with |version (as meta.profile may carry it) matches that version only',
    matches: (r, v) => {
      const bar = v.lastIndexOf('|');
      return bar < 0 ? r.url === v : r.url === v.slice(0, bar) && r.version === v.slice(bar + 1);
    },
  },
  { name: 'version', type: 'token', definition: base('conformance-version'), documentation: 'The business version (the package version of profiles/)', matches: (r, v) => r.version === v },
  { name: 'name', type: 'string', definition: base('conformance-name'), documentation: 'Computer-friendly name: case-insensitive prefix', matches: (r, v) => !!r.name && fold(r.name).startsWith(fold(v)) },
  { name: 'status', type: 'token', definition: base('conformance-status'), documentation: 'draft | active | retired', matches: (r, v) => r.status === v },
];

/** `W/"<versionId>"`: a digest of the content, so the ETag changes exactly when the resource does. */
function withMeta<T extends ConformanceResource>(resource: T): T {
  const versionId = createHash('sha256').update(JSON.stringify(resource)).digest('hex').slice(0, 16);
  return { ...resource, meta: { ...resource.meta, versionId } };
}

/** The catalogue: every CodeSystem, ValueSet, StructureDefinition and Measure of the compiled profiles. */
export class ConformanceCatalog {
  readonly #byType: ReadonlyMap<ConformanceType, readonly ConformanceResource[]>;

  constructor(resources: readonly ConformanceResource[]) {
    const byType = new Map<ConformanceType, ConformanceResource[]>(CONFORMANCE_TYPES.map((t) => [t, []]));
    for (const r of resources) byType.get(r.resourceType)?.push(withMeta(r));
    this.#byType = byType;
  }

  /** Loads profiles/generated/profiles.json (or `file`). */
  static load(file: string = GENERATED_PROFILES_PATH): ConformanceCatalog {
    const bundle = JSON.parse(readFileSync(file, 'utf8')) as Bundle;
    const resources = (bundle.entry ?? []).flatMap((e) => (e.resource && isConformanceType(e.resource.resourceType) ? [e.resource as ConformanceResource] : []));
    return new ConformanceCatalog(resources);
  }

  all(type: ConformanceType): readonly ConformanceResource[] {
    return this.#byType.get(type) ?? [];
  }

  /** The resource, or 404. */
  read(type: ConformanceType, id: string): ConformanceResource {
    const found = this.all(type).find((r) => r.id === id);
    if (!found) throw new OperationOutcomeError(notFound);
    return found;
  }

  /**
   * A searchset of every match: repeated parameters AND, comma-separated values OR (FHIR search
   * rules). Unknown parameters are ignored and reported in an OperationOutcome entry, or refused
   * (400) under `Prefer: handling=strict`, as the other searches of /fhir.
   */
  search(type: ConformanceType, params: Record<string, string[]>, strict: boolean, fhirBaseUrl: string): Bundle {
    const problems: OperationOutcomeIssue[] = [];
    const warnings: OperationOutcomeIssue[] = [];
    const groups: ((r: ConformanceResource) => boolean)[] = [];
    let summaryCount = false;
    const self = new URLSearchParams();
    for (const [name, values] of Object.entries(params)) {
      if (name === '_format') continue;
      if (name === '_summary') {
        for (const v of values) {
          if (v === 'count') {
            summaryCount = true;
            self.append(name, v);
          } else if (v !== 'false') {
            (strict ? problems : warnings).push(issue('not-supported', `_summary=${v} is not supported (supported: count, false)${strict ? '' : '; ignored'}`, '_summary', strict ? 'error' : 'warning'));
          }
        }
        continue;
      }
      const def = CONFORMANCE_SEARCH_PARAMETERS.find((d) => d.name === name);
      if (!def) {
        (strict ? problems : warnings).push(issue('not-supported', `Search parameter '${name}' is not supported on ${type}${strict ? '' : ' and was ignored'}`, name, strict ? 'error' : 'warning'));
        continue;
      }
      for (const v of values) {
        const alternatives = v.split(',').filter((x) => x.length > 0);
        if (alternatives.length === 0) {
          problems.push(issue('value', `${name} needs a value`, name));
          continue;
        }
        groups.push((r) => alternatives.some((a) => def.matches(r, a)));
        self.append(name, v);
      }
    }
    if (problems.length) throw invalid(problems);
    const matches = this.all(type).filter((r) => groups.every((g) => g(r)));
    const query = self.toString();
    const entry: NonNullable<Bundle['entry']> = summaryCount
      ? []
      : matches.map((r) => ({ fullUrl: `${fhirBaseUrl}/${type}/${r.id}`, resource: r, search: { mode: 'match' as const } }));
    if (warnings.length) entry.push({ resource: outcome(warnings), search: { mode: 'outcome' } });
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      total: matches.length,
      link: [{ relation: 'self', url: `${fhirBaseUrl}/${type}${query ? `?${query}` : ''}` }],
      ...(entry.length ? { entry } : {}),
    };
  }
}

/** Documentation of each conformance type in the CapabilityStatement. */
export const CONFORMANCE_DOCUMENTATION: Readonly<Record<ConformanceType, string>> = {
  CodeSystem: 'The code systems this service defines (kinds, review types, Task business statuses, agreement, participant roles): public, no token',
  ValueSet: 'The value sets of our profiles\' required bindings: public, no token',
  StructureDefinition: 'Our profiles and extensions, with snapshots (resolve meta.profile with ?url=): public, no token',
  Measure: 'The second-opinion concordance Measure (how often opinions change the diagnosis or the plan): public, no token; $evaluate-measure needs a token',
};
