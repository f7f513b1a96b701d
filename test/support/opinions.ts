/** A complete opinion body (POST /consults/{taskId}/opinion) for tests and benchmarks. */
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
