/**
 * Referral Bundles written the way a referring EHR builds them: urn:uuid fullUrls
 * referencing each other, absolute references into the EHR, the EHR's own identifier system for
 * its request id, narrative and elements the service does not use, and an extension of the
 * EHR's own. `makeReferralBundle(chart, ehrBaseUrl)` is the FHIR twin of
 * `makeSecondOpinionRequest(FHIR_TWIN_OVERRIDES, chart)` (records named by document only).
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, ClinicalImpression, DocumentReference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { EXTENSION, SYSTEM } from '../../src/fhir/constants.ts';
import { opinionExtensions } from '../../src/opinions/consult-note.ts';
import type { OpinionPoints } from '../../src/opinions/opinion.ts';
import type { ReferralChart } from './referrals.ts';
import type { SeededIds } from './sandbox-ehr/seed.ts';

export const ORG_REGISTRY = 'https://registry.example.org/organizations';
/** The EHR's own identifier system for its orders (placer ids). */
export const EHR_ORDER_SYSTEM = 'urn:oid:1.2.826.0.1.3680043.9.7777.1';
const SNOMED_IMPLANT_COMPLICATION = { system: 'http://snomed.info/sct', code: '428341000124104', display: 'Complication of breast implant' };

/** What `makeSecondOpinionRequest` needs to describe the same referral as `makeReferralBundle`. */
export function jsonTwinOverrides(chart: ReferralChart, requestId: string): Record<string, unknown> {
  const opNote = chart.documents.find((d) => d.key === 'op-note-2024')!.id;
  return { requestId, records: { documents: [{ reference: `DocumentReference/${opNote}`, display: 'Operative note 2024' }] } };
}

export interface BundleParts {
  serviceRequest: ServiceRequest;
  tasks: Task[];
  firstOpinion: ClinicalImpression;
  urls: { serviceRequest: string; tasks: string[]; firstOpinion: string };
}

/** The resources of the referral, for tests to change before `toTransaction`. */
export function referralParts(chart: ReferralChart & Partial<Pick<SeededIds, 'organizations'>>, ehrBaseUrl: string, requestId = `ORD-${randomUUID()}`): BundleParts {
  const opNote = chart.documents.find((d) => d.key === 'op-note-2024')!.id;
  const urls = { serviceRequest: `urn:uuid:${randomUUID()}`, tasks: [`urn:uuid:${randomUUID()}`, `urn:uuid:${randomUUID()}`], firstOpinion: `urn:uuid:${randomUUID()}` };
  const patient = { reference: `${ehrBaseUrl}/Patient/${chart.patientId}`, identifier: { system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }, display: 'Alex Example' };
  const requester = { reference: `Practitioner/${chart.practitionerId}`, display: 'Dr Ingrid Nilsen' };
  const serviceRequest: ServiceRequest = {
    resourceType: 'ServiceRequest',
    meta: { tag: [{ system: 'http://ehr.example/fhir/tags', code: 'outbound-referral' }] },
    text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Second opinion: implant revision</div>' },
    extension: [
      { url: 'http://ehr.example/fhir/StructureDefinition/ehr-routing-flag', valueString: 'queue-7' },
      { url: EXTENSION.reviewType, valueCoding: { system: SYSTEM.reviewType, code: 'records-only', display: 'Records-only desk review' } },
      { url: EXTENSION.blinded, valueBoolean: true },
    ],
    identifier: [
      { type: { coding: [{ system: SYSTEM.v2IdentifierType, code: 'PLAC' }] }, system: EHR_ORDER_SYSTEM, value: requestId },
      { system: 'http://ehr.example/fhir/visit-number', value: 'V-20261204-17' },
    ],
    status: 'active',
    intent: 'order',
    category: [{ coding: [{ system: SYSTEM.snomed, code: '3457005', display: 'Patient referral' }] }, { coding: [{ system: SYSTEM.v2ReferralReason, code: 'S' }] }],
    priority: 'routine',
    code: { coding: [{ system: SYSTEM.kind, code: 'revision' }, { system: SYSTEM.snomed, code: '77406008', display: 'Confirmatory medical consultation' }], text: 'Second opinion' },
    subject: patient,
    encounter: { reference: `${ehrBaseUrl}/Encounter/enc-ignored` },
    authoredOn: '2026-12-04T09:00:00+01:00',
    requester,
    performer: [
      { reference: `${ehrBaseUrl}/Organization/${chart.organizations?.lakeside ?? 'org-2001'}`, identifier: { system: ORG_REGISTRY, value: 'ORG-2001' }, display: 'Lakeside Clinic' },
      { identifier: { system: ORG_REGISTRY, value: 'ORG-2002' }, display: 'Northfield Pathology' },
    ],
    reasonCode: [{ coding: [SNOMED_IMPLANT_COMPLICATION], text: 'Implant complication' }],
    supportingInfo: [
      { reference: urls.firstOpinion, display: 'First opinion' },
      { reference: `Consent/${chart.consentId}` },
      { reference: `${ehrBaseUrl}/DocumentReference/${opNote}`, display: 'Operative note 2024' },
    ],
    note: [{ text: 'Is revision of the left implant advisable, or is conservative management reasonable?', authorString: 'Dr Ingrid Nilsen' }],
  };
  const task = (owner: Task['owner']): Task => ({
    resourceType: 'Task',
    status: 'requested',
    intent: 'order',
    priority: 'routine',
    code: { coding: [{ system: SYSTEM.taskCode, code: 'fulfill' }] },
    description: 'Second opinion requested',
    focus: { reference: urls.serviceRequest },
    for: patient,
    requester,
    owner,
  });
  const tasks = [task(serviceRequest.performer![0]), task({ identifier: { system: ORG_REGISTRY, value: 'ORG-2002' } })];
  const firstOpinion: ClinicalImpression = {
    resourceType: 'ClinicalImpression',
    status: 'completed',
    subject: patient,
    assessor: requester,
    finding: [{ itemCodeableConcept: { coding: [SNOMED_IMPLANT_COMPLICATION] } }],
    summary: 'Revision surgery with implant exchange',
    supportingInfo: [{ reference: `DocumentReference/${chart.firstOpinionNoteId}` }],
  };
  return { serviceRequest, tasks, firstOpinion, urls };
}

