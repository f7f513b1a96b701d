import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { DiagnosticReport, DocumentReference } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { makeImagingStudy, makeReport } from '../../test/support/sandbox-ehr/seed-resources.ts';
import { KINDS, LOINC_DOC, SYSTEM } from '../fhir/constants.ts';
import { CHECKLIST, checklistMarkdown, checklistTable, describeRecord, evaluateChecklist, type AvailableRecord } from './checklist.ts';

const docOf = (...loincTypes: string[]): AvailableRecord => ({ resourceType: 'DocumentReference', loincTypes, categories: [] });
const reportOf = (categories: string[], ...loincTypes: string[]): AvailableRecord => ({ resourceType: 'DiagnosticReport', loincTypes, categories });
const IMAGING_STUDY: AvailableRecord = { resourceType: 'ImagingStudy', loincTypes: [], categories: [] };

const OPERATIVE = docOf(LOINC_DOC.operativeNote.code);
const PROGRESS = docOf(LOINC_DOC.progressNote.code);
const HP = docOf(LOINC_DOC.historyAndPhysical.code);
const DISCHARGE = docOf(LOINC_DOC.dischargeSummary.code);
const PHOTO = docOf(LOINC_DOC.preOperativePhoto.code);

const PATHOLOGY_MISSING = {
  code: '11526-1',
  display: 'Pathology report',
  alternatives: [{ code: 'DiagnosticReport:pathology', display: 'Pathology DiagnosticReport' }],
};
const IMAGING_MISSING = {
  code: '18748-4',
  display: 'Imaging report',
  alternatives: [{ code: 'DiagnosticReport:imaging', display: 'Imaging DiagnosticReport' }],
};
const CLINICAL_PICTURE_MISSING = {
  code: '34117-2',
  display: 'History and physical or progress note',
  alternatives: [{ code: '11506-3', display: 'Progress note' }],
};

describe('evaluateChecklist: revision', () => {
  it('is incomplete without the operative note, naming it and every recommended record', () => {
    expect(evaluateChecklist('revision', [])).toEqual({
      complete: false,
      missingRequired: [{ code: '11504-8', display: 'Surgical operation note' }],
      missingRecommended: [
        { code: '18842-5', display: 'Discharge summary' },
        { code: '46212-7', display: 'Pre-operative photo' },
        { code: '11506-3', display: 'Progress note' },
        IMAGING_MISSING,
      ],
      present: [],
    });
  });

  it('is complete with the operative note alone, still listing the missing recommended records', () => {
    expect(evaluateChecklist('revision', [OPERATIVE, PHOTO])).toEqual({
      complete: true,
      missingRequired: [],
      missingRecommended: [{ code: '18842-5', display: 'Discharge summary' }, { code: '11506-3', display: 'Progress note' }, IMAGING_MISSING],
      present: [
        { code: '11504-8', display: 'Surgical operation note', requirement: 'required', satisfiedBy: '11504-8' },
        { code: '46212-7', display: 'Pre-operative photo', requirement: 'recommended', satisfiedBy: '46212-7' },
      ],
    });
  });

  it('lists everything present when all records are there', () => {
    const result = evaluateChecklist('revision', [OPERATIVE, PHOTO, DISCHARGE, PROGRESS, reportOf(['RAD'])]);
    expect(result.complete).toBe(true);
    expect(result.missingRecommended).toEqual([]);
    expect(result.present.map((p) => [p.code, p.requirement, p.satisfiedBy])).toEqual([
      ['11504-8', 'required', '11504-8'],
      ['18842-5', 'recommended', '18842-5'],
      ['46212-7', 'recommended', '46212-7'],
      ['11506-3', 'recommended', '11506-3'],
      ['18748-4', 'recommended', 'DiagnosticReport:imaging'],
    ]);
  });
});

