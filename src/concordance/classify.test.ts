import { describe, expect, it } from 'vitest';
import type { ClinicalImpression } from '@medplum/fhirtypes';
import { buildConsultNote } from '../opinions/consult-note.ts';
import { OpinionSchema } from '../opinions/opinion.ts';
import { EXAMPLE_OPINION } from '../../test/support/opinions.ts';
import { createValidator, ResourceValidationError } from '../fhir/validator.ts';
import { EXTENSION, SYSTEM } from '../fhir/constants.ts';
import { classifyOpinion, codedDiagnosesDiffer, type FirstOpinionPoints, type ReturnedOpinionPoints } from './classify.ts';
import { concordanceExtension, firstOpinionPoints, readConcordance } from './concordance-extension.ts';

const SCT = 'http://snomed.info/sct';
const implant = { system: SCT, code: '428341000124104' };
const infection = { system: SCT, code: '40733004' };
const first: FirstOpinionPoints = { diagnosis: [implant], plan: 'Revision surgery with implant exchange' };
const opinion = (o: Partial<ReturnedOpinionPoints>): ReturnedOpinionPoints => ({ diagnosisAgreement: 'agree', planAgreement: 'agree', diagnosis: [], ...o });

describe('classifyOpinion: the table of classify.ts', () => {
  it.each([
    // diagnosisAgreement, the opinion's codes, class
    ['agree', [implant], 'concordant'],
    ['agree', [], 'concordant'],
    ['agree', [{ ...implant, display: 'another label' }], 'concordant'],
    ['agree', [infection], 'minor-discrepancy'],
    ['agree', [implant, infection], 'minor-discrepancy'],
    ['agree-with-modifications', [implant], 'minor-discrepancy'],
    ['agree-with-modifications', [], 'minor-discrepancy'],
    ['disagree', [implant], 'major-discrepancy'],
    ['disagree', [infection], 'major-discrepancy'],
  ] as const)('diagnosis: %s with codes %j -> %s', (diagnosisAgreement, diagnosis, expected) => {
    expect(classifyOpinion(first, opinion({ diagnosisAgreement, diagnosis: [...diagnosis] }))?.diagnosis).toBe(expected);
  });

  it.each([
    // planAgreement, the preferred option, class
    ['agree', undefined, 'unchanged'],
    ['agree', '  revision SURGERY with implant   exchange ', 'unchanged'],
    ['agree', 'Capsulectomy and observation', 'modified'],
    ['agree-with-modifications', undefined, 'modified'],
    ['agree-with-modifications', 'Revision surgery with implant exchange', 'modified'],
    ['disagree', undefined, 'changed'],
    ['disagree', 'Revision surgery with implant exchange', 'changed'],
  ] as const)('plan: %s with preferred option %j -> %s', (planAgreement, preferredOption, expected) => {
    expect(classifyOpinion(first, opinion({ planAgreement, ...(preferredOption ? { preferredOption } : {}) }))?.plan).toBe(expected);
  });

  it('a first opinion without codes or plan leaves the agreement codes alone to decide', () => {
    expect(classifyOpinion({ diagnosis: [] }, opinion({ diagnosis: [infection], preferredOption: 'Anything' }))).toEqual({ diagnosis: 'concordant', plan: 'unchanged' });
    expect(classifyOpinion({ diagnosis: [] }, opinion({ diagnosisAgreement: 'disagree', planAgreement: 'agree-with-modifications' }))).toEqual({ diagnosis: 'major-discrepancy', plan: 'modified' });
  });

  it('no first opinion: not classified', () => {
    expect(classifyOpinion(undefined, opinion({ diagnosisAgreement: 'disagree' }))).toBeUndefined();
  });

  it('codes differ only when both sides code something and the sets are not equal (order and displays ignored)', () => {
    expect(codedDiagnosesDiffer([implant, infection], [infection, implant])).toBe(false);
    expect(codedDiagnosesDiffer([implant], [{ system: 'http://hl7.org/fhir/sid/icd-10', code: implant.code }])).toBe(true);
    expect(codedDiagnosesDiffer([], [infection])).toBe(false);
  });
});

describe('the concordance extension on the consult note', () => {
  const validator = createValidator();
  const note = buildConsultNote({
    id: 'note-1',
    opinion: OpinionSchema.parse(EXAMPLE_OPINION),
    patient: { reference: 'https://ehr.example/fhir/R4/Patient/7c1e' },
    serviceRequestId: 'sr-1',
    taskId: 'task-1',
    consultant: { reference: 'Organization/lakeside', display: 'Lakeside Clinic' },
    now: new Date('2026-12-01T10:00:00Z'),
    concordance: { diagnosis: 'minor-discrepancy', plan: 'changed' },
  });

  it('is written with codes and displays of our code systems, reads back, and the note stays valid against the consult-note profile', () => {
    expect(note.extension?.find((e) => e.url === EXTENSION.concordance)).toEqual(concordanceExtension({ diagnosis: 'minor-discrepancy', plan: 'changed' }));
    expect(readConcordance(note)).toEqual({ diagnosis: 'minor-discrepancy', plan: 'changed' });
    expect(validator.validate(note).filter((i) => i.severity === 'error')).toEqual([]);
  });

  it('a code outside our value set is refused by the validator, naming the sub-extension', () => {
    const broken = structuredClone(note);
    const ext = broken.extension?.find((e) => e.url === EXTENSION.concordance);
    (ext?.extension?.[0]?.valueCoding as { code: string }).code = 'somewhat-different';
    let error: unknown;
    try {
      validator.validate(broken);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ResourceValidationError);
    expect(JSON.stringify((error as ResourceValidationError).issues)).toContain(SYSTEM.diagnosisConcordance.split('/').pop());
    expect(readConcordance(broken)).toBeUndefined();
  });

  it('reads the first opinion\'s coded findings and plan from its ClinicalImpression', () => {
    const ci: ClinicalImpression = {
      resourceType: 'ClinicalImpression',
      status: 'completed',
      subject: { reference: 'Patient/p' },
      finding: [{ itemCodeableConcept: { coding: [{ ...implant, display: 'Complication of breast implant' }] } }],
      summary: 'Revision surgery with implant exchange',
    };
    expect(firstOpinionPoints(ci)).toEqual(first);
  });
});
