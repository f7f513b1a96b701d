/**
 * The referral the demo walks through, as the participants would send it: St Olaf Hospital
 * asks two clinics whether a knee revision is advisable (synthetic patient Alex Example, the
 * sandbox EHR's chart); Lakeside Clinic and Northfield Pathology answer. The sandbox gives its
 * records ids of its own, so what names them is built from its seeded ids (`ehr.seeded`).
 */
import type { Opinion } from '../../src/opinions/opinion.ts';
import { seededDocument, type SeededIds } from '../../test/support/sandbox-ehr/seed.ts';

export const REFERRER = 'st-olaf';
export const CONSULTANT_A = 'lakeside-consults';
export const CONSULTANT_B = 'northfield-pathology';
/** The clinic added afterwards for a third opinion (step 17). */
export const CONSULTANT_C = 'riverside-imaging';
export const AUDITOR = 'audit-office';
/** The clinic whose record sets are pushed to its own FHIR server (network file `recordSet: push`). */
export const PUSH_CLINIC = CONSULTANT_A;

/** Short names for the printout. */
export const SHORT_NAMES: Record<string, string> = {
  [REFERRER]: 'St Olaf',
  [CONSULTANT_A]: 'Lakeside',
  [CONSULTANT_B]: 'Northfield',
  [CONSULTANT_C]: 'Riverside',
};

const SNOMED = 'http://snomed.info/sct';
const LOINC = 'http://loinc.org';
const KNEE_OA = { system: SNOMED, code: '239873007', display: 'Osteoarthritis of knee' };

/** A reference to the chart's document `key` with `display`. */
const doc = (chart: SeededIds, key: string, display: string) => ({ reference: `DocumentReference/${seededDocument(chart, key).id}`, display });

/** The records named at intake: the operative note, which a revision needs, is left out on purpose. */
export function initialDocuments(chart: SeededIds): { reference: string; display: string }[] {
  return [doc(chart, 'progress-2024', 'Progress note'), doc(chart, 'discharge-2024', 'Discharge summary'), doc(chart, 'pathology-2024', 'Pathology report')];
}

/** What the referrer supplies once told it is missing. */
export function missingDocument(chart: SeededIds): { reference: string; display: string } {
  return doc(chart, 'op-note-2024', 'Operative note');
}

/** What consultant A asks, and what the referrer answers (with one more document). */
export const INFO_QUESTION = {
  question: 'Was the knee ever aspirated, and is there a history and physical from before the first operation?',
  recordTypes: [{ system: LOINC, code: '34117-2', display: 'History and physical note' }],
};
export function infoAnswer(chart: SeededIds): { text: string; documents: { reference: string; display: string }[] } {
  return { text: 'Never aspirated. The pre-operative history and physical is attached.', documents: [doc(chart, 'hp-2024', 'History and physical')] };
}

/** `POST /second-opinions` body. */
export function secondOpinionRequest(chart: SeededIds, consentId: string): Record<string, unknown> {
  return {
    requestId: `DEMO-${Date.now()}`,
    patient: { reference: `Patient/${chart.patientId}`, identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }], display: 'Alex Example' },
    requester: { reference: `Practitioner/${chart.practitionerId}`, display: 'Dr Ingrid Nilsen' },
    kind: 'revision',
    question: 'Is revision of the right total knee arthroplasty advisable now, or should loosening and infection be worked up first?',
    reason: [KNEE_OA],
    firstOpinion: {
      diagnosis: [KNEE_OA],
      plan: 'Revision arthroplasty of the right knee',
      documents: [doc(chart, 'first-opinion-note', 'Consult note (first opinion)')],
    },
    priority: 'routine',
    reviewType: 'records-only',
    consultants: [CONSULTANT_A, CONSULTANT_B],
    records: { documents: initialDocuments(chart) },
    blinded: true,
    consent: { reference: `Consent/${consentId}` },
  };
}

type OpinionBody = Omit<Opinion, 'attachments' | 'answers'>;

/** Lakeside's opinion (consultant A, after its question was answered). */
export const OPINION_A: OpinionBody = {
  diagnosisAgreement: 'agree',
  planAgreement: 'disagree',
  diagnosis: [KNEE_OA],
  summary: 'Loosening is not proven on these records; revising now is premature.',
  recommendations: [
    { option: 'Aspiration and bone scan first', preferred: true, rationale: 'Confirm loosening and exclude infection before operating', risks: ['Delay of about 2 weeks'], recovery: 'None' },
    { option: 'Revision arthroplasty', preferred: false, risks: ['Infection', 'Stiffness'], recovery: '3 to 6 months' },
  ],
  missingInformation: ['CRP and ESR'],
  followUp: 'Review with the scan and aspiration results.',
};

/** Northfield's opinion (consultant B). */
export const OPINION_B: OpinionBody = {
  diagnosisAgreement: 'agree-with-modifications',
  planAgreement: 'disagree',
  diagnosis: [KNEE_OA],
  summary: 'Chronic synovitis without malignancy; low-grade infection must be excluded before any revision.',
  recommendations: [
    { option: 'Aspiration and bone scan first', preferred: true, rationale: 'Synovial culture decides between one- and two-stage surgery', risks: ['Delay of about 2 weeks'], recovery: 'None' },
    { option: 'Two-stage revision if infection is confirmed', preferred: false, risks: ['Two operations', 'Stiffness'], recovery: '6 months' },
  ],
  missingInformation: ['CRP and ESR', 'Synovial fluid culture'],
  followUp: 'Send the aspirate for culture and cell count.',
};

/** Riverside's opinion (the third one, asked for after the first two). */
export const OPINION_C: OpinionBody = {
  diagnosisAgreement: 'agree',
  planAgreement: 'agree-with-modifications',
  diagnosis: [KNEE_OA],
  summary: 'The radiographs show progressive osteolysis around the tibial component: revision is likely, once infection is excluded.',
  recommendations: [
    { option: 'Aspiration, then revision of the tibial component', preferred: true, rationale: 'Osteolysis is progressing; infection decides one or two stages', risks: ['Infection', 'Stiffness'], recovery: '3 to 6 months' },
    { option: 'Watchful waiting with radiographs every 3 months', preferred: false, risks: ['Bone loss making revision harder'], recovery: 'None' },
  ],
  missingInformation: ['CRP and ESR'],
  followUp: 'Aspirate first; plan the revision with the culture result.',
};
