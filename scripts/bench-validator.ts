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
import { readFileSync } from 'node:fs';
import { GENERATED_PROFILES_PATH } from '../src/fhir/profile-registry.ts';
import { makeRecordSetBundle, makeRecordDocument, makeReferralServiceRequest, makeSecondOpinionTask } from '../test/fixtures/fhir/second-opinion-resources.ts';

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
