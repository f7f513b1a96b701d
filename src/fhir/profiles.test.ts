import { readFileSync, rmSync } from 'node:fs';
import type { Bundle, CodeSystem, StructureDefinition, ValueSet } from '@medplum/fhirtypes';
import { afterAll, describe, expect, it } from 'vitest';
import {
  compileProfiles,
  GENERATED_PROFILES_PATH,
  renderGeneratedProfiles,
  scratchCacheDir,
} from '../../scripts/compile-profiles.ts';
import { ROLES } from '../network/network-schema.ts';
import { BUSINESS_STATUS, DIAGNOSIS_CONCORDANCE, EXTENSION, KIND_DISPLAY, MEASURE, PLAN_CONCORDANCE, PARTICIPANT_ROLE_DISPLAY, PROFILE, QUESTION_ASKER_DISPLAY, REVIEW_TYPE_DISPLAY, SYSTEM } from './constants.ts';

const committed = readFileSync(GENERATED_PROFILES_PATH, 'utf8');
const resources = ((JSON.parse(committed) as Bundle).entry ?? []).map((e) => e.resource);
const byUrl = <T>(type: string, url: string): T | undefined =>
  resources.find((r) => r?.resourceType === type && (r as { url?: string }).url === url) as T | undefined;

function displays(cs: CodeSystem | undefined): Record<string, string | undefined> {
  return Object.fromEntries((cs?.concept ?? []).map((c) => [c.code, c.display]));
}

describe('profiles/generated/profiles.json', () => {
  const cacheDir = scratchCacheDir();
  afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

  it('is what the FSH in profiles/ compiles to (run `npm run profiles` after editing FSH)', async () => {
    const result = await compileProfiles({ cacheDir, logLevel: 'error' });
    expect(result.errors).toEqual([]);
    const rendered = renderGeneratedProfiles(result.resources);
    // Structural comparison first: its diff names the element that changed.
    expect(JSON.parse(rendered)).toEqual(JSON.parse(committed));
    expect(rendered === committed, 'same content, different formatting: run `npm run profiles`').toBe(true);
  });

  it('defines every profile and extension named in constants.ts, with snapshots', () => {
    for (const url of [...Object.values(PROFILE), ...Object.values(EXTENSION)]) {
      const sd = byUrl<StructureDefinition>('StructureDefinition', url);
      expect(sd?.url, url).toBe(url);
      expect(sd?.snapshot?.element?.length ?? 0, url).toBeGreaterThan(0);
    }
  });

  it('has the codes and displays of constants.ts in its code systems, each with a definition', () => {
    expect(displays(byUrl<CodeSystem>('CodeSystem', SYSTEM.kind))).toEqual(KIND_DISPLAY);
    expect(displays(byUrl<CodeSystem>('CodeSystem', SYSTEM.reviewType))).toEqual(REVIEW_TYPE_DISPLAY);
    expect(displays(byUrl<CodeSystem>('CodeSystem', SYSTEM.taskBusinessStatus))).toEqual(BUSINESS_STATUS);
    expect(displays(byUrl<CodeSystem>('CodeSystem', SYSTEM.participantRole))).toEqual(PARTICIPANT_ROLE_DISPLAY);
    expect(displays(byUrl<CodeSystem>('CodeSystem', SYSTEM.diagnosisConcordance))).toEqual(DIAGNOSIS_CONCORDANCE);
    expect(displays(byUrl<CodeSystem>('CodeSystem', SYSTEM.planConcordance))).toEqual(PLAN_CONCORDANCE);
    expect(Object.keys(PARTICIPANT_ROLE_DISPLAY).sort()).toEqual([...ROLES].sort());
    expect(displays(byUrl<CodeSystem>('CodeSystem', SYSTEM.questionAsker))).toEqual(QUESTION_ASKER_DISPLAY);
    for (const system of [SYSTEM.kind, SYSTEM.reviewType, SYSTEM.taskBusinessStatus, SYSTEM.participantRole, SYSTEM.questionAsker, SYSTEM.diagnosisConcordance, SYSTEM.planConcordance]) {
      const cs = byUrl<CodeSystem>('CodeSystem', system);
      expect(cs?.concept?.every((c) => (c.definition ?? '').length > 0), system).toBe(true);
      const vs = byUrl<ValueSet>('ValueSet', system.replace('/CodeSystem/', '/ValueSet/'));
      expect(vs?.compose?.include, system).toEqual([{ system }]);
    }
  });

  it('publishes the concordance Measure: one proportion group per class it counts, each coded with that class', () => {
    const measure = byUrl<{ id: string; scoring: unknown; group: { id: string; code: { coding: { system: string; code: string }[] }; population: unknown[] }[] }>('Measure', MEASURE.concordance);
    expect(measure?.id).toBe('second-opinion-concordance');
    expect(measure?.scoring).toEqual({ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/measure-scoring', code: 'proportion' }] });
    expect(measure?.group.map((g) => [g.id, g.code.coding[0]?.system, g.code.coding[0]?.code, g.population.length])).toEqual([
      ['diagnosis-major-discrepancy', SYSTEM.diagnosisConcordance, 'major-discrepancy', 3],
      ['diagnosis-minor-discrepancy', SYSTEM.diagnosisConcordance, 'minor-discrepancy', 3],
      ['plan-changed', SYSTEM.planConcordance, 'changed', 3],
      ['plan-modified', SYSTEM.planConcordance, 'modified', 3],
    ]);
  });

  it('carries no per-run timestamp', () => {
    expect(resources.filter((r) => r && 'date' in r)).toEqual([]);
  });
});