/** A transaction Bundle of the parts: ServiceRequest, Tasks, ClinicalImpression (in `order` when given). */
export function toTransaction(parts: BundleParts, order: ('sr' | 't0' | 't1' | 'ci')[] = ['sr', 't0', 't1', 'ci']): Bundle {
  const entries: Record<string, BundleEntry> = {
    sr: { fullUrl: parts.urls.serviceRequest, resource: parts.serviceRequest, request: { method: 'POST', url: 'ServiceRequest' } },
    t0: { fullUrl: parts.urls.tasks[0], resource: parts.tasks[0], request: { method: 'POST', url: 'Task' } },
    t1: { fullUrl: parts.urls.tasks[1], resource: parts.tasks[1], request: { method: 'POST', url: 'Task' } },
    ci: { fullUrl: parts.urls.firstOpinion, resource: parts.firstOpinion, request: { method: 'POST', url: 'ClinicalImpression' } },
  };
  return { resourceType: 'Bundle', type: 'transaction', entry: order.map((k) => entries[k] as BundleEntry) };
}

/**
 * The consult note a clinic contains in the Task it completes over FHIR: LOINC
 * 11488-4, the opinion's points in our extensions, one inline text attachment.
 */
export function containedConsultNote(points: OpinionPoints, attachment: { title: string; text: string }): DocumentReference {
  return {
    resourceType: 'DocumentReference',
    id: 'opinion',
    extension: opinionExtensions(points),
    status: 'current',
    type: { coding: [{ system: 'http://loinc.org', code: '11488-4', display: 'Consult note' }] },
    content: [{ attachment: { contentType: 'text/plain', title: attachment.title, data: Buffer.from(attachment.text).toString('base64') } }],
  };
}

/** `task` completed with `note` contained and named by its `output`. */
export function completedWithNote(task: Task, note: DocumentReference): Task {
  return { ...task, status: 'completed', contained: [note], output: [{ type: { text: 'opinion' }, valueReference: { reference: `#${note.id}` } }] };
}
