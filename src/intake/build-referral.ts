import type { ClinicalImpression, Coding, Organization, Patient, Practitioner, PractitionerRole, Provenance, Reference, ServiceRequest, Task } from '@medplum/fhirtypes';
import {
  EXTENSION,
  KIND_DISPLAY,
  PROFILE,
  REFERRAL_CATEGORY,
  REVIEW_TYPE_DISPLAY,
  SECOND_OPINION_REASON,
  SYSTEM,
  TASK_CODE_FULFILL,
  placerIdentifierSystem,
} from '../fhir/constants.ts';
import { businessStatus } from '../fhir/business-status.ts';
import { absoluteReference, parseResourceReference } from '../fhir/references.ts';
import type { IntakeRequest, RecordType } from './intake-request.ts';
import { questionNotes } from './referral-questions.ts';

/** A participant as the builders need it (see network/). */
export interface ParticipantRef {
  id: string;
  name: string;
  organization: { reference: string; display?: string };
}

export interface ReferralIds {
  serviceRequest: string;
  /** One per consultant, in the order of `input.consultants`. */
  tasks: string[];
  firstOpinion?: string;
  provenance: string;
}

export interface ReferralInput {
  request: Omit<IntakeRequest, 'priority'> & { priority: 'routine' | 'urgent' | 'asap' };
  referrer: ParticipantRef;
  /** FHIR base URL of the referrer's EHR: relative references in the request resolve against it. */
  referrerBaseUrl: string;
  /** In the order of `request.consultants`. */
  consultants: ParticipantRef[];
  ids: ReferralIds;
  now: Date;
  /** Task due date (FHIR dateTime). */
  due: string;
}

export interface Referral {
  serviceRequest: ServiceRequest;
  tasks: Task[];
  firstOpinion?: ClinicalImpression;
  provenance: Provenance;
}

/**
 * Builds the resources of one referral (docs/fhir.md, "FHIR model"): the ServiceRequest, one
 * Task per consultant, the first opinion as a ClinicalImpression (kept apart so a blinded
 * referral can withhold it) and the Provenance of the intake. Pure: ids and clock come in.
 */
export function buildReferral(input: ReferralInput): Referral {
  const { request, referrer, referrerBaseUrl, consultants, ids, now, due } = input;
  const authoredOn = now.toISOString();
  const abs = (ref: string) => absoluteReference(referrerBaseUrl, ref);

  const subject: Reference<Patient> = {
    reference: abs(request.patient.reference),
    ...(request.patient.identifier[0] ? { identifier: request.patient.identifier[0] } : {}),
    ...(request.patient.display ? { display: request.patient.display } : {}),
  };
  const requester: Reference<Practitioner | PractitionerRole> = { reference: abs(request.requester.reference), display: request.requester.display };
  const srRef = `ServiceRequest/${ids.serviceRequest}`;

  let firstOpinion: ClinicalImpression | undefined;
  if (request.firstOpinion && ids.firstOpinion) {
    const fo = request.firstOpinion;
    firstOpinion = {
      resourceType: 'ClinicalImpression',
      id: ids.firstOpinion,
      meta: { profile: [PROFILE.firstOpinion] },
      status: 'completed',
      description: 'First opinion on which a second opinion is sought',
      subject,
      date: authoredOn,
      ...(fo.diagnosis.length ? { finding: fo.diagnosis.map((c) => ({ itemCodeableConcept: { coding: [coding(c)] } })) } : {}),
      ...(fo.plan ? { summary: fo.plan } : {}),
      ...(fo.documents.length
        ? { supportingInfo: fo.documents.map((d) => ({ reference: abs(d.reference), type: 'DocumentReference', ...(d.display ? { display: d.display } : {}) })) }
        : {}),
    };
  }

  const supportingInfo: Reference[] = [];
  if (firstOpinion) supportingInfo.push({ reference: `ClinicalImpression/${firstOpinion.id}`, display: 'First opinion' });
  if (request.consent) supportingInfo.push({ reference: abs(request.consent.reference), type: 'Consent', display: 'Consent to disclose' });
  for (const d of request.records.documents ?? []) {
    const type = (parseResourceReference(d.reference)?.typeAndId.split('/')[0] ?? 'DocumentReference') as RecordType;
    supportingInfo.push({ reference: abs(d.reference), type, ...(d.display ? { display: d.display } : {}) });
  }

  const serviceRequest: ServiceRequest = {
    resourceType: 'ServiceRequest',
    id: ids.serviceRequest,
    meta: { profile: [PROFILE.serviceRequest] },
    extension: [
      { url: EXTENSION.reviewType, valueCoding: { system: SYSTEM.reviewType, code: request.reviewType, display: REVIEW_TYPE_DISPLAY[request.reviewType] } },
      { url: EXTENSION.blinded, valueBoolean: request.blinded },
    ],
    identifier: [
      {
        type: { coding: [{ system: SYSTEM.v2IdentifierType, code: 'PLAC', display: 'Placer Identifier' }] },
        system: placerIdentifierSystem(referrer.id),
        value: request.requestId,
      },
    ],
    status: 'active',
    intent: 'order',
    category: [{ coding: [{ ...REFERRAL_CATEGORY }] }, { coding: [{ ...SECOND_OPINION_REASON }] }],
    priority: request.priority,
    code: { coding: [{ system: SYSTEM.kind, code: request.kind, display: KIND_DISPLAY[request.kind] }] },
    subject,
    authoredOn,
    requester,
    performer: consultants.map(organizationRef),
    ...(request.reason.length ? { reasonCode: request.reason.map((c) => ({ coding: [coding(c)] })) } : {}),
    ...(supportingInfo.length ? { supportingInfo } : {}),
    // The clinical question first, then the patient's and the physician's own questions (referral-questions.ts).
    note: [{ text: request.question }, ...questionNotes(request.questions)],
  };

  const tasks = buildConsultantTasks({ serviceRequestId: ids.serviceRequest, taskIds: ids.tasks, consultants, priority: request.priority, question: request.question, subject, requester, now, due });

  const provenance: Provenance = {
    resourceType: 'Provenance',
    id: ids.provenance,
    target: [
      { reference: srRef },
      ...tasks.map((t) => ({ reference: `Task/${t.id}` })),
      ...(firstOpinion ? [{ reference: `ClinicalImpression/${firstOpinion.id}` }] : []),
    ],
    recorded: authoredOn,
    activity: { coding: [{ system: SYSTEM.dataOperation, code: 'CREATE', display: 'create' }] },
    agent: [
      {
        type: { coding: [{ system: SYSTEM.provenanceParticipantType, code: 'author', display: 'Author' }] },
        who: requester,
        onBehalfOf: organizationRef(referrer),
      },
    ],
  };

  return { serviceRequest, tasks, ...(firstOpinion ? { firstOpinion } : {}), provenance };
}

