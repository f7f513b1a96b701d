import type { IntakeRequest } from '../../src/intake/intake-request.ts';

type IntakeBody = Omit<Partial<IntakeRequest>, 'firstOpinion'> & { firstOpinion?: Partial<NonNullable<IntakeRequest['firstOpinion']>> } & Record<string, unknown>;

let counter = 0;

/** A valid second-opinion request (revision of a breast reconstruction) with overridable fields. */
export function makeSecondOpinionRequest(overrides: IntakeBody = {}): Record<string, unknown> {
  counter++;
  return {
    requestId: `REQ-${Date.now()}-${counter}`,
    patient: { reference: 'Patient/pat-1', identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }], display: 'Alex Example' },
    requester: { reference: 'Practitioner/dr-nilsen', display: 'Dr Ingrid Nilsen' },
    kind: 'revision',
    question: 'Is revision of the left implant advisable, or is conservative management reasonable?',
    reason: [{ system: 'http://snomed.info/sct', code: '428341000124104', display: 'Complication of breast implant' }],
    firstOpinion: {
      diagnosis: [{ system: 'http://snomed.info/sct', code: '428341000124104', display: 'Complication of breast implant' }],
      plan: 'Revision surgery with implant exchange',
      documents: [{ reference: 'DocumentReference/first-opinion-note' }],
    },
    priority: 'routine',
    reviewType: 'records-only',
    consultants: ['lakeside-consults', 'northfield-pathology'],
    records: { documents: [{ reference: 'DocumentReference/op-note-2024' }], search: { type: ['http://loinc.org|11504-8'], since: '2023-01-01' } },
    blinded: true,
    consent: { reference: 'Consent/consent-1' },
    ...overrides,
  };
}
