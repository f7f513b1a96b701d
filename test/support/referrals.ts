import type { IntakeRequest } from '../../src/intake/intake-request.ts';
import type { SeededDocument, SeededIds } from './sandbox-ehr/seed.ts';

type IntakeBody = Omit<Partial<IntakeRequest>, 'firstOpinion'> & { firstOpinion?: Partial<NonNullable<IntakeRequest['firstOpinion']>> } & Record<string, unknown>;

let counter = 0;

/** What a request needs of a sandbox chart: `ehr.seeded`, or `findSandboxChart` for a sandbox in another process. */
export type ReferralChart = Pick<SeededIds, 'patientId' | 'practitionerId' | 'firstOpinionNoteId' | 'consentId'> & { documents: Pick<SeededDocument, 'key' | 'id'>[] };

/** The ids example requests name when no sandbox chart is given (plain example data). */
const EXAMPLE_CHART: Omit<ReferralChart, 'documents'> & { opNoteId: string } = {
  patientId: 'pat-1',
  practitionerId: 'dr-nilsen',
  firstOpinionNoteId: 'first-opinion-note',
  consentId: 'consent-1',
  opNoteId: 'op-note-2024',
};

/**
 * A valid second-opinion request (revision of a breast reconstruction) with overridable fields.
 * With `chart` (a sandbox's `ehr.seeded`) it names that sandbox's patient, practitioner,
 * documents and consent; without, fixed example ids (for tests that talk to no EHR).
 */
export function makeSecondOpinionRequest(overrides: IntakeBody = {}, chart?: ReferralChart): Record<string, unknown> {
  counter++;
  const ids = chart ? { ...chart, opNoteId: chart.documents.find((d) => d.key === 'op-note-2024')!.id } : EXAMPLE_CHART;
  return {
    requestId: `REQ-${Date.now()}-${counter}`,
    patient: { reference: `Patient/${ids.patientId}`, identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }], display: 'Alex Example' },
    requester: { reference: `Practitioner/${ids.practitionerId}`, display: 'Dr Ingrid Nilsen' },
    kind: 'revision',
    question: 'Is revision of the left implant advisable, or is conservative management reasonable?',
    reason: [{ system: 'http://snomed.info/sct', code: '428341000124104', display: 'Complication of breast implant' }],
    firstOpinion: {
      diagnosis: [{ system: 'http://snomed.info/sct', code: '428341000124104', display: 'Complication of breast implant' }],
      plan: 'Revision surgery with implant exchange',
      documents: [{ reference: `DocumentReference/${ids.firstOpinionNoteId}` }],
    },
    priority: 'routine',
    reviewType: 'records-only',
    consultants: ['lakeside-consults', 'northfield-pathology'],
    records: { documents: [{ reference: `DocumentReference/${ids.opNoteId}` }], search: { type: ['http://loinc.org|11504-8'], since: '2023-01-01' } },
    blinded: true,
    consent: { reference: `Consent/${ids.consentId}` },
    ...overrides,
  };
}
