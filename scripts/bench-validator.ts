/**
 * Per-call cost of runtime validation (`npx tsx scripts/bench-validator.ts`): our
 * ServiceRequest and Task against their profiles through createValidator() (profiles parsed
 * once), compared with Medplum's `validateResource(r, { profile })` (profile re-parsed on
 * every call) and with R4 base only. Prints microseconds per call; no thresholds.
 */
import { validateResource } from '@medplum/core';
import type { Resource, StructureDefinition } from '@medplum/fhirtypes';
import { loadProfileRegistry } from '../src/fhir/profile-registry.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { validateGenerated } from '../src/fhir/generated-validator.ts';
import { readFileSync } from 'node:fs';
import { GENERATED_PROFILES_PATH } from '../src/fhir/profile-registry.ts';
import { makeFirstOpinion, makeRecordSetBundle, makeRecordDocument, makeReferralServiceRequest, makeSecondOpinionTask } from '../test/fixtures/fhir/second-opinion-resources.ts';

const validator = createValidator();
loadProfileRegistry();
const definitions = (JSON.parse(readFileSync(GENERATED_PROFILES_PATH, 'utf8')) as { entry: { resource: StructureDefinition }[] }).entry.map(
  (e) => e.resource,
);
const sd = (url: string): StructureDefinition => definitions.find((r) => r.url === url) as StructureDefinition;

function microsPerCall(run: () => unknown, iterations = 3000): number {
  for (let i = 0; i < 300; i++) run(); // warm-up (JIT, FHIRPath cache)
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) run();
  return Number(process.hrtime.bigint() - started) / 1000 / iterations;
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

// One intake's five resources (ServiceRequest, two Tasks, ClinicalImpression, Provenance)
// against R4 base: the generated validator beside Medplum's validateResource.
const provenance: Resource = {
  resourceType: 'Provenance',
  target: [{ reference: 'Task/7b1c0e4e-0d7a-4f43-9a55-0c6f1d0e2b11' }],
  recorded: '2026-11-02T10:00:00Z',
  agent: [{ who: { reference: 'Organization/org-1' } }],
};
const intake: Resource[] = [makeReferralServiceRequest(), makeSecondOpinionTask(), makeSecondOpinionTask(), makeFirstOpinion(), provenance].map(
  (r) => ({ ...r, meta: undefined }) as Resource,
);
const validateAll = (fn: (r: Resource) => unknown) => () => {
  for (const r of intake) fn(r);
};
const generatedUs = microsPerCall(validateAll(validateGenerated), 3000);
const medplumUs = microsPerCall(validateAll((r) => validateResource(r)), 1000);
const profiledUs = microsPerCall(validateAll((r) => validator.validate(r)), 1000);
console.log(
  `one intake's five resources, R4 base: generated ${generatedUs.toFixed(0)} µs | Medplum validateResource ${medplumUs.toFixed(0)} µs ` +
    `(${(medplumUs / generatedUs).toFixed(1)}x) | target 300 µs`,
);
const withProfiles: Resource[] = [makeReferralServiceRequest(), makeSecondOpinionTask(), makeSecondOpinionTask(), makeFirstOpinion()];
const profiled = microsPerCall(() => {
  for (const r of withProfiles) validator.validate(r);
}, 1000);
console.log(`same intake with our profiles (still Medplum, profiles not generated yet), four profiled resources: ${profiled.toFixed(0)} µs; base-only five via createValidator: ${profiledUs.toFixed(0)} µs`);
