/**
 * Per-call cost of runtime validation (`npx tsx scripts/bench-validator.ts`, part of
 * `npm run bench`): our ServiceRequest, Task and a record-set Bundle against their profiles
 * through createValidator() (generated code), compared with Medplum's
 * `validateResource(r, { profile })` (profile re-parsed on every call) and with R4 base only.
 * Prints microseconds per call, then the figure with a target: the five resources of one
 * intake (ServiceRequest, 2 Tasks, ClinicalImpression, Provenance; our profiles on the first
 * four) validated by createValidator() (generated engine) against createValidator({ engine:
 * 'medplum' }), the baseline. `--quick` measures a tenth of the calls.
 */
import { parseArgs } from 'node:util';
import { validateResource } from '@medplum/core';
import type { Provenance, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { loadProfileRegistry } from '../src/fhir/profile-registry.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { validateGenerated } from '../src/fhir/generated-validator.ts';
import { readFileSync } from 'node:fs';
import { GENERATED_PROFILES_PATH } from '../src/fhir/profile-registry.ts';
import { makeFirstOpinion, makeRecordSetBundle, makeRecordDocument, makeReferralServiceRequest, makeSecondOpinionTask } from '../test/fixtures/fhir/second-opinion-resources.ts';
import { emitFigures } from './bench/lib/results.ts';

const { values: flags } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const scale = flags.quick ? 0.1 : 1;

const validator = createValidator();
loadProfileRegistry();
const definitions = (JSON.parse(readFileSync(GENERATED_PROFILES_PATH, 'utf8')) as { entry: { resource: StructureDefinition }[] }).entry.map(
  (e) => e.resource,
);
const sd = (url: string): StructureDefinition => definitions.find((r) => r.url === url) as StructureDefinition;

function microsPerCall(run: () => unknown, iterations = 3000): number {
  const n = Math.max(10, Math.round(iterations * scale));
  for (let i = 0; i < Math.max(30, n / 10); i++) run(); // warm-up (JIT, FHIRPath cache)
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) run();
  return Number(process.hrtime.bigint() - started) / 1000 / n;
}

const bigBundle = makeRecordSetBundle({ entry: Array.from({ length: 50 }, () => ({ resource: makeRecordDocument() })) });
const cases: [string, Resource][] = [
  ['ServiceRequest', makeReferralServiceRequest()],
  ['Task', makeSecondOpinionTask()],
  ['record-set Bundle (50 DocumentReferences)', bigBundle],
];
for (const [label, resource] of cases) {
  const profileUrl = resource.meta?.profile?.[0] as string;
  const base = { ...resource, meta: undefined } as Resource;
  const ours = microsPerCall(() => validator.validate(resource), label.startsWith('record') ? 300 : 3000);
  const reparse = microsPerCall(() => validateResource(resource, { profile: sd(profileUrl) }), label.startsWith('record') ? 100 : 1000);
  const r4 = microsPerCall(() => validateResource(base), label.startsWith('record') ? 300 : 3000);
  console.log(
    `${label}: createValidator().validate ${ours.toFixed(0)} µs | validateResource(profile) ${reparse.toFixed(0)} µs | R4 base only ${r4.toFixed(0)} µs`,
  );
}

// One intake's five resources (ServiceRequest, two Tasks, ClinicalImpression, Provenance) as
// the service validates them: our profiles on the first four. The generated engine (default)
// beside the Medplum engine, and Medplum's validateResource of the same five against R4 base only.
const provenance: Resource = {
  resourceType: 'Provenance',
  target: [{ reference: 'Task/7b1c0e4e-0d7a-4f43-9a55-0c6f1d0e2b11' }],
  recorded: '2026-11-02T10:00:00Z',
  agent: [{ who: { reference: 'Organization/org-1' } }],
};
const intake: Resource[] = [makeReferralServiceRequest(), makeSecondOpinionTask(), makeSecondOpinionTask(), makeFirstOpinion(), provenance];
const medplumEngine = createValidator({ engine: 'medplum' });
const validateAll = (fn: (r: Resource) => unknown) => () => {
  for (const r of intake) fn(r);
};
const serviceUs = microsPerCall(validateAll((r) => validator.validate(r)), Math.max(300, Math.round(3000 * scale)));
const medplumEngineUs = microsPerCall(validateAll((r) => medplumEngine.validate(r)), Math.max(100, Math.round(1000 * scale)));
const base = intake.map((r) => ({ ...r, meta: undefined }) as Resource);
const r4Us = microsPerCall(() => base.forEach((r) => validateResource(r)), Math.max(100, Math.round(1000 * scale)));
const generatedR4Us = microsPerCall(() => base.forEach((r) => validateGenerated(r)), Math.max(300, Math.round(3000 * scale)));
console.log(
  `one intake's five resources with our profiles: generated ${serviceUs.toFixed(0)} µs | Medplum engine ${medplumEngineUs.toFixed(0)} µs ` +
    `(${(medplumEngineUs / serviceUs).toFixed(1)}x) | target 300 µs`,
);
console.log(`same five, R4 base only: generated ${generatedR4Us.toFixed(0)} µs | Medplum validateResource ${r4Us.toFixed(0)} µs`);
emitFigures([
  {
    bench: 'validator',
    name: "validation of one intake's 5 resources, µs",
    value: serviceUs,
    unit: 'µs',
    baseline: { name: "createValidator({ engine: 'medplum' })", value: medplumEngineUs },
    target: { on: 'value', op: '<=', limit: 300, source: 'docs/performance.md' },
  },
  {
    bench: 'validator',
    name: "generated validator, one intake's 5 resources (R4 base), µs",
    value: generatedR4Us,
    unit: 'µs',
    baseline: { name: 'Medplum validateResource, R4 base', value: r4Us },
  },
]);