describe('evaluateChecklist: pathology-review', () => {
  it('is incomplete without a pathology report', () => {
    expect(evaluateChecklist('pathology-review', [PROGRESS])).toEqual({
      complete: false,
      missingRequired: [PATHOLOGY_MISSING],
      missingRecommended: [{ code: 'ImagingStudy', display: 'Slide images' }],
      present: [{ code: '34117-2', display: 'History and physical or progress note', requirement: 'recommended', satisfiedBy: '11506-3' }],
    });
  });

  it.each([
    ['a pathology DocumentReference (LOINC 11526-1)', docOf('11526-1'), '11526-1'],
    ['a DiagnosticReport coded 11526-1 without category', reportOf([], '11526-1'), '11526-1'],
    ['a DiagnosticReport with category SP (v2-0074)', reportOf(['SP']), 'DiagnosticReport:pathology'],
    ['a DiagnosticReport with category LP7839-6 (LOINC part)', reportOf(['LP7839-6']), 'DiagnosticReport:pathology'],
  ])('is satisfied by %s', (_, record, satisfiedBy) => {
    const result = evaluateChecklist('pathology-review', [record]);
    expect(result.complete).toBe(true);
    expect(result.present[0]).toEqual({ code: '11526-1', display: 'Pathology report', requirement: 'required', satisfiedBy });
  });

  it('is not satisfied by an imaging or laboratory report, nor by a DocumentReference with a pathology category', () => {
    const records = [reportOf(['RAD'], '18748-4'), reportOf(['LAB']), { resourceType: 'DocumentReference', loincTypes: [], categories: ['SP'] }];
    expect(evaluateChecklist('pathology-review', records).missingRequired).toEqual([PATHOLOGY_MISSING]);
  });
});

describe('evaluateChecklist: imaging-review', () => {
  it('needs both an imaging report and an ImagingStudy', () => {
    expect(evaluateChecklist('imaging-review', [docOf('18748-4')])).toEqual({
      complete: false,
      missingRequired: [{ code: 'ImagingStudy', display: 'Imaging study' }],
      missingRecommended: [CLINICAL_PICTURE_MISSING],
      present: [{ code: '18748-4', display: 'Imaging report', requirement: 'required', satisfiedBy: '18748-4' }],
    });
    expect(evaluateChecklist('imaging-review', [IMAGING_STUDY]).missingRequired).toEqual([IMAGING_MISSING]);
    expect(evaluateChecklist('imaging-review', [IMAGING_STUDY, reportOf(['LP29684-5'])]).complete).toBe(true);
  });

  it('is complete with the sandbox imaging report and study', () => {
    const doc = { id: 'x', contentType: 'application/pdf', size: 1, sha1Base64: 'AAAA' };
    const records = [describeRecord(makeReport('dr-img', 'imaging', doc)), describeRecord(makeImagingStudy())];
    expect(evaluateChecklist('imaging-review', records)).toMatchObject({ complete: true, missingRequired: [] });
  });
});

describe('evaluateChecklist: kinds whose required record has alternatives', () => {
  it.each(['diagnosis-confirmation', 'treatment-choice', 'pre-procedure'] as const)('%s: H&P or progress note, either satisfies', (kind) => {
    expect(evaluateChecklist(kind, []).missingRequired).toEqual([CLINICAL_PICTURE_MISSING]);
    expect(evaluateChecklist(kind, [HP]).complete).toBe(true);
    expect(evaluateChecklist(kind, [PROGRESS]).complete).toBe(true);
    expect(evaluateChecklist(kind, [DISCHARGE, OPERATIVE]).complete).toBe(false);
  });

  it('complication: progress note or discharge summary', () => {
    expect(evaluateChecklist('complication', []).missingRequired).toEqual([
      { code: '11506-3', display: 'Progress note or discharge summary', alternatives: [{ code: '18842-5', display: 'Discharge summary' }] },
    ]);
    expect(evaluateChecklist('complication', [DISCHARGE]).present[0]).toEqual({
      code: '11506-3',
      display: 'Progress note or discharge summary',
      requirement: 'required',
      satisfiedBy: '18842-5',
    });
  });

  it('a consult note or referral note satisfies no kind', () => {
    for (const kind of KINDS) {
      expect(evaluateChecklist(kind, [docOf(LOINC_DOC.consultNote.code, LOINC_DOC.referralNote.code)]).present).toEqual([]);
    }
  });
});