export interface ConsultantTasksInput {
  serviceRequestId: string;
  /** One per consultant, in the same order. */
  taskIds: readonly string[];
  consultants: readonly ParticipantRef[];
  priority: 'routine' | 'urgent' | 'asap';
  /** The referral's question: each Task's description. */
  question: string;
  subject: Reference<Patient>;
  requester: Reference<Practitioner | PractitionerRole>;
  now: Date;
  /** Task due date (FHIR dateTime). */
  due: string;
}

/**
 * One Task per consulting clinic of a referral, waiting for its record set: at intake, and for
 * each clinic added later (`POST /second-opinions/{id}/consultants`). Pure: ids and clock come in.
 */
export function buildConsultantTasks(input: ConsultantTasksInput): Task[] {
  const authoredOn = input.now.toISOString();
  return input.consultants.map((consultant, i) => ({
    resourceType: 'Task',
    id: input.taskIds[i],
    meta: { profile: [PROFILE.task] },
    status: 'requested',
    businessStatus: businessStatus('records-pending'),
    intent: 'order',
    priority: input.priority,
    code: { coding: [{ ...TASK_CODE_FULFILL }] },
    description: input.question,
    focus: { reference: `ServiceRequest/${input.serviceRequestId}` },
    for: input.subject,
    authoredOn,
    lastModified: authoredOn,
    requester: input.requester,
    owner: organizationRef(consultant),
    restriction: { period: { end: input.due } },
  }));
}

/** The performer a consulting clinic is on the ServiceRequest (and the owner of its Task). */
export function organizationRef(p: ParticipantRef): Reference<Organization> {
  return { reference: p.organization.reference, display: p.organization.display ?? p.name };
}

function coding(c: { system: string; code: string; display?: string }): Coding {
  return { system: c.system, code: c.code, ...(c.display ? { display: c.display } : {}) };
}

/**
 * The due date of the consultants' Tasks: the requested one, or now plus the configured
 * turnaround for the priority (commercial services promise 3 to 7 days).
 */
export function dueDateFor(priority: 'routine' | 'urgent' | 'asap', now: Date, dueDays: Record<'routine' | 'urgent' | 'asap', number>, requested?: string): string {
  if (requested) return requested;
  return new Date(now.getTime() + dueDays[priority] * 86_400_000).toISOString();
}
