/**
 * FHIR constants in one place: code systems, identifier systems, extension URLs and
 * profile canonicals. Everything that builds or checks a resource takes its URLs from here.
 *
 * Canonical base of the artefacts authored in `profiles/` (FSH). Changing it means
 * re-running `npm run profiles`.
 */
export const CANONICAL_BASE = 'https://second-opinion.org/fhir';

/** Profiles (StructureDefinitions compiled from `profiles/*.fsh`). */
export const PROFILE = {
  serviceRequest: `${CANONICAL_BASE}/StructureDefinition/second-opinion-request`,
  task: `${CANONICAL_BASE}/StructureDefinition/second-opinion-task`,
  recordSet: `${CANONICAL_BASE}/StructureDefinition/record-set-bundle`,
  consultNote: `${CANONICAL_BASE}/StructureDefinition/consult-note`,
  firstOpinion: `${CANONICAL_BASE}/StructureDefinition/first-opinion`,
  /** A follow-up question to a consultant after its opinion, or the consultant's answer. */
  followUpCommunication: `${CANONICAL_BASE}/StructureDefinition/follow-up-communication`,
  /** The MeasureReport of `$evaluate-measure` on the concordance Measure. */
  concordanceReport: `${CANONICAL_BASE}/StructureDefinition/concordance-measure-report`,
} as const;

/** The Measure this service publishes (an FSH Instance in profiles/, served with the conformance resources). */
export const MEASURE = {
  /** Second-opinion concordance: how often opinions change the diagnosis or the plan. */
  concordance: `${CANONICAL_BASE}/Measure/second-opinion-concordance`,
} as const;

/** Extensions defined by this service. */
export const EXTENSION = {
  /** ServiceRequest: records-only | virtual | in-person (valueCoding from REVIEW_TYPE_SYSTEM). */
  reviewType: `${CANONICAL_BASE}/StructureDefinition/review-type`,
  /** ServiceRequest: the first opinion is withheld from consultants until they commit their own (valueBoolean). */
  blinded: `${CANONICAL_BASE}/StructureDefinition/blinded`,
  /** DocumentReference (consult note): the structured second opinion (complex; see extensions.fsh). */
  secondOpinion: `${CANONICAL_BASE}/StructureDefinition/second-opinion`,
  /** DocumentReference (consult note): one option of the opinion, in order (complex; see extensions.fsh). */
  secondOpinionOption: `${CANONICAL_BASE}/StructureDefinition/second-opinion-option`,
  /** Communication (follow-up question): when the consultant's answer is due (valueDateTime). */
  followUpDue: `${CANONICAL_BASE}/StructureDefinition/follow-up-due`,
  /** AuditEvent: how many identical reads one coalesced AuditEvent records (valuePositiveInt; AuditEvent.period spans them). */
  auditReadCount: `${CANONICAL_BASE}/StructureDefinition/audit-read-count`,
  /** DocumentReference (consult note): how the opinion compares with the first one, set by the service (complex: diagnosis, plan). */
  concordance: `${CANONICAL_BASE}/StructureDefinition/concordance`,
  /** ServiceRequest.note: the note is one of the referral's questions; valueCoding says who asked it (SYSTEM.questionAsker). */
  referralQuestion: `${CANONICAL_BASE}/StructureDefinition/referral-question`,
  /** DocumentReference (consult note): the answer to one referral question, by its index (complex; see extensions.fsh). */
  secondOpinionAnswer: `${CANONICAL_BASE}/StructureDefinition/second-opinion-answer`,
} as const;

