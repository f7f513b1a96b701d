import { EXAMPLE_INTAKE_REQUEST } from '../../src/http/api-docs/examples.ts';
import type { IntakeRequest } from '../../src/intake/intake-request.ts';
import type { SeededDocument, SeededIds } from './sandbox-ehr/seed.ts';

type IntakeBody = Omit<Partial<IntakeRequest>, 'firstOpinion'> & { firstOpinion?: Partial<NonNullable<IntakeRequest['firstOpinion']>> } & Record<string, unknown>;

let counter = 0;

/** What a request needs of a sandbox chart: `ehr.seeded`, or `findSandboxChart` for a sandbox in another process. */
export type ReferralChart = Pick<SeededIds, 'patientId' | 'practitionerId' | 'firstOpinionNoteId' | 'consentId'> & { documents: Pick<SeededDocument, 'key' | 'id'>[] };

/** The ids example requests name when no sandbox chart is given (those of the API's documented example). */
const EXAMPLE_CHART: Omit<ReferralChart, 'documents'> & { opNoteId: string } = {
  patientId: 'pat-1',
  practitionerId: 'dr-nilsen',
  firstOpinionNoteId: 'first-opinion-note',
  consentId: 'consent-1',
  opNoteId: 'op-note-2024',
};

/**
 * A valid second-opinion request (the API's documented example, EXAMPLE_INTAKE_REQUEST) with overridable fields.
 * With `chart` (a sandbox's `ehr.seeded`) it names that sandbox's patient, practitioner,
 * documents and consent; without, fixed example ids (for tests that talk to no EHR).
 */
export function makeSecondOpinionRequest(overrides: IntakeBody = {}, chart?: ReferralChart): Record<string, unknown> {
  counter++;
  const ids = chart ? { ...chart, opNoteId: chart.documents.find((d) => d.key === 'op-note-2024')!.id } : EXAMPLE_CHART;
  const example = structuredClone(EXAMPLE_INTAKE_REQUEST);
  return {
    ...example,
    requestId: `REQ-${Date.now()}-${counter}`,
    patient: { ...example.patient, reference: `Patient/${ids.patientId}` },
    requester: { ...example.requester, reference: `Practitioner/${ids.practitionerId}` },
    firstOpinion: { ...example.firstOpinion, documents: [{ reference: `DocumentReference/${ids.firstOpinionNoteId}` }] },
    records: { ...example.records, documents: [{ reference: `DocumentReference/${ids.opNoteId}` }] },
    consent: { reference: `Consent/${ids.consentId}` },
    ...overrides,
  };
}
