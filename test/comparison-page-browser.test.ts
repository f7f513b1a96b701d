import type { AuditEvent, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import type { Comparison } from '../src/retrieval/comparison.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { opinionDeliveries } from '../src/store/schema.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { type CheckedPage, describeInBrowser, launchBrowser, pdfPageCount, type TestBrowser } from './support/browser.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/** Text a consultant wrote that looks like markup: the page must show it as text and run nothing. */
const MARKUP = '<img src="https://example.org/x.png" onerror="alert(1)"> & <b>bold</b>';

/** The patient and the first opinion, spelled out here (not taken from shared examples): the test reads them back. */
const PATIENT = { identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }], display: 'Alex Example' };
const FIRST_OPINION = { diagnosis: [{ system: 'http://snomed.info/sct', code: '428341000124104', display: 'Complication of breast implant' }], plan: 'Revision surgery with implant exchange', documents: [] };

const LAKESIDE_OPINION = {
  diagnosisAgreement: 'agree-with-modifications',
  planAgreement: 'disagree',
  diagnosis: [{ system: 'http://snomed.info/sct', code: '239873007', display: 'Osteoarthritis of knee' }],
  summary: 'Aseptic loosening is not proven; revision is premature.',
  recommendations: [
    { option: 'Aspiration and bone scan first', preferred: true, rationale: 'Rule out infection and loosening', risks: ['Delay of 2 weeks'], recovery: 'None' },
    { option: 'Revision arthroplasty', risks: ['Infection', 'Stiffness'], recovery: '3 to 6 months' },
  ],
  missingInformation: ['Implant type and size'],
  followUp: 'Review with the scan results.',
  answers: [{ question: 0, text: 'Yes, after three months.' }],
};

const NORTHFIELD_OPINION = {
  ...LAKESIDE_OPINION,
  diagnosisAgreement: 'disagree',
  summary: `Infection must be excluded first. ${MARKUP}`,
  recommendations: [{ option: 'Two-stage revision', preferred: true, rationale: 'Low-grade infection is likely', risks: ['Infection', 'Stiffness'], recovery: '6 months' }],
  missingInformation: ['Implant type and size', 'CRP and ESR'],
  followUp: 'Repeat CRP in four weeks.',
  answers: [{ question: 0, notAnswerable: 'Depends on the infection work-up' }],
};

/**
 * The comparison page as a physician's browser shows it (headless Chromium): the patient and
 * the referral, each consultant with its status and opinion (rationale, follow-up, the
 * follow-up thread); no console error, no request leaving the service; one A4 page per
 * returned opinion when printed; no serious axe-core violation.
 */