/** Code systems defined by this service (see `profiles/input/fsh/terminology.fsh`). */
export const SYSTEM = {
  kind: `${CANONICAL_BASE}/CodeSystem/second-opinion-kind`,
  reviewType: `${CANONICAL_BASE}/CodeSystem/review-type`,
  taskBusinessStatus: `${CANONICAL_BASE}/CodeSystem/task-business-status`,
  opinionAgreement: `${CANONICAL_BASE}/CodeSystem/opinion-agreement`,
  /** Concordance of an opinion's diagnosis with the first opinion's (concordance.fsh). */
  diagnosisConcordance: `${CANONICAL_BASE}/CodeSystem/diagnosis-concordance`,
  /** Concordance of an opinion's plan with the first opinion's (concordance.fsh). */
  planConcordance: `${CANONICAL_BASE}/CodeSystem/plan-concordance`,
  /** Who asked a referral question: patient | physician. */
  questionAsker: `${CANONICAL_BASE}/CodeSystem/question-asker`,
  /** Identifiers of consult notes this service made (the post-back's conditional-create key). */
  consultNoteId: `${CANONICAL_BASE}/NamingSystem/consult-note-id`,
  /** A participant's roles in the network (Organization.type of the FHIR directory). */
  participantRole: `${CANONICAL_BASE}/CodeSystem/participant-role`,
  /** Identifiers of this service's record copies, on a clinic's server (the record-set push's conditional-create key; value: the copy's id here). */
  recordCopyId: `${CANONICAL_BASE}/NamingSystem/record-copy-id`,
  /** Identifiers of this service's referrals, on a clinic's server (value: the ServiceRequest's id here). */
  serviceRequestId: `${CANONICAL_BASE}/NamingSystem/service-request-id`,
  /** Identifiers of this service's Tasks, on a clinic's server (value: the Task's id here). */
  taskId: `${CANONICAL_BASE}/NamingSystem/task-id`,
  /** Identifiers of follow-up questions and answers (value: the Communication's id here; the post-back's conditional-create key). */
  followUpId: `${CANONICAL_BASE}/NamingSystem/follow-up-id`,
  /** External code systems. */
  snomed: 'http://snomed.info/sct',
  loinc: 'http://loinc.org',
  v2ReferralReason: 'http://terminology.hl7.org/CodeSystem/v2-0336',
  v2IdentifierType: 'http://terminology.hl7.org/CodeSystem/v2-0203',
  taskCode: 'http://hl7.org/fhir/CodeSystem/task-code',
  dataOperation: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation',
  provenanceParticipantType: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type',
  endpointConnectionType: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type',
  endpointPayloadType: 'http://terminology.hl7.org/CodeSystem/endpoint-payload-type',
} as const;

/** Where the service names itself (Provenance agents, identifier systems). */
export const SERVICE_DEVICE_DISPLAY = 'Second-opinion referral service';

/**
 * Identifier system of a referrer's own request ids (the placer identifier). One system
 * per participant, so two referrers may use the same request id without colliding.
 */
export function placerIdentifierSystem(participantId: string): string {
  return `${CANONICAL_BASE}/NamingSystem/placer-request-id/${participantId}`;
}

export const KINDS = [
  'diagnosis-confirmation',
  'treatment-choice',
  'pre-procedure',
  'revision',
  'complication',
  'pathology-review',
  'imaging-review',
] as const;
export type Kind = (typeof KINDS)[number];

export const KIND_DISPLAY: Record<Kind, string> = {
  'diagnosis-confirmation': 'Diagnosis confirmation',
  'treatment-choice': 'Treatment choice',
  'pre-procedure': 'Pre-procedure second opinion',
  revision: 'Revision after a prior procedure',
  complication: 'Complication review',
  'pathology-review': 'Pathology second read',
  'imaging-review': 'Imaging second read',
};

export const REVIEW_TYPES = ['records-only', 'virtual', 'in-person'] as const;
export type ReviewType = (typeof REVIEW_TYPES)[number];

export const REVIEW_TYPE_DISPLAY: Record<ReviewType, string> = {
  'records-only': 'Records-only desk review',
  virtual: 'Virtual visit',
  'in-person': 'In-person re-evaluation',
};

