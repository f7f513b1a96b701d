/**
 * The demo's last step: the concordance figures of the cases it ran, as the audit
 * office reads them: `GET /fhir/Measure/second-opinion-concordance/$evaluate-measure` over the
 * days of the run, printed as counts and rates per group and the opinions per kind.
 */
import type { MeasureReport, MeasureReportGroup } from '@medplum/fhirtypes';
import type { DemoContext } from './steps.ts';
import { fact, step } from './print.ts';
import { AUDITOR, REFERRER } from './scenario.ts';

const DAY = 86_400_000;
const counts = (g: MeasureReportGroup | undefined) => (g?.population ?? []).map((p) => p.count ?? 0);
const rate = (g: MeasureReportGroup | undefined) => (g?.measureScore?.value === undefined ? 'no rate' : `${(g.measureScore.value * 100).toFixed(1)} %`);

export async function printConcordance(ctx: DemoContext, n: number): Promise<void> {
  step(n, 'Concordance: how often did the second opinions change the diagnosis or the plan? (GET /fhir/Measure/{id}/$evaluate-measure)');
  const day = (at: number) => new Date(at).toISOString().slice(0, 10);
  const query = `periodStart=${day(Date.now() - DAY)}&periodEnd=${day(Date.now() + DAY)}`;
  const path = `/fhir/Measure/second-opinion-concordance/$evaluate-measure?${query}`;
  const report = (await ctx.api.expect<MeasureReport>(200, AUDITOR, 'GET', path)).body;
  fact('request', `GET ${path} as the audit office -> 200 MeasureReport ${report.status}, ${report.type}, all organizations`);
  const group = (id: string) => report.group?.find((g) => g.id === id);
  const [returned, classified] = counts(group('plan-changed'));
  fact('opinions', `${returned} returned, ${classified} classified against the referral's first opinion`);
  const line = (label: string, id: string) => {
    const [, denominator, numerator] = counts(group(id));
    return `${label} ${numerator} of ${denominator} (${rate(group(id))})`;
  };
  fact('diagnosis', `${line('major discrepancy', 'diagnosis-major-discrepancy')}; ${line('minor discrepancy', 'diagnosis-minor-discrepancy')}`);
  fact('plan', `${line('changed', 'plan-changed')}; ${line('modified', 'plan-modified')}`);
  const strata = group('plan-changed')?.stratifier?.[0]?.stratum ?? [];
  fact('by kind', strata.map((s) => `${s.value?.coding?.[0]?.display ?? s.value?.coding?.[0]?.code}: ${s.population?.[0]?.count} opinion(s), plan changed ${rate(s)}`).join('; '));
  const own = (await ctx.api.expect<MeasureReport>(200, REFERRER, 'GET', `${path}&subject=Organization/st-olaf`)).body;
  fact('referrer', `St Olaf asks for its own organization (subject=Organization/st-olaf): ${counts(own.group?.[0])[0]} opinion(s) on its referrals, the same figures`);
}