describeInBrowser('comparison page in Chromium', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let browser: TestBrowser;
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);
  let referralId: string;
  let request: ReturnType<typeof makeSecondOpinionRequest> & { requestId: string; question: string };
  let comparison: Comparison;
  let page: CheckedPage;

  beforeAll(async () => {
    browser = await launchBrowser();
    ehr = await startSandboxEhr({ port: 0, storagePort: 0 });
    const networkFile = await writeSandboxNetwork(ehr, { timeoutMs: 5_000 });
    // The three clinics take part on the referrer's attestation (the sandbox's Consent names Lakeside only).
    service = await startTestService({ NETWORK_FILE: networkFile, CONSENT_ATTESTATION_ALLOWED: 'true' }, undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 1 })),
      jobPollingIntervalSeconds: 0.5,
    });
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology', 'riverside-imaging']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));

    // Three consultants: Lakeside and Northfield give their opinions, Riverside has not yet.
    request = makeSecondOpinionRequest(
      {
        consultants: ['lakeside-consults', 'northfield-pathology', 'riverside-imaging'],
        blinded: false,
        consent: undefined,
        consentAttested: true,
        patient: { reference: `Patient/${ehr.seeded.patientId}`, ...PATIENT },
        kind: 'revision',
        firstOpinion: FIRST_OPINION,
        questions: [{ text: 'Will I be able to swim again?', askedBy: 'patient' }],
      } as never,
      ehr.seeded,
    ) as typeof request;
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', request);
    expect(created.status).toBe(201);
    referralId = created.body.id;
    const [lakeside, northfield] = created.body.tasks.map((t) => t.id as string) as [string, string];
    let summary: ReferralSummary | undefined;
    await until(async () => ((summary = (await call<ReferralSummary>('GET', `/second-opinions/${referralId}`, 'st-olaf')).body).recordSet.status === 'records-ready' ? true : undefined), 'records', 45_000, () => JSON.stringify(summary?.recordSet));
    for (const [taskId, who] of [[lakeside, 'lakeside-consults'], [northfield, 'northfield-pathology']] as const) {
      expect((await call('POST', `/consults/${taskId}/accept`, who)).status).toBe(200);
      expect((await call('POST', `/consults/${taskId}/start`, who)).status).toBe(200);
    }
    expect((await call('POST', `/consults/${lakeside}/opinion`, 'lakeside-consults', LAKESIDE_OPINION)).status).toBe(200);
    expect((await call('POST', `/consults/${northfield}/opinion`, 'northfield-pathology', NORTHFIELD_OPINION)).status).toBe(200);
    // A follow-up question to Lakeside once its opinion reached the EHR, and Lakeside's answer.
    await until(async () => ((await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.taskId, lakeside)))[0]?.status === 'delivered' ? true : undefined), 'the opinion delivered');
    const asked = await call<{ id: string }>('POST', `/second-opinions/${referralId}/consultants/lakeside-consults/questions`, 'st-olaf', { text: 'Would an MRI change your view?' });
    expect(asked.status).toBe(201);
    expect((await call('POST', `/consults/${lakeside}/answers`, 'lakeside-consults', { question: asked.body.id, text: 'No; the bone scan would.' })).status).toBe(201);

    comparison = (await call<Comparison>('GET', `/second-opinions/${referralId}/comparison`, 'st-olaf')).body;
    page = await browser.open(`${service.url}/second-opinions/${referralId}/comparison`, { headers: { authorization: `Bearer ${tokens['st-olaf']}` } });
  });
  afterAll(async () => {
    await browser?.close();
    await service?.stop();
    await ehr?.stop();
  });

  it('the JSON names the patient and the referral, carries each option\'s rationale, and fits the documented schema', async () => {
    expect(comparison.referral).toEqual({
      id: referralId,
      requestId: request.requestId,
      patient: { reference: `${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`, identifier: { system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }, display: 'Alex Example' },
      kind: 'revision',
      authoredOn: expect.any(String),
      question: request.question,
    });
    expect(comparison.opinions.map((o) => [o.source, o.options.map((x) => x.rationale), o.followUp, o.followUps?.length])).toEqual([
      ['lakeside-consults', ['Rule out infection and loosening', undefined], 'Review with the scan results.', 1],
      ['northfield-pathology', ['Low-grade infection is likely'], 'Repeat CRP in four weeks.', 0],
    ]);
    expect(comparison.pending).toEqual([{ source: 'riverside-imaging', name: 'Riverside Imaging Centre (example)', status: 'requested' }]);
    // It fits what /openapi.json documents for this answer.
    const doc = (await (await fetch(`${service.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, { responses: Record<string, { content: Record<string, { schema: unknown }> }> }>>; components: { schemas: unknown } };
    const local = (v: unknown) => JSON.parse(JSON.stringify(v).replaceAll('#/components/schemas/', '#/$defs/')) as Record<string, unknown>;
    const schema = z.fromJSONSchema({ ...local(doc.paths['/second-opinions/{id}/comparison']?.get?.responses['200']?.content['application/json']?.schema), $defs: local(doc.components.schemas) } as never);
    const check = schema.safeParse(comparison);
    expect(check.success, JSON.stringify(check.error?.issues)).toBe(true);
  });

  it('each read of the comparison (JSON and page) is audited against the patient it names', async () => {
    const store = new ResourceStore(service.database.db, createValidator());
    const northfieldNote = comparison.opinions[1]?.documentReference as string;
    const events = (
      await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 50, contains: [[{ entity: [{ what: { reference: `ServiceRequest/${referralId}` } }] }], [{ entity: [{ what: { reference: northfieldNote } }] }]] }, 'system')
    ).resources;
    // Read twice (JSON, then the page); repeated reads may be coalesced into one event, so: at least one, each alike.
    expect(events.length).toBeGreaterThanOrEqual(1);
    for (const e of events) {
      expect([e.action, e.outcome, e.entity?.map((x) => x.what?.reference).filter((r) => r !== undefined)]).toEqual([
        'R',
        '0',
        [comparison.referral.patient?.reference, `ServiceRequest/${referralId}`, comparison.opinions[0]?.documentReference, northfieldNote],
      ]);
    }
    expect(events[0]?.entity?.[0]?.role?.code).toBe('1');
  });

  it('renders the patient, the referral, every consultant with its status, and each opinion in full, markup shown as text', async () => {
    expect(page.response?.status()).toBe(200);
    expect(await page.page.title()).toBe('Second opinions compared');
    const main = page.page.getByRole('main');
    const identity = await main.locator('dl').first().innerText();
    expect(identity).toContain('Alex Example, 999-00-1234');
    expect(identity).toContain(request.requestId);
    expect(identity).toContain(referralId);
    expect(identity).toContain('Revision');
    expect(identity).toContain(request.question);
    // The table: one column per opinion, headed by the first opinion and the consultants.
    expect(await main.locator('table').first().locator('thead th').allInnerTexts()).toEqual(['Point', expect.stringMatching(/^First opinion\s+\d{4}-\d\d-\d\d$/), expect.stringMatching(/^Lakeside Clinic \(example\)\s+\d{4}-\d\d-\d\d$/), expect.stringMatching(/^Northfield Pathology Laboratory \(example\)\s+\d{4}-\d\d-\d\d$/)]);
    expect(await main.getByText('Not in yet: Riverside Imaging Centre (example) (requested)').first().isVisible()).toBe(true);
    // Each returned opinion in full, under its consultant's heading.
    expect(await main.getByRole('heading', { level: 3 }).allInnerTexts()).toEqual([expect.stringMatching(/^Lakeside Clinic \(example\)/), expect.stringMatching(/^Northfield Pathology Laboratory \(example\)/)]);
    const lakeside = await main.getByRole('region', { name: /Lakeside/ }).innerText();
    for (const text of ['Aspiration and bone scan first (preferred)', 'Rationale: Rule out infection and loosening', 'Risks: Infection; Stiffness', 'Review with the scan results.', 'Will I be able to swim again?', 'Yes, after three months.', 'Would an MRI change your view?', 'No; the bone scan would.', 'Agree with modifications', 'Diagnosis: Minor discrepancy']) {
      expect(lakeside).toContain(text);
    }
    const northfield = await main.getByRole('region', { name: /Northfield/ }).innerText();
    for (const text of ['Two-stage revision (preferred)', 'Rationale: Low-grade infection is likely', 'Repeat CRP in four weeks.', 'Not answered: Depends on the infection work-up', `Infection must be excluded first. ${MARKUP}`]) {
      expect(northfield).toContain(text);
    }
    // The consultant's markup is text: no element made of it.
    expect(await page.page.locator('img, b').count()).toBe(0);
  });

  it('logs no console error and requests nothing but the page from the service', () => {
    expect(page.consoleErrors).toEqual([]);
    expect(page.requests).toEqual([`${service.url}/second-opinions/${referralId}/comparison`]);
    expect(page.requestsOutside(service.url)).toEqual([]);
  });

  it('prints on one A4 page per returned opinion, each headed by the patient and the referral', async () => {
    const pdf = await page.pdf();
    expect(pdf.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    expect(pdfPageCount(pdf)).toBe(comparison.opinions.length);
    // In print, the overview is hidden and each opinion carries the patient and the referral.
    await page.page.emulateMedia({ media: 'print' });
    try {
      expect(await page.page.locator('.screen-only').isVisible()).toBe(false);
      const headers = await page.page.locator('.opinion .print-only').allInnerTexts();
      expect(headers).toHaveLength(2);
      headers.forEach((h, i) => {
        expect(h).toContain(`Second opinion ${i + 1} of 2`);
        expect(h).toContain('Patient: Alex Example, 999-00-1234');
        expect(h).toContain(request.requestId);
        expect(h).toContain('First opinion: Complication of breast implant; plan: Revision surgery with implant exchange');
      });
    } finally {
      await page.page.emulateMedia({ media: 'screen' });
    }
  });

  it('passes axe-core with no serious or critical violation', async () => {
    expect(await page.seriousViolations()).toEqual([]);
    // None of lesser impact either (language, landmarks, table headers): keep it so.
    expect(await page.axeViolations()).toEqual([]);
  });
});
