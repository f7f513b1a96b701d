import type { CapabilityStatement, DocumentReference, Measure, MeasureReport, MeasureReportGroup, OperationOutcome, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { concordanceExtension, readConcordance } from '../src/concordance/concordance-extension.ts';
import { EXTENSION, MEASURE, PROFILE, SYSTEM } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { OpinionSchema } from '../src/opinions/opinion.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { completedWithNote, containedConsultNote } from './support/fhir-referrals.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { clientCredentialsForm, getAccessToken, postTokenRequest } from './support/tokens.ts';

const SCT = 'http://snomed.info/sct';
const IMPLANT = { system: SCT, code: '428341000124104', display: 'Complication of breast implant' };
const INFECTION = { system: SCT, code: '40733004', display: 'Infectious disease' };
const FIRST = { diagnosis: [IMPLANT], plan: 'Revision surgery with implant exchange', documents: [] };
const EVALUATE = '/fhir/Measure/second-opinion-concordance/$evaluate-measure';
const WIDE = 'periodStart=2000-01-01&periodEnd=2100-12-31';

/**
 * Concordance over real HTTP: opinions with different agreements classified on
 * submission (JSON and FHIR doors), and the concordance Measure evaluated as a referrer (its
 * referrals), a consulting clinic (its own opinions only), an auditor (all, or one
 * organization's), by kind, over a period that holds none, and with bad parameters.
 */
describe('concordance (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  const validator = createValidator();
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);
  /** MeasureReport when 200, else OperationOutcome: the test checks the status first. */
  type Answer = MeasureReport & Omit<OperationOutcome, 'resourceType'>;
  const evaluate = (who: string, query: string) => call<Answer>('GET', `${EVALUATE}?${query}`, who);
  const opinion = (o: Record<string, unknown>) => ({ ...EXAMPLE_OPINION, recommendations: [], diagnosis: [IMPLANT], ...o });

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
    const networkFile = await writeSandboxNetwork({ baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl }, { timeoutMs: 5_000 });
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, { jobPollingIntervalSeconds: 0.5 });
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology', 'audit-office', 'st-olaf-physicians']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
    const consentId = await ehr.addConsent(['lakeside', 'northfield-pathology']);

    // Three referrals, four opinions:
    // 1. revision, first opinion: Lakeside agrees on both (concordant, unchanged); Northfield disagrees on both (major, changed).
    const one = await inProgress({ consultants: ['lakeside-consults', 'northfield-pathology'], consent: { reference: `Consent/${consentId}` }, firstOpinion: FIRST });
    await submitted(one.taskIds[0]!, 'lakeside-consults', opinion({ diagnosisAgreement: 'agree', planAgreement: 'agree' }));
    await submitted(one.taskIds[1]!, 'northfield-pathology', opinion({ diagnosisAgreement: 'disagree', planAgreement: 'disagree', diagnosis: [INFECTION] }));
    // 2. diagnosis confirmation, first opinion: Lakeside agrees but codes another diagnosis and prefers another option
    //    (minor, modified), through the FHIR Task door, claiming "concordant" itself: the service's classification wins.
    const two = await inProgress({
      kind: 'diagnosis-confirmation',
      firstOpinion: FIRST,
      records: { documents: [{ reference: `DocumentReference/${seededDocument(ehr.seeded, 'progress-2024').id}` }] },
    });
    await completedOverFhir(two.taskIds[0]!, opinion({ diagnosisAgreement: 'agree', planAgreement: 'agree', diagnosis: [INFECTION], recommendations: [{ option: 'Antibiotics first', preferred: true }] }));
    // 3. revision, no first opinion: returned, not classified.
    const three = await inProgress({ firstOpinion: undefined });
    await submitted(three.taskIds[0]!, 'lakeside-consults', opinion({ diagnosisAgreement: 'disagree', planAgreement: 'disagree' }));
  }, 240_000);
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  /** A referral from St Olaf, its record set assembled, each Task accepted and started. */
  async function inProgress(overrides: Parameters<typeof makeSecondOpinionRequest>[0]): Promise<{ id: string; taskIds: string[] }> {
    const request = makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, ...overrides }, ehr.seeded);
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', request);
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const id = created.body.id;
    await until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');
    const taskIds = created.body.tasks.map((t) => t.id as string);
    for (const [i, consultant] of (request.consultants as string[]).entries()) {
      expect((await call('POST', `/consults/${taskIds[i]}/accept`, consultant)).status).toBe(200);
      expect((await call('POST', `/consults/${taskIds[i]}/start`, consultant)).status).toBe(200);
    }
    return { id, taskIds };
  }

  async function submitted(taskId: string, consultant: string, body: unknown): Promise<void> {
    const res = await call<Task>('POST', `/consults/${taskId}/opinion`, consultant, body);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }

  async function completedOverFhir(taskId: string, body: unknown): Promise<void> {
    const task = (await call<Task>('GET', `/fhir/Task/${taskId}`, 'lakeside-consults')).body;
    const note = containedConsultNote(OpinionSchema.parse(body), { title: 'Notes', text: 'See the opinion.' });
    note.extension = [...(note.extension ?? []), concordanceExtension({ diagnosis: 'concordant', plan: 'unchanged' })];
    const res = await call<Task>('PUT', `/fhir/Task/${taskId}`, 'lakeside-consults', completedWithNote(task, note), { 'content-type': 'application/fhir+json', 'if-match': `W/"${task.meta?.versionId}"` });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }

  const group = (report: MeasureReport, id: string): MeasureReportGroup => report.group?.find((g) => g.id === id) as MeasureReportGroup;
  /** Each group as [id, initial population, denominator, numerator, score]. */
  const figures = (report: MeasureReport) =>
    (report.group ?? []).map((g) => [g.id, ...(g.population ?? []).map((p) => p.count), g.measureScore?.value]);

  it('each returned opinion carries its classification on the consult note (the service\'s, whichever door); none without a first opinion', async () => {
    const entries = (await call<{ entry?: { resource: DocumentReference }[] }>('GET', '/fhir/DocumentReference?_count=100', 'st-olaf')).body.entry ?? [];
    // The referrer's DocumentReferences: record copies and the consult notes (the ones with the opinion's points).
    const notes = entries.filter((e) => e.resource.extension?.some((x) => x.url === EXTENSION.secondOpinion));
    expect(notes).toHaveLength(4);
    const classes = notes.map((e) => readConcordance(e.resource) ?? 'not classified').map((c) => (typeof c === 'string' ? c : `${c.diagnosis}/${c.plan}`));
    expect(classes.sort()).toEqual(['concordant/unchanged', 'major-discrepancy/changed', 'minor-discrepancy/modified', 'not classified']);
    for (const { resource } of notes) {
      expect(validator.validate(resource).filter((i) => i.severity === 'error')).toEqual([]);
      // Exactly one concordance extension: a client's own (FHIR door) is never kept beside the service's.
      expect(resource.extension?.filter((e) => e.url === EXTENSION.concordance).length ?? 0).toBeLessThanOrEqual(1);
    }
  });

  it('the Measure is published (read by id and found by url, no token) and $evaluate-measure is in the CapabilityStatement', async () => {
    const read = await fetch(`${service.url}/fhir/Measure/second-opinion-concordance`);
    expect(read.status).toBe(200);
    const measure = (await read.json()) as Measure;
    expect(measure).toMatchObject({ resourceType: 'Measure', url: MEASURE.concordance, status: 'active', scoring: { coding: [{ code: 'proportion' }] } });
    expect(measure.group?.map((g) => g.id)).toEqual(['diagnosis-major-discrepancy', 'diagnosis-minor-discrepancy', 'plan-changed', 'plan-modified']);
    expect(validator.validate(measure).filter((i) => i.severity === 'error')).toEqual([]);
    const found = (await (await fetch(`${service.url}/fhir/Measure?url=${encodeURIComponent(MEASURE.concordance)}`)).json()) as { total: number };
    expect(found.total).toBe(1);
    expect((await fetch(`${service.url}/fhir/Measure/no-such-measure`)).status).toBe(404);
    const metadata = (await (await fetch(`${service.url}/fhir/metadata`)).json()) as CapabilityStatement;
    const entry = metadata.rest?.[0]?.resource?.find((r) => r.type === 'Measure');
    expect(entry?.operation).toEqual([{ name: 'evaluate-measure', definition: 'http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure' }]);
    expect(metadata.rest?.[0]?.resource?.find((r) => r.type === 'MeasureReport')?.supportedProfile).toEqual([PROFILE.concordanceReport]);
  });

  it('the referrer: every opinion on its referrals, with counts, rates and a stratum per kind; valid against R4 and our profile', async () => {
    const res = await evaluate('st-olaf', WIDE);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const report = res.body;
    expect(validator.validate(report)).toEqual([]);
    expect(report).toMatchObject({ resourceType: 'MeasureReport', meta: { profile: [PROFILE.concordanceReport] }, status: 'complete', type: 'summary', measure: MEASURE.concordance, period: { start: '2000-01-01', end: '2100-12-31' } });
    expect(report.subject).toBeUndefined();
    // 4 returned, 3 classified: major 1 (Northfield), minor 1 (FHIR door), changed 1, modified 1.
    expect(figures(report)).toEqual([
      ['diagnosis-major-discrepancy', 4, 3, 1, 0.3333],
      ['diagnosis-minor-discrepancy', 4, 3, 1, 0.3333],
      ['plan-changed', 4, 3, 1, 0.3333],
      ['plan-modified', 4, 3, 1, 0.3333],
    ]);
    const major = group(report, 'diagnosis-major-discrepancy');
    expect(major.code?.coding).toEqual([{ system: SYSTEM.diagnosisConcordance, code: 'major-discrepancy', display: 'Major discrepancy' }]);
    expect(major.population?.map((p) => p.code?.coding?.[0]?.code)).toEqual(['initial-population', 'denominator', 'numerator']);
    const strata = major.stratifier?.[0]?.stratum?.map((s) => [s.value?.coding?.[0]?.code, ...(s.population ?? []).map((p) => p.count), s.measureScore?.value]);
    expect(strata).toEqual([
      ['diagnosis-confirmation', 1, 1, 0, 0],
      ['revision', 3, 2, 1, 0.5],
    ]);
    // Its own organization as subject: the same figures.
    const own = await evaluate('st-olaf', `${WIDE}&subject=Organization/st-olaf`);
    expect(own.status).toBe(200);
    expect(own.body.subject).toEqual({ reference: 'Organization/st-olaf' });
    expect(figures(own.body)).toEqual(figures(report));
  });

  it('a referrer token issued for one clinician counts that clinician\'s referrals only', async () => {
    const tokenFor = async (practitioner: string) => {
      const res = await postTokenRequest(service.url, { ...(await clientCredentialsForm(service.url, clientIdOf('st-olaf'))), practitioner });
      expect(res.status).toBe(200);
      return res.body.access_token as string;
    };
    const hers = await call<Answer>('GET', `${EVALUATE}?${WIDE}`, await tokenFor(`Practitioner/${ehr.seeded.practitionerId}`));
    expect(figures(hers.body)).toEqual(figures((await evaluate('st-olaf', WIDE)).body));
    const other = await call<Answer>('GET', `${EVALUATE}?${WIDE}`, await tokenFor('Practitioner/someone-else'));
    expect(other.status).toBe(200);
    expect(figures(other.body).map((g) => g.slice(1))).toEqual(Array(4).fill([0, 0, 0, undefined]));
  });

  it('a consulting clinic counts only its own opinions', async () => {
    const lakeside = await evaluate('lakeside-consults', WIDE);
    expect(lakeside.status).toBe(200);
    expect(validator.validate(lakeside.body)).toEqual([]);
    // Lakeside: three opinions, two classified (concordant/unchanged, minor/modified).
    expect(figures(lakeside.body)).toEqual([
      ['diagnosis-major-discrepancy', 3, 2, 0, 0],
      ['diagnosis-minor-discrepancy', 3, 2, 1, 0.5],
      ['plan-changed', 3, 2, 0, 0],
      ['plan-modified', 3, 2, 1, 0.5],
    ]);
    const northfield = await evaluate('northfield-pathology', WIDE);
    expect(figures(northfield.body)).toEqual([
      ['diagnosis-major-discrepancy', 1, 1, 1, 1],
      ['diagnosis-minor-discrepancy', 1, 1, 0, 0],
      ['plan-changed', 1, 1, 1, 1],
      ['plan-modified', 1, 1, 0, 0],
    ]);
    // Another organization's figures are not the clinic's to see.
    const other = await evaluate('lakeside-consults', `${WIDE}&subject=Organization/st-olaf`);
    expect(other.status).toBe(403);
    expect(other.body.issue?.[0]).toMatchObject({ severity: 'error', code: 'forbidden' });
  });

  it('an auditor sees all, or one organization\'s; an unknown organization is 404; a physician is refused by role', async () => {
    const all = await evaluate('audit-office', WIDE);
    expect(all.status).toBe(200);
    expect(figures(all.body)).toEqual(figures((await evaluate('st-olaf', WIDE)).body));
    const northfield = await evaluate('audit-office', `${WIDE}&subject=Organization/northfield-pathology`);
    expect(northfield.status, JSON.stringify(northfield.body)).toBe(200);
    expect(northfield.body.subject).toEqual({ reference: 'Organization/northfield-pathology' });
    expect(group(northfield.body, 'plan-changed').population?.map((p) => p.count)).toEqual([1, 1, 1]);
    expect((await evaluate('audit-office', `${WIDE}&subject=Organization/nobody`)).status).toBe(404);
    const physician = await evaluate('st-olaf-physicians', WIDE);
    expect(physician.status).toBe(403);
    expect(physician.body.resourceType as string).toBe('OperationOutcome');
  });

  it('with a kind: that kind only, no stratifier; a period holding none: zeros and no rates', async () => {
    const revision = await evaluate('audit-office', `${WIDE}&kind=revision`);
    expect(revision.status).toBe(200);
    expect(validator.validate(revision.body)).toEqual([]);
    expect(figures(revision.body)).toEqual([
      ['diagnosis-major-discrepancy', 3, 2, 1, 0.5],
      ['diagnosis-minor-discrepancy', 3, 2, 0, 0],
      ['plan-changed', 3, 2, 1, 0.5],
      ['plan-modified', 3, 2, 0, 0],
    ]);
    expect(revision.body.group?.every((g) => g.stratifier === undefined)).toBe(true);
    const coded = await evaluate('audit-office', `${WIDE}&kind=${encodeURIComponent(`${SYSTEM.kind}|diagnosis-confirmation`)}`);
    expect(group(coded.body, 'diagnosis-minor-discrepancy').population?.map((p) => p.count)).toEqual([1, 1, 1]);

    const none = await evaluate('st-olaf', 'periodStart=2001-01-01&periodEnd=2001-12-31');
    expect(none.status).toBe(200);
    expect(validator.validate(none.body)).toEqual([]);
    expect(figures(none.body)).toEqual(['diagnosis-major-discrepancy', 'diagnosis-minor-discrepancy', 'plan-changed', 'plan-modified'].map((id) => [id, 0, 0, 0, undefined]));
    expect(none.body.group?.[0]?.stratifier).toEqual([{ code: [{ text: 'Kind of second opinion' }] }]);
  });

  it('bad parameters: 400 OperationOutcome naming each; without a token 401; an unknown Measure 404', async () => {
    const cases: [string, string[]][] = [
      ['periodEnd=2026-12-31', ['periodStart']],
      ['periodStart=2026-01-01', ['periodEnd']],
      ['periodStart=yesterday&periodEnd=2026-12-31', ['periodStart']],
      ['periodStart=2026-02-30&periodEnd=2026-12-31', ['periodStart']],
      ['periodStart=2026-12-31&periodEnd=2026-01-01', ['periodEnd']],
      [`${WIDE}&kind=second-guess`, ['kind']],
      [`${WIDE}&subject=Patient/p1`, ['subject']],
      [`${WIDE}&reportType=individual`, ['reportType']],
      [`${WIDE}&periodStart=2001-01-01`, ['periodStart']],
    ];
    for (const [query, expressions] of cases) {
      const res = await evaluate('st-olaf', query);
      expect([query, res.status, res.body.resourceType as string]).toEqual([query, 400, 'OperationOutcome']);
      expect([query, res.body.issue?.flatMap((i) => i.expression ?? [])]).toEqual([query, expressions]);
    }
    expect((await fetch(`${service.url}${EVALUATE}?${WIDE}`)).status).toBe(401);
    const unknown = await call<OperationOutcome>('GET', `/fhir/Measure/other/$evaluate-measure?${WIDE}`, 'st-olaf');
    expect(unknown.status).toBe(404);
    expect(unknown.body.resourceType).toBe('OperationOutcome');
  });
});
