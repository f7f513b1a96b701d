/**
 * Example request bodies of the JSON API, in one place: the OpenAPI document (openapi.ts) shows
 * them, and the tests send them (test/support/referrals.ts and opinions.ts build on them), so an
 * example that stops being accepted fails a test. test/openapi.test.ts also checks each one
 * against its zod schema and against the JSON Schema in the document.
 */

/** `POST /second-opinions`: a revision of a breast reconstruction, asked of two clinics. */
export const EXAMPLE_INTAKE_REQUEST = {
  requestId: 'REQ-2024-0042',
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
};

/** `POST /consults/{taskId}/opinion`: a complete opinion. */
export const EXAMPLE_OPINION = {
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
};

/** `POST /second-opinions/{id}/records`. */
export const EXAMPLE_ADD_RECORDS = { documents: [{ reference: 'DocumentReference/discharge-2024', display: 'Discharge summary' }] };

/** `POST /second-opinions/{id}/consultants`. */
export const EXAMPLE_ADD_CONSULTANTS = { consultants: ['riverside-imaging'], consent: { reference: 'Consent/consent-1' } };

/** `POST /second-opinions/{id}/cancel`. */
export const EXAMPLE_CANCEL = { reason: 'The patient chose to continue with the first plan' };

/** `POST /second-opinions/{id}/info`: the referrer answers a clinic's request for information. */
export const EXAMPLE_INFO_ANSWER = { text: 'The implant is a 350 cc textured silicone implant, placed in 2019.', documents: [{ reference: 'DocumentReference/implant-record' }] };

/** `POST /second-opinions/{id}/consent-withdrawal`: for one clinic (leave `consultants` out for all). */
export const EXAMPLE_CONSENT_WITHDRAWAL = { consultants: ['northfield-pathology'], reason: 'the patient withdrew consent to disclose the records to this clinic' };

/** `POST /second-opinions/{id}/consultants/{participant}/questions`. */
export const EXAMPLE_FOLLOW_UP_QUESTION = { text: 'Would you still advise against revision if the bone scan is negative?' };

/** `POST /consults/{taskId}/answers` (`question` is the question's Communication id, as the worklist lists it). */
export const EXAMPLE_FOLLOW_UP_ANSWER = { question: 'c0a8012e-follow-up-1', text: 'Yes: with a negative scan, watchful waiting remains the better option.' };

/** `POST /consults/{taskId}/decline`. */
export const EXAMPLE_DECLINE = { reason: 'Outside our specialty' };

/** `POST /consults/{taskId}/request-info`. */
export const EXAMPLE_REQUEST_INFO = { question: 'Which implant was used, and when was it placed?', recordTypes: [{ system: 'http://loinc.org', code: '11504-8', display: 'Surgical operation note' }] };

/**
 * The refusal of EXAMPLE_INTAKE_REQUEST with `priority: 'soon'` and no consultants, as the service
 * answers it (400): one issue per field, each named in `expression` (test/openapi.test.ts sends it).
 */
export const EXAMPLE_OPERATION_OUTCOME = {
  resourceType: 'OperationOutcome',
  issue: [
    { severity: 'error', code: 'value', details: { text: 'priority: Invalid option: expected one of "routine"|"urgent"|"asap"|"stat"' }, expression: ['priority'] },
    { severity: 'error', code: 'value', details: { text: 'consultants: name at least one consultant' }, expression: ['consultants'] },
  ],
};