/** Request priorities accepted at intake; `stat` is refused (emergencies must not wait). */
export const PRIORITIES = ['routine', 'urgent', 'asap', 'stat'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Diagnosis concordance classes (CodeSystem diagnosis-concordance; src/concordance/classify.ts says when each applies). */
export const DIAGNOSIS_CONCORDANCE = {
  concordant: 'Concordant',
  'minor-discrepancy': 'Minor discrepancy',
  'major-discrepancy': 'Major discrepancy',
} as const;
export type DiagnosisConcordance = keyof typeof DIAGNOSIS_CONCORDANCE;

/** Plan concordance classes (CodeSystem plan-concordance). */
export const PLAN_CONCORDANCE = {
  unchanged: 'Unchanged',
  modified: 'Modified',
  changed: 'Changed',
} as const;
export type PlanConcordance = keyof typeof PLAN_CONCORDANCE;

/** Task.businessStatus codes: the finer steps inside the R4 Task status. */
export const BUSINESS_STATUS = {
  'records-pending': 'Record set not yet assembled',
  'awaiting-records': 'Awaiting required records',
  'awaiting-consent': 'Awaiting patient consent to disclose',
  'records-ready': 'Record set ready for the consultant',
  'records-failed': 'Record set could not be assembled',
  'information-requested': 'Consultant requested more information',
  'cancellation-requested': 'Referrer requested cancellation',
  'opinion-delivered': 'Opinion delivered to the referring EHR',
  'delivery-failed': 'Opinion could not be delivered',
  overdue: 'Past the due date',
} as const;
export type BusinessStatus = keyof typeof BUSINESS_STATUS;

/** Organization.type of the FHIR directory: a participant's roles (CodeSystem participant-role, terminology.fsh). */
export const PARTICIPANT_ROLE_DISPLAY = {
  referrer: 'Referrer',
  consultant: 'Consulting clinic',
  physician: 'Primary physician',
  auditor: 'Auditor',
  admin: 'Administrator',
  operator: 'Operator',
} as const;

/** Who asked a referral question (CodeSystem question-asker, terminology.fsh). */
export const QUESTION_ASKER_DISPLAY = { patient: 'Patient', physician: 'Physician' } as const;

export const REFERRAL_CATEGORY = { system: SYSTEM.snomed, code: '3457005', display: 'Patient referral' } as const;
export const SECOND_OPINION_REASON = { system: SYSTEM.v2ReferralReason, code: 'S', display: 'Second Opinion' } as const;
export const TASK_CODE_FULFILL = { system: SYSTEM.taskCode, code: 'fulfill', display: 'Fulfill the focal request' } as const;

/** LOINC document types used across the service. */
export const LOINC_DOC = {
  operativeNote: { code: '11504-8', display: 'Surgical operation note' },
  pathology: { code: '11526-1', display: 'Pathology study' },
  imaging: { code: '18748-4', display: 'Diagnostic imaging study' },
  preOperativePhoto: { code: '46212-7', display: 'Pre-operative photo' },
  dischargeSummary: { code: '18842-5', display: 'Discharge summary' },
  progressNote: { code: '11506-3', display: 'Progress note' },
  historyAndPhysical: { code: '34117-2', display: 'History and physical note' },
  consultNote: { code: '11488-4', display: 'Consult note' },
  referralNote: { code: '57133-1', display: 'Referral note' },
} as const;

export const FHIR_JSON = 'application/fhir+json';

/** Record-set checklist codes: report categories besides the LOINC document types. */
export const REPORT_CATEGORY = {
  /** HL7 v2 table 0074 "Diagnostic Service Section ID" (the R4 DiagnosticReport.category example value set). */
  v2System: 'http://terminology.hl7.org/CodeSystem/v2-0074',
  pathologyV2: 'SP',
  radiologyV2: 'RAD',
  /** LOINC parts used by US Core for DiagnosticReport.category. */
  pathologyLoinc: 'LP7839-6',
  radiologyLoinc: 'LP29684-5',
} as const;

/** Consent evaluation: R4 Consent code systems. */
export const CONSENT_SYSTEM = {
  participationType: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType',
  consentScope: 'http://terminology.hl7.org/CodeSystem/consentscope',
  consentAction: 'http://terminology.hl7.org/CodeSystem/consentaction',
  actReason: 'http://terminology.hl7.org/CodeSystem/v3-ActReason',
} as const;

/** The purpose of every disclosure this service makes: treatment (v3-ActReason TREAT). */
export const PURPOSE_TREATMENT = { system: CONSENT_SYSTEM.actReason, code: 'TREAT', display: 'treatment' } as const;

/**
 * AuditEvent code systems (R4 AuditEvent, IHE Basic Audit Log Patterns).
 * @see https://hl7.org/fhir/R4/auditevent.html
 * @see https://profiles.ihe.net/ITI/BALP/
 */
export const AUDIT_SYSTEM = {
  eventType: 'http://terminology.hl7.org/CodeSystem/audit-event-type',
  dicom: 'http://dicom.nema.org/resources/ontology/DCM',
  restfulInteraction: 'http://hl7.org/fhir/restful-interaction',
  lifecycle: 'http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle',
  entityType: 'http://terminology.hl7.org/CodeSystem/audit-entity-type',
  objectRole: 'http://terminology.hl7.org/CodeSystem/object-role',
  sourceType: 'http://terminology.hl7.org/CodeSystem/security-source-type',
  participationType: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType',
  balpEntityType: 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType',
} as const;

/** Identifier system of the SMART client ids registered with this service (AuditEvent.agent.who). */
export const CLIENT_ID_SYSTEM = `${CANONICAL_BASE}/NamingSystem/client-id`;
/** Identifier system of the network participant ids (AuditEvent.agent.who of an organization). */
export const PARTICIPANT_ID_SYSTEM = `${CANONICAL_BASE}/NamingSystem/participant-id`;
