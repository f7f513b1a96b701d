import { describe, expect, it } from 'vitest';
import { MEASURE, PROFILE, SYSTEM } from '../fhir/constants.ts';
import { HttpOutcomeError } from '../fhir/outcomes.ts';
import { createValidator } from '../fhir/validator.ts';
import { parseMeasureParameters } from './measure-parameters.ts';
import { buildConcordanceReport, type ConcordanceCounts } from './measure-report.ts';

const refusal = (query: Record<string, string[]>) => {
  try {
    parseMeasureParameters(query);
  } catch (err) {
    if (err instanceof HttpOutcomeError) return { status: err.status, expressions: err.outcome.issue?.flatMap((i) => i.expression ?? []) };
    throw err;
  }
  return undefined;
};

describe('$evaluate-measure parameters', () => {
  it('a date period covers whole days (UTC), the end day included; a date-time is taken as given', () => {
    expect(parseMeasureParameters({ periodStart: ['2026-03-01'], periodEnd: ['2026-03-31'] })).toEqual({
      period: { start: '2026-03-01', end: '2026-03-31' },
      from: new Date('2026-03-01T00:00:00Z'),
      until: new Date('2026-04-01T00:00:00Z'),
    });
    const exact = parseMeasureParameters({ periodStart: ['2026-03-01T08:00:00+01:00'], periodEnd: ['2026-03-01T18:00:00Z'], _format: ['json'] });
    expect([exact.from.toISOString(), exact.until.toISOString()]).toEqual(['2026-03-01T07:00:00.000Z', '2026-03-01T18:00:00.001Z']);
  });

  it('subject and kind: an Organization reference; a kind code, bare or with our system', () => {
    expect(parseMeasureParameters({ periodStart: ['2026-01-01'], periodEnd: ['2026-01-01'], subject: ['Organization/lakeside'], kind: [`${SYSTEM.kind}|revision`] })).toMatchObject({ subject: 'Organization/lakeside', kind: 'revision' });
  });

  it.each([
    [{ periodEnd: ['2026-01-01'] }, ['periodStart']],
    [{ periodStart: ['2026-01-01'], periodEnd: ['2026-13-01'] }, ['periodEnd']],
    [{ periodStart: ['2026-01-01T10:00:00'], periodEnd: ['2026-01-02'] }, ['periodStart']],
    [{ periodStart: ['2026-01-02'], periodEnd: ['2026-01-01'] }, ['periodEnd']],
    [{ periodStart: ['2026-01-01'], periodEnd: ['2026-01-02'], subject: ['https://elsewhere/Organization/x'] }, ['subject']],
    [{ periodStart: ['2026-01-01'], periodEnd: ['2026-01-02'], kind: ['Revision'] }, ['kind']],
    [{ periodStart: ['2026-01-01', '2026-01-02'], periodEnd: ['2026-01-02'], measure: ['x'] }, ['measure', 'periodStart']],
  ])('%j -> 400 naming %j', (query, expressions) => {
    expect(refusal(query)).toEqual({ status: 400, expressions });
  });
});

describe('the concordance MeasureReport', () => {
  const validator = createValidator();
  const params = parseMeasureParameters({ periodStart: ['2026-01-01'], periodEnd: ['2026-12-31'] });
  const counts: ConcordanceCounts[] = [
    { kind: 'revision', returned: 3, classified: 2, diagnosisMajor: 1, diagnosisMinor: 0, planChanged: 2, planModified: 0 },
    { kind: 'diagnosis-confirmation', returned: 1, classified: 1, diagnosisMajor: 0, diagnosisMinor: 1, planChanged: 0, planModified: 1 },
  ];

  it('sums the kinds per group, with rates over the classified opinions and strata in the kinds\' order; valid against R4 and our profile', () => {
    const report = buildConcordanceReport(counts, params, new Date('2027-01-01T00:00:00Z'));
    expect(validator.validate(report)).toEqual([]);
    expect(report).toMatchObject({ meta: { profile: [PROFILE.concordanceReport] }, status: 'complete', type: 'summary', measure: MEASURE.concordance, date: '2027-01-01T00:00:00.000Z' });
    const changed = report.group?.find((g) => g.id === 'plan-changed');
    expect(changed?.population?.map((p) => p.count)).toEqual([4, 3, 2]);
    expect(changed?.measureScore).toEqual({ value: 0.6667 });
    expect(changed?.stratifier?.[0]?.stratum?.map((s) => [s.value?.coding?.[0]?.code, s.measureScore?.value])).toEqual([
      ['diagnosis-confirmation', 0],
      ['revision', 1],
    ]);
  });

  it('nothing classified: counts 0 and no measureScore (a rate of nothing is unknown); one kind: no stratifier', () => {
    const unclassified = buildConcordanceReport([{ ...counts[0]!, classified: 0, diagnosisMajor: 0, planChanged: 0 }], { ...params, kind: 'revision' }, new Date());
    expect(validator.validate(unclassified)).toEqual([]);
    expect(unclassified.group?.map((g) => [g.population?.map((p) => p.count), g.measureScore, g.stratifier])).toEqual(Array(4).fill([[3, 0, 0], undefined, undefined]));
  });
});
