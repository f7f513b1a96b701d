import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { COMPARISON_PAGE_CSP, type ComparedOpinion, type Comparison, renderComparisonHtml } from './comparison.ts';

const opinion = (name: string, extra: Partial<ComparedOpinion> = {}): ComparedOpinion => ({
  source: name.toLowerCase(),
  name,
  date: '2026-12-07T10:00:00.000Z',
  diagnosis: [{ system: 'http://snomed.info/sct', code: '239873007', display: 'Osteoarthritis of knee' }],
  plan: 'Aspirate first',
  diagnosisAgreement: 'agree',
  planAgreement: 'disagree',
  options: [{ option: 'Aspiration', preferred: true, rationale: 'Rule out infection', risks: ['Delay'] }],
  preferredOption: 'Aspiration',
  keyRisks: ['Delay'],
  missingInformation: [],
  followUp: 'Review in six weeks',
  followUps: [],
  ...extra,
});

const comparison = (opinions: ComparedOpinion[], extra: Partial<Comparison> = {}): Comparison => ({
  referral: {
    id: 'sr-1',
    requestId: 'REQ-<1>',
    patient: { reference: 'https://ehr.example/fhir/Patient/p-1', identifier: { system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }, display: 'Alex <b>Example</b>' },
    kind: 'revision',
    authoredOn: '2026-12-01T09:00:00.000Z',
    question: 'Revise or wait?',
  },
  questions: [],
  first: { source: 'first-opinion', name: 'First opinion', diagnosis: [{ display: 'Complication of breast implant' }], plan: 'Revision', options: [], keyRisks: [], missingInformation: [] },
  opinions,
  pending: [{ source: 'riverside', name: 'Riverside', status: 'in-progress' }],
  ...extra,
});

describe('the comparison page (renderComparisonHtml)', () => {
  it('names the patient and the referral as the JSON has them, escaped', () => {
    const html = renderComparisonHtml(comparison([opinion('Lakeside')]));
    expect(html).toContain('<dt>Patient</dt><dd>Alex &lt;b&gt;Example&lt;/b&gt;, 999-00-1234 <small>(urn:oid:2.16.840.1.113883.4.1)</small>, <small>https://ehr.example/fhir/Patient/p-1</small></dd>');
    expect(html).toContain('<dt>Referral</dt><dd>REQ-&lt;1&gt;, <small>sr-1</small>, Revision after a prior procedure, placed 2026-12-01</dd>');
    expect(html).not.toContain('<b>');
  });

  it('shows each option\'s rationale and the opinion\'s follow-up, in the table and in the opinion\'s own section', () => {
    const html = renderComparisonHtml(comparison([opinion('Lakeside'), opinion('Northfield', { followUp: 'Repeat CRP' })]));
    expect(html).toContain('<li>Aspiration (preferred)<br><small>Rationale: Rule out infection</small></li>');
    expect(html).toContain('<tr><th>Follow-up</th><td></td><td>Review in six weeks</td><td>Repeat CRP</td></tr>');
    expect(html.match(/<section class="opinion" aria-labelledby="opinion-\d">/g)).toHaveLength(2);
    expect(html).toContain('<p><strong>Second opinion 2 of 2</strong> &middot; Patient: Alex &lt;b&gt;Example&lt;/b&gt;');
    expect(html).toContain('<dt>Follow-up</dt><dd>Repeat CRP</dd>');
  });

  it('hides the overview in print only when there are opinions to print', () => {
    expect(renderComparisonHtml(comparison([opinion('Lakeside')]))).toContain('<div class="screen-only">');
    const none = renderComparisonHtml(comparison([]));
    expect(none).not.toContain('screen-only">');
    expect(none).not.toContain('<section');
    expect(none).toContain('Not in yet: Riverside (in-progress)');
  });

  it('its CSP allows exactly its inline style, by hash', () => {
    const html = renderComparisonHtml(comparison([opinion('Lakeside')]));
    const style = /<style>([^<]*)<\/style>/.exec(html)?.[1] as string;
    expect(style).toContain('@media print');
    expect(COMPARISON_PAGE_CSP).toContain(`style-src 'sha256-${createHash('sha256').update(style).digest('base64')}'`);
  });
});
