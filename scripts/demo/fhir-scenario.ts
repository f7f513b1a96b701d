/**
 * The second referral of the demo, FHIR only, as the participants' systems would write it: St
 * Olaf's EHR asks Northfield Pathology for a second read of the synovial biopsy with a
 * transaction Bundle (urn:uuid references between its entries, records and consent referenced
 * on the EHR, the clinic named by its registry identifier, the kind by a standard SNOMED CT
 * code); Northfield's system subscribes to its Tasks (id-only) and completes its Task with a
 * contained consult note. Ids on the sandbox come from its seeded chart (`ehr.seeded`).
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, ClinicalImpression, Extension, ServiceRequest, Subscription, Task } from '@medplum/fhirtypes';
import { EXTENSION, SYSTEM } from '../../src/fhir/constants.ts';
import type { OpinionPoints } from '../../src/opinions/opinion.ts';
import { BACKPORT_EXTENSION, TASK_TOPIC } from '../../src/subscriptions/backport.ts';
import { completedWithNote, containedConsultNote, EHR_ORDER_SYSTEM, ORG_REGISTRY } from '../../test/support/fhir-referrals.ts';
import { seededDocument, type SeededIds } from '../../test/support/sandbox-ehr/seed.ts';
import { CONSULTANT_B } from './scenario.ts';

/** The clinic that works the FHIR-only referral. */
export const FHIR_CONSULTANT = CONSULTANT_B;
/** Its Organization as our Tasks name it, and its identifier in the organization registry. */
export const FHIR_CONSULTANT_ORGANIZATION = 'Organization/northfield-pathology';
const FHIR_CONSULTANT_IDENTIFIER = { system: ORG_REGISTRY, value: 'ORG-2002' };

const SNOMED = 'http://snomed.info/sct';
const KNEE_OA = { system: SNOMED, code: '239873007', display: 'Osteoarthritis of knee' };
/** SNOMED CT "Histopathology test (procedure)": the standard code the service takes for a pathology second read. */
export const HISTOPATHOLOGY = { system: SNOMED, code: '252416005', display: 'Histopathology test' };

export const FHIR_QUESTION = 'Second read of the synovial biopsy, please: is this chronic synovitis of osteoarthritis only, or is low-grade infection of the prosthesis possible?';

export interface ReferralTransaction {
  bundle: Bundle;
  requestId: string;
  /** The fullUrls the EHR gave its entries. */
  urls: { serviceRequest: string; task: string; firstOpinion: string };
}

