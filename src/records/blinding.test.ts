import type { DiagnosticReport, DocumentReference, ImagingStudy } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { LOINC_DOC, SYSTEM } from '../fhir/constants.ts';
import { partitionForBlinding, type BlindingEntry } from './blinding.ts';

const EHR = 'https://ehr.st-olaf.example/fhir/R4';

function document(id: string, loinc: { code: string; display: string }): DocumentReference {
  return {
    resourceType: 'DocumentReference',
    id,
    status: 'current',
    type: { coding: [{ system: SYSTEM.loinc, code: loinc.code, display: loinc.display }] },
    content: [{ attachment: { contentType: 'application/pdf', url: `Binary/${id}` } }],
  };
}

const operativeNote: BlindingEntry = { resource: document('op-1', LOINC_DOC.operativeNote), sourceReference: `${EHR}/DocumentReference/op-1` };
const progressNote: BlindingEntry = { resource: document('prog-1', LOINC_DOC.progressNote), sourceReference: 'DocumentReference/prog-1' };
const firstOpinionLetter: BlindingEntry = {
  resource: document('letter-1', LOINC_DOC.referralNote),
  sourceReference: 'DocumentReference/letter-1/_history/3',
};
const olderConsultNote: BlindingEntry = { resource: document('consult-0', LOINC_DOC.consultNote), sourceReference: `${EHR}/DocumentReference/consult-0` };
const study: BlindingEntry = {
  resource: { resourceType: 'ImagingStudy', id: 'img-1', status: 'available', subject: { reference: 'Patient/pat-1' } } satisfies ImagingStudy,
  sourceReference: 'ImagingStudy/img-1',
};
const consultReport: BlindingEntry = {
  resource: {
    resourceType: 'DiagnosticReport',
    id: 'dr-consult',
    status: 'final',
    code: { coding: [{ system: SYSTEM.loinc, code: LOINC_DOC.consultNote.code }] },
  } satisfies DiagnosticReport,
  sourceReference: 'DiagnosticReport/dr-consult',
};

const all = [operativeNote, progressNote, firstOpinionLetter, olderConsultNote, study];

describe('partitionForBlinding', () => {
  it('discloses everything and withholds nothing when the referral is not blinded', () => {
    expect(partitionForBlinding(all, { blinded: false, firstOpinionReferences: [`${EHR}/DocumentReference/letter-1`] })).toEqual({
      disclosed: all,
      withheld: [],
    });
  });

  it('withholds the first-opinion documents and every consult note when blinded, keeping input order', () => {
    expect(partitionForBlinding(all, { blinded: true, firstOpinionReferences: [`${EHR}/DocumentReference/letter-1`] })).toEqual({
      disclosed: [operativeNote, progressNote, study],
      withheld: [
        { entry: firstOpinionLetter, reason: 'first-opinion-document' },
        { entry: olderConsultNote, reason: 'consult-note' },
      ],
    });
  });

  it('names a consult note that is also a first-opinion document as first-opinion-document', () => {
    const result = partitionForBlinding([olderConsultNote], { blinded: true, firstOpinionReferences: ['DocumentReference/consult-0'] });
    expect(result).toEqual({ disclosed: [], withheld: [{ entry: olderConsultNote, reason: 'first-opinion-document' }] });
  });

  it('matches first-opinion references relative to absolute, absolute to relative, and across _history versions', () => {
    const relativeToAbsolute = partitionForBlinding([operativeNote], { blinded: true, firstOpinionReferences: ['DocumentReference/op-1'] });
    expect(relativeToAbsolute.withheld).toEqual([{ entry: operativeNote, reason: 'first-opinion-document' }]);
    const absoluteToRelative = partitionForBlinding([progressNote], {
      blinded: true,
      firstOpinionReferences: [`${EHR}/DocumentReference/prog-1/_history/2`],
    });
    expect(absoluteToRelative.withheld).toEqual([{ entry: progressNote, reason: 'first-opinion-document' }]);
  });

  it('does not withhold a document of the same id on another server, nor of another type', () => {
    const result = partitionForBlinding([operativeNote, study], {
      blinded: true,
      firstOpinionReferences: ['https://other-ehr.example/fhir/DocumentReference/op-1', 'DocumentReference/img-1'],
    });
    expect(result).toEqual({ disclosed: [operativeNote, study], withheld: [] });
  });

  it('withholds a DiagnosticReport coded as a consult note', () => {
    expect(partitionForBlinding([consultReport], { blinded: true, firstOpinionReferences: [] })).toEqual({
      disclosed: [],
      withheld: [{ entry: consultReport, reason: 'consult-note' }],
    });
  });

  it('ignores a consult-note code from another system than LOINC', () => {
    const local: BlindingEntry = {
      resource: { ...document('local-1', LOINC_DOC.progressNote), type: { coding: [{ system: 'urn:local', code: '11488-4' }] } },
      sourceReference: 'DocumentReference/local-1',
    };
    expect(partitionForBlinding([local], { blinded: true, firstOpinionReferences: [] })).toEqual({ disclosed: [local], withheld: [] });
  });

  it('returns empty partitions for no records, and carries extra fields of the entries through', () => {
    expect(partitionForBlinding([], { blinded: true, firstOpinionReferences: ['DocumentReference/x'] })).toEqual({ disclosed: [], withheld: [] });
    const tagged = { ...olderConsultNote, blobId: 'sha256-abc' };
    const result = partitionForBlinding([tagged], { blinded: true, firstOpinionReferences: [] });
    expect(result.withheld[0]?.entry.blobId).toBe('sha256-abc');
  });
});