describe('CHECKLIST', () => {
  it('has at least one required item per kind, and every item at least one alternative', () => {
    for (const kind of KINDS) {
      expect(CHECKLIST[kind].required.length).toBeGreaterThan(0);
      for (const entry of [...CHECKLIST[kind].required, ...CHECKLIST[kind].recommended]) {
        expect(entry.anyOf.length).toBeGreaterThan(0);
        expect(entry.code).toBe(entry.anyOf[0]!.code);
      }
    }
  });

  it('uses only LOINC document types from LOINC_DOC', () => {
    const known = new Set<string>(Object.values(LOINC_DOC).map((d) => d.code));
    for (const kind of KINDS) {
      for (const entry of [...CHECKLIST[kind].required, ...CHECKLIST[kind].recommended]) {
        for (const m of entry.anyOf) if (m.match === 'loinc') expect(known.has(m.code)).toBe(true);
      }
    }
  });
});

describe('describeRecord', () => {
  it('reads the LOINC types of a DocumentReference, ignoring other systems', () => {
    const doc: DocumentReference = {
      resourceType: 'DocumentReference',
      status: 'current',
      type: { coding: [{ system: SYSTEM.loinc, code: '11504-8' }, { system: 'urn:local', code: 'OPNOTE' }] },
      category: [{ coding: [{ system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category', code: 'clinical-note' }] }],
      content: [{ attachment: { url: 'Binary/1' } }],
    };
    expect(describeRecord(doc)).toEqual({ resourceType: 'DocumentReference', loincTypes: ['11504-8'], categories: [] });
  });

  it('reads code and v2-0074 / LOINC categories of a DiagnosticReport (the sandbox pathology report)', () => {
    const report = makeReport('dr-path', 'pathology', { id: 'x', contentType: 'application/pdf', size: 1, sha1Base64: 'AAAA' });
    expect(describeRecord(report)).toEqual({ resourceType: 'DiagnosticReport', loincTypes: ['11526-1'], categories: ['SP'] });
    const usCore: DiagnosticReport = {
      resourceType: 'DiagnosticReport',
      status: 'final',
      code: { text: 'Biopsy' },
      category: [{ coding: [{ system: SYSTEM.loinc, code: 'LP7839-6' }, { system: 'urn:local', code: 'SP' }] }],
    };
    expect(describeRecord(usCore)).toEqual({ resourceType: 'DiagnosticReport', loincTypes: [], categories: ['LP7839-6'] });
  });

  it('describes an ImagingStudy by its type only', () => {
    expect(describeRecord(makeImagingStudy())).toEqual({ resourceType: 'ImagingStudy', loincTypes: [], categories: [] });
  });
});

describe('checklistTable / checklistMarkdown', () => {
  it('renders one row per kind, in KINDS order', () => {
    expect(checklistTable().map((r) => r.kind)).toEqual([...KINDS]);
    expect(checklistTable().find((r) => r.kind === 'revision')).toEqual({
      kind: 'revision',
      kindDisplay: 'Revision after a prior procedure',
      required: 'Surgical operation note (LOINC 11504-8)',
      recommended:
        'Discharge summary (LOINC 18842-5); Pre-operative photo (LOINC 46212-7); Progress note (LOINC 11506-3); ' +
        'Imaging report (LOINC 18748-4 or DiagnosticReport category RAD / LP29684-5)',
    });
  });

  it('renders the table docs/workflow.md shows', () => {
    const page = readFileSync(path.join(import.meta.dirname, '..', '..', 'docs', 'workflow.md'), 'utf8');
    expect(page).toContain(checklistMarkdown());
    const lines = checklistMarkdown().split('\n');
    expect(lines.slice(0, 2)).toEqual(['| Kind | Required | Recommended |', '| --- | --- | --- |']);
    expect(lines).toHaveLength(2 + KINDS.length);
    expect(lines).toContain(
      '| Imaging second read (`imaging-review`) | Imaging report (LOINC 18748-4 or DiagnosticReport category RAD / LP29684-5); ' +
        'Imaging study (ImagingStudy) | History and physical or progress note (LOINC 34117-2 or LOINC 11506-3) |',
    );
    expect(lines).toContain(
      '| Pathology second read (`pathology-review`) | Pathology report (LOINC 11526-1 or DiagnosticReport category SP / LP7839-6) | ' +
        'Slide images (ImagingStudy); History and physical or progress note (LOINC 34117-2 or LOINC 11506-3) |',
    );
  });
});
