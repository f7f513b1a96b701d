/**
 * The MeasureReport of the concordance Measure (profile concordance-measure-report): from the
 * counts of returned opinions per kind of second opinion, one group per population set (major
 * and minor diagnostic discrepancy, changed and modified plan), each with its initial
 * population (opinions returned), denominator (opinions classified against a first opinion),
 * numerator (opinions of the group's class) and `measureScore` (numerator / denominator, absent
 * when the denominator is 0: a rate of nothing is unknown, not 0). Stratified by kind unless the
 * report is for one kind. Pure.
 */
import type { MeasureReport, MeasureReportGroup, MeasureReportGroupPopulation } from '@medplum/fhirtypes';
import { DIAGNOSIS_CONCORDANCE, type Kind, KIND_DISPLAY, KINDS, MEASURE, PLAN_CONCORDANCE, PROFILE, SYSTEM } from '../fhir/constants.ts';
import type { MeasureParameters } from './measure-parameters.ts';

/** The opinions of one kind of second opinion, counted. */
export interface ConcordanceCounts {
  kind: string | null;
  /** Opinions returned (initial population). */
  returned: number;
  /** Opinions classified against a first opinion (denominator). */
  classified: number;
  diagnosisMajor: number;
  diagnosisMinor: number;
  planChanged: number;
  planModified: number;
}

type Numerator = 'diagnosisMajor' | 'diagnosisMinor' | 'planChanged' | 'planModified';

/** The Measure's groups, in its order (concordance.fsh): group id, code and what it counts. */
export const CONCORDANCE_GROUPS: readonly { id: string; system: string; code: string; display: string; numerator: Numerator }[] = [
  { id: 'diagnosis-major-discrepancy', system: SYSTEM.diagnosisConcordance, code: 'major-discrepancy', display: DIAGNOSIS_CONCORDANCE['major-discrepancy'], numerator: 'diagnosisMajor' },
  { id: 'diagnosis-minor-discrepancy', system: SYSTEM.diagnosisConcordance, code: 'minor-discrepancy', display: DIAGNOSIS_CONCORDANCE['minor-discrepancy'], numerator: 'diagnosisMinor' },
  { id: 'plan-changed', system: SYSTEM.planConcordance, code: 'changed', display: PLAN_CONCORDANCE.changed, numerator: 'planChanged' },
  { id: 'plan-modified', system: SYSTEM.planConcordance, code: 'modified', display: PLAN_CONCORDANCE.modified, numerator: 'planModified' },
];

const MEASURE_POPULATION = 'http://terminology.hl7.org/CodeSystem/measure-population';
const population = (code: string, display: string, count: number): MeasureReportGroupPopulation => ({ code: { coding: [{ system: MEASURE_POPULATION, code, display }] }, count });

function populations(c: Omit<ConcordanceCounts, 'kind'>, numerator: Numerator): Pick<MeasureReportGroup, 'population' | 'measureScore'> {
  return {
    population: [population('initial-population', 'Initial Population', c.returned), population('denominator', 'Denominator', c.classified), population('numerator', 'Numerator', c[numerator])],
    // Four decimals: a rate, not a claim of more precision than the counts have.
    ...(c.classified > 0 ? { measureScore: { value: Math.round((c[numerator] / c.classified) * 10_000) / 10_000 } } : {}),
  };
}

/** Sums the per-kind counts. */
export function totalOf(counts: readonly ConcordanceCounts[]): Omit<ConcordanceCounts, 'kind'> {
  const zero = { returned: 0, classified: 0, diagnosisMajor: 0, diagnosisMinor: 0, planChanged: 0, planModified: 0 };
  return counts.reduce((sum, c) => ({
    returned: sum.returned + c.returned,
    classified: sum.classified + c.classified,
    diagnosisMajor: sum.diagnosisMajor + c.diagnosisMajor,
    diagnosisMinor: sum.diagnosisMinor + c.diagnosisMinor,
    planChanged: sum.planChanged + c.planChanged,
    planModified: sum.planModified + c.planModified,
  }), zero);
}

export function buildConcordanceReport(counts: readonly ConcordanceCounts[], params: MeasureParameters, now: Date): MeasureReport {
  const total = totalOf(counts);
  // Strata in the kinds' own order; a kind with no opinion has no stratum.
  const strata = KINDS.flatMap((kind) => {
    const c = counts.find((x) => x.kind === kind);
    return c && c.returned > 0 ? [{ kind, c }] : [];
  });
  const group = CONCORDANCE_GROUPS.map(
    (g): MeasureReportGroup => ({
      id: g.id,
      code: { coding: [{ system: g.system, code: g.code, display: g.display }] },
      ...populations(total, g.numerator),
      ...(params.kind
        ? {}
        : {
            stratifier: [
              {
                code: [{ text: 'Kind of second opinion' }],
                ...(strata.length
                  ? { stratum: strata.map(({ kind, c }) => ({ value: { coding: [{ system: SYSTEM.kind, code: kind, display: KIND_DISPLAY[kind as Kind] }] }, ...populations(c, g.numerator) })) }
                  : {}),
              },
            ],
          }),
    }),
  );
  return {
    resourceType: 'MeasureReport',
    meta: { profile: [PROFILE.concordanceReport] },
    status: 'complete',
    type: 'summary',
    measure: MEASURE.concordance,
    ...(params.subject ? { subject: { reference: params.subject } } : {}),
    date: now.toISOString(),
    period: params.period,
    group,
  };
}