/** The referral as St Olaf's EHR sends it to `POST /fhir`. */
export function referralTransaction(chart: SeededIds, ehrBaseUrl: string, consentId: string): ReferralTransaction {
  const requestId = `ORD-DEMO-${Date.now()}`;
  const urls = { serviceRequest: `urn:uuid:${randomUUID()}`, task: `urn:uuid:${randomUUID()}`, firstOpinion: `urn:uuid:${randomUUID()}` };
  const patient = { reference: `${ehrBaseUrl}/Patient/${chart.patientId}`, identifier: { system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }, display: 'Alex Example' };
  const requester = { reference: `Practitioner/${chart.practitionerId}`, display: 'Dr Ingrid Nilsen' };
  const onEhr = (key: string, display: string) => ({ reference: `${ehrBaseUrl}/DocumentReference/${seededDocument(chart, key).id}`, display });
  const northfield = { identifier: FHIR_CONSULTANT_IDENTIFIER, display: 'Northfield Pathology' };

  const serviceRequest: ServiceRequest = {
    resourceType: 'ServiceRequest',
    extension: [{ url: EXTENSION.reviewType, valueCoding: { system: SYSTEM.reviewType, code: 'records-only', display: 'Records-only desk review' } }],
    identifier: [{ type: { coding: [{ system: SYSTEM.v2IdentifierType, code: 'PLAC' }] }, system: EHR_ORDER_SYSTEM, value: requestId }],
    status: 'active',
    intent: 'order',
    category: [{ coding: [{ system: SNOMED, code: '3457005', display: 'Patient referral' }] }, { coding: [{ system: SYSTEM.v2ReferralReason, code: 'S' }] }],
    priority: 'routine',
    code: { coding: [HISTOPATHOLOGY], text: 'Pathology second opinion' },
    subject: patient,
    authoredOn: new Date().toISOString(),
    requester,
    performer: [northfield],
    reasonCode: [{ coding: [KNEE_OA] }],
    supportingInfo: [
      { reference: urls.firstOpinion, display: 'First read (St Olaf pathology)' },
      { reference: `Consent/${consentId}` },
      onEhr('pathology-2024', 'Pathology report'),
      onEhr('progress-2024', 'Progress note'),
    ],
    note: [{ text: FHIR_QUESTION }],
  };
  const task: Task = {
    resourceType: 'Task',
    status: 'requested',
    intent: 'order',
    priority: 'routine',
    code: { coding: [{ system: SYSTEM.taskCode, code: 'fulfill' }] },
    focus: { reference: urls.serviceRequest },
    for: patient,
    requester,
    owner: northfield,
  };
  const firstOpinion: ClinicalImpression = {
    resourceType: 'ClinicalImpression',
    status: 'completed',
    subject: patient,
    assessor: requester,
    finding: [{ itemCodeableConcept: { coding: [KNEE_OA] } }],
    summary: 'Chronic synovitis of osteoarthritis, no infection: proceed with the revision',
  };
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: urls.serviceRequest, resource: serviceRequest, request: { method: 'POST', url: 'ServiceRequest', ifNoneExist: `identifier=${EHR_ORDER_SYSTEM}|${requestId}` } },
      { fullUrl: urls.task, resource: task, request: { method: 'POST', url: 'Task' } },
      { fullUrl: urls.firstOpinion, resource: firstOpinion, request: { method: 'POST', url: 'ClinicalImpression' } },
    ],
  };
  return { bundle, requestId, urls };
}

/** Northfield's Subscription to its consult Tasks: id-only notifications to its own system. */
export function taskSubscription(endpoint: string): Subscription {
  return {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'Our consult Tasks at the second-opinion service',
    criteria: TASK_TOPIC,
    _criteria: { extension: [{ url: BACKPORT_EXTENSION.filterCriteria, valueString: `Task?owner=${FHIR_CONSULTANT_ORGANIZATION}` }] },
    channel: {
      type: 'rest-hook',
      endpoint,
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: BACKPORT_EXTENSION.payloadContent, valueCode: 'id-only' }] },
      header: ['Authorization: Bearer northfield-receiver-token'],
    },
  } as Subscription & { _criteria: { extension: Extension[] } };
}

/** Northfield's read of the biopsy. */
export const OPINION_FHIR: OpinionPoints = {
  diagnosisAgreement: 'agree-with-modifications',
  planAgreement: 'disagree',
  diagnosis: [KNEE_OA],
  summary: 'Chronic synovitis of osteoarthritis, but with focal neutrophils (up to 6 per high-power field): low-grade infection is not excluded.',
  recommendations: [
    { option: 'Synovial fluid culture and cell count before any revision', preferred: true, rationale: 'Decides between one- and two-stage revision', risks: ['Delay of about 2 weeks'], recovery: 'None' },
    { option: 'Revision as planned', preferred: false, risks: ['Reinfection if infection is missed'], recovery: '3 to 6 months' },
  ],
  missingInformation: ['Synovial fluid culture'],
  followUp: 'Send the aspirate to us for a combined read with the biopsy.',
  answers: [],
};

/**
 * The Task as Northfield completes it: status `completed`, `output` naming the
 * contained consult note (LOINC 11488-4, the opinion's points in our extensions, the
 * pathologist's worksheet as an inline attachment).
 */
export function completedTask(task: Task): Task {
  return completedWithNote(task, containedConsultNote(OPINION_FHIR, { title: 'Pathology worksheet', text: 'Synovium: chronic synovitis, focal neutrophils up to 6/HPF. No malignancy.' }));
}
