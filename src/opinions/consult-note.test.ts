import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EXTENSION } from '../fhir/constants.ts';
import { createValidator, ResourceValidationError } from '../fhir/validator.ts';
import { parseBody } from '../http/parse-body.ts';
import { buildConsultNote, buildOpinionProvenance, readOpinionExtension } from './consult-note.ts';
import { OpinionSchema } from './opinion.ts';
import { renderOpinionHtml } from './render-note.ts';

const validator = createValidator();
const opinion = OpinionSchema.parse({
  diagnosisAgreement: 'agree-with-modifications',
  planAgreement: 'disagree',
  diagnosis: [{ system: 'http://snomed.info/sct', code: '239873007', display: 'Osteoarthritis of knee' }],
  summary: 'Loosening is not proven.\n\nRevision is premature.',
  recommendations: [
    { option: 'Aspiration and bone scan first', preferred: true, rationale: 'Rule out infection', risks: ['Delay'], recovery: 'None' },
    { option: 'Revision arthroplasty', risks: ['Infection', 'Stiffness'], recovery: '3-6 months' },
  ],
  missingInformation: ['Implant details'],
  followUp: 'Review after the scan.',
  attachments: [{ contentType: 'text/plain', title: 'Notes', data: Buffer.from('extra notes').toString('base64') }],
});
const consultant = { reference: 'Organization/lakeside', display: 'Lakeside Consults' };
const args = { id: 'note-1', opinion, patient: { reference: 'https://ehr.example/fhir/Patient/p1' }, serviceRequestId: 'sr-1', taskId: 't-1', consultant, now: new Date('2026-11-22T10:00:00Z'), requestId: 'REQ-1', question: 'Revise?' };

describe('consult note', () => {
  it('validates against R4 and the consult-note profile, with identifier, LOINC type and verified attachments', () => {
    const doc = buildConsultNote(args);
    expect(validator.validate(doc)).toEqual([]);
    expect(doc).toMatchObject({ identifier: [{ value: 'note-1' }], type: { coding: [{ system: 'http://loinc.org', code: '11488-4' }] }, author: [consultant], context: { related: [{ reference: 'ServiceRequest/sr-1' }] } });
    for (const { attachment } of doc.content) {
      const bytes = Buffer.from(attachment.data as string, 'base64');
      expect(attachment.size).toBe(bytes.length);
      expect(attachment.hash).toBe(createHash('sha1').update(bytes).digest('base64'));
    }
    expect(doc.content.map((c) => c.attachment.contentType)).toEqual(['text/html', 'text/plain']);
  });

  it('keeps the structured points machine-readable: the extension reads back to the opinion', () => {
    const { attachments: _a, ...points } = opinion;
    expect(readOpinionExtension(buildConsultNote(args))).toEqual(points);
  });

  it('refuses a wrong agreement code and a missing required point', () => {
    const doc = buildConsultNote(args);
    const wrongCode = structuredClone(doc);
    const root = wrongCode.extension?.find((e) => e.url === EXTENSION.secondOpinion);
    (root?.extension?.[0]?.valueCoding as { code: string }).code = 'maybe';
    expect(() => validator.validate(wrongCode)).toThrow(ResourceValidationError);
    const noSummary = structuredClone(doc);
    const root2 = noSummary.extension?.find((e) => e.url === EXTENSION.secondOpinion);
    if (root2) root2.extension = root2.extension?.filter((e) => e.url !== 'summary');
    expect(() => validator.validate(noSummary)).toThrow(ResourceValidationError);
  });

  it('keeps the answers to the referral questions, one second-opinion-answer each, and shows each question with its answer', () => {
    const answered = { ...opinion, answers: [{ question: 1, text: 'After <3> months' }, { question: 0, notAnswerable: 'No imaging sent' }] };
    const questions = [{ text: 'Can I <run>?', askedBy: 'patient' as const }, { text: 'When can she drive?', askedBy: 'physician' as const }];
    const doc = buildConsultNote({ ...args, opinion: answered, questions });
    expect(validator.validate(doc)).toEqual([]);
    expect(doc.extension?.filter((e) => e.url === EXTENSION.secondOpinionAnswer)).toEqual([
      { url: EXTENSION.secondOpinionAnswer, extension: [{ url: 'question', valueInteger: 1 }, { url: 'text', valueString: 'After <3> months' }] },
      { url: EXTENSION.secondOpinionAnswer, extension: [{ url: 'question', valueInteger: 0 }, { url: 'notAnswerable', valueString: 'No imaging sent' }] },
    ]);
    expect(readOpinionExtension(doc)?.answers).toEqual(answered.answers);
    const html = Buffer.from(doc.content[0]?.attachment.data as string, 'base64').toString('utf8');
    expect(html).toContain('<li><p><strong>Can I &lt;run&gt;?</strong> <small>(asked by the patient)</small></p><p><em>Not answered:</em> No imaging sent</p></li>');
    expect(html).toContain('<li><p><strong>When can she drive?</strong> <small>(asked by the physician)</small></p><p>After &lt;3&gt; months</p></li>');
    // Without questions the note has no such section.
    expect(renderOpinionHtml(opinion, { consultant: 'Lake', date: args.now })).not.toContain('Your questions');
  });

  it('Provenance names the consultant and validates', () => {
    const provenance = buildOpinionProvenance({ id: 'p-1', documentId: 'note-1', taskId: 't-1', consultant, now: args.now });
    expect(validator.validate(provenance)).toEqual([]);
    expect(provenance.agent[0]?.who).toEqual(consultant);
  });

  it('renders escaped HTML: no markup from the opinion gets through', () => {
    const html = renderOpinionHtml({ ...opinion, summary: '<script>alert(1)</script> & "x"' }, { consultant: '<b>Lake</b>', date: args.now });
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;');
    expect(html).toContain('&lt;b&gt;Lake&lt;/b&gt;');
    expect(html).toContain('<strong>Preferred</strong>');
  });

  it('schema: each refusal names its field', () => {
    const issues = (body: unknown) => {
      try {
        parseBody(OpinionSchema, body);
        return [];
      } catch (err) {
        return ((err as { outcome: { issue: { expression?: string[] }[] } }).outcome.issue ?? []).map((i) => i.expression?.[0]);
      }
    };
    expect(issues({ planAgreement: 'agree', summary: 'x' })).toEqual(['diagnosisAgreement']);
    expect(issues({ diagnosisAgreement: 'sure', planAgreement: 'agree', summary: 'x' })).toEqual(['diagnosisAgreement']);
    expect(issues({ diagnosisAgreement: 'agree', planAgreement: 'agree', summary: 'x', recommendations: [{ option: 'a', preferred: true }, { option: 'b', preferred: true }] })).toEqual(['recommendations']);
    expect(issues({ diagnosisAgreement: 'agree', planAgreement: 'agree', summary: 'x', attachments: [{ contentType: 'text/html', data: 'aGk=' }] })).toEqual(['attachments[0].contentType']);
    expect(issues({ diagnosisAgreement: 'agree', planAgreement: 'agree', summary: 'x', mood: 1 })).toEqual(['mood']);
    const answer = (a: unknown) => issues({ diagnosisAgreement: 'agree', planAgreement: 'agree', summary: 'x', answers: [a] });
    expect(answer({ question: 0 })).toEqual(['answers[0]']);
    expect(answer({ question: 0, text: 'a', notAnswerable: 'b' })).toEqual(['answers[0]']);
    expect(answer({ question: -1, text: 'a' })).toEqual(['answers[0].question']);
    expect(answer({ question: 0, notAnswerable: '' })).toEqual(['answers[0].notAnswerable']);
  });
});
