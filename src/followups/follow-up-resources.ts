/**
 * The resources of a follow-up thread: the referrer's question and the
 * consultant's answer as `follow-up-communication` Communications about the consultant's Task,
 * each with its Provenance, and when the answer is due.
 *
 * The question is sent by the referral's requester (the referrer's clinician as the
 * ServiceRequest names it, else the referrer organization) to the consulting clinic; the answer
 * the other way, `inResponseTo` the question. Both carry an identifier this service owns: the
 * post-back to the referrer's EHR creates them there conditionally on it.
 */
import type { Communication, Organization, Provenance, Reference } from '@medplum/fhirtypes';
import { EXTENSION, PROFILE, SYSTEM } from '../fhir/constants.ts';

/**
 * Days until a follow-up answer is due, by the referral's priority: a clarification of an
 * opinion already given takes less than the opinion (DUE_DAYS_*), and an urgent case needs it
 * sooner.
 */
export const FOLLOW_UP_DUE_DAYS: Readonly<Record<string, number>> = { routine: 5, urgent: 2, asap: 1 };

/** When the answer to a question asked at `askedAt` on a referral of `priority` is due. */
export function followUpDue(priority: string | undefined, askedAt: Date): Date {
  const days = FOLLOW_UP_DUE_DAYS[priority ?? 'routine'] ?? FOLLOW_UP_DUE_DAYS.routine;
  return new Date(askedAt.getTime() + (days as number) * 86_400_000);
}

interface ThreadParty {
  taskId: string;
  /** The patient as the Task names it (`Task.for`). */
  patient: Reference;
}

export function buildQuestion(args: ThreadParty & { id: string; text: string; sender: Reference; consultant: Reference<Organization>; now: Date; due: Date }): Communication {
  return {
    resourceType: 'Communication',
    id: args.id,
    meta: { profile: [PROFILE.followUpCommunication] },
    extension: [{ url: EXTENSION.followUpDue, valueDateTime: args.due.toISOString() }],
    identifier: [{ system: SYSTEM.followUpId, value: args.id }],
    status: 'completed',
    basedOn: [{ reference: `Task/${args.taskId}` }],
    subject: args.patient as Reference<never>,
    sent: args.now.toISOString(),
    sender: args.sender as Reference<never>,
    recipient: [args.consultant as Reference<never>],
    payload: [{ contentString: args.text }],
  };
}

export function buildAnswer(args: ThreadParty & { id: string; questionId: string; text: string; consultant: Reference<Organization>; recipient: Reference; now: Date }): Communication {
  return {
    resourceType: 'Communication',
    id: args.id,
    meta: { profile: [PROFILE.followUpCommunication] },
    identifier: [{ system: SYSTEM.followUpId, value: args.id }],
    status: 'completed',
    basedOn: [{ reference: `Task/${args.taskId}` }],
    inResponseTo: [{ reference: `Communication/${args.questionId}` }],
    subject: args.patient as Reference<never>,
    sent: args.now.toISOString(),
    sender: args.consultant as Reference<never>,
    recipient: [args.recipient as Reference<never>],
    payload: [{ contentString: args.text }],
  };
}

/** Who wrote a question or an answer, for its Provenance. */
export function buildFollowUpProvenance(args: { id: string; communicationId: string; taskId: string; author: Reference<Organization>; what: 'question' | 'answer'; now: Date }): Provenance {
  return {
    resourceType: 'Provenance',
    id: args.id,
    target: [{ reference: `Communication/${args.communicationId}` }],
    recorded: args.now.toISOString(),
    activity: { coding: [{ system: SYSTEM.dataOperation, code: 'CREATE', display: 'create' }] },
    reason: [{ text: `Follow-up ${args.what} on Task/${args.taskId}` }],
    agent: [{ type: { coding: [{ system: SYSTEM.provenanceParticipantType, code: 'author', display: 'Author' }] }, who: args.author }],
  };
}
