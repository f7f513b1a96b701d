/** A complete opinion body (POST /consults/{taskId}/opinion) for tests and benchmarks: the API's documented example. */
export { EXAMPLE_OPINION } from '../../src/http/api-docs/examples.ts';

/**
 * An opinion on the sandbox patient's breast-implant complication (the example above is about a
 * knee): the one the process-level delivery tests and the soak submit.
 */
export const IMPLANT_OPINION = {
  diagnosisAgreement: 'agree',
  planAgreement: 'agree-with-modifications',
  diagnosis: [{ system: 'http://snomed.info/sct', code: '428341000124104', display: 'Complication of breast implant' }],
  summary: 'Revision is reasonable once capsular contracture is graded.',
  recommendations: [{ option: 'Implant exchange with capsulectomy', preferred: true, rationale: 'Grade IV contracture', risks: ['Infection'], recovery: '6 weeks' }],
  missingInformation: [],
  followUp: 'Review after imaging.',
};
