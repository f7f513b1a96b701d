/**
 * `POST /second-opinions/{id}/consultants`: the referrer adds consulting clinics
 * to an open or completed referral, for example after two opinions disagree. Each new clinic
 * gets its own Task (due by the referral's priority), the ServiceRequest names it as a
 * performer and is active again, and its record set follows as at intake: consent is checked
 * for it, and it receives the current record set (the very Bundle already assembled, or a new
 * assembly when records were added since).
 */
import { randomUUID } from 'node:crypto';
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Organization, Patient, Practitioner, PractitionerRole, Provenance, Reference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { and, eq } from 'drizzle-orm';
import { z } from 'zod';
import { referrerAudience } from '../access/audience.ts';
import type { Caller } from '../access/caller.ts';
import { readerOf } from '../access/reader.ts';
import { SYSTEM } from '../fhir/constants.ts';
import { conflictError, issue, unprocessable } from '../fhir/outcomes.ts';
import { QUEUE, type AssembleRecordSetJob, type ReuseRecordSetJob } from '../jobs/queues.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { intakeRequests, recordSetAssemblies, type AddedConsultant } from '../store/schema.ts';
import { endedForWantOfRecords } from '../consults/transition-task.ts';
import { buildConsultantTasks, dueDateFor, organizationRef } from './build-referral.ts';
import type { DirectoryParticipant, IntakeDeps } from './create-second-opinion.ts';
import { IntakeRequestSchema } from './intake-request.ts';
import { refuseForeignReferences } from './own-server-references.ts';

/** The body: intake's own `consultants`, `consent` and `consentAttested` fields (at most 5 clinics per call, as at intake). */
export const AddConsultantsRequestSchema = z.strictObject({
  consultants: IntakeRequestSchema.shape.consultants,
  consent: IntakeRequestSchema.shape.consent,
  consentAttested: IntakeRequestSchema.shape.consentAttested,
});

export type AddConsultantsRequest = z.output<typeof AddConsultantsRequestSchema>;

/**
 * At most this many consulting clinics on one referral, counting those whose Task is open or
 * completed (a clinic that declined or was cancelled no longer counts): beyond a handful,
 * more opinions add cost and delay, not clarity.
 */
export const MAX_CONSULTANTS_PER_REFERRAL = 8;

export type AddConsultantsDeps = Pick<IntakeDeps, 'store' | 'network' | 'jobs' | 'dueDays' | 'now'>;

export interface AddConsultantsResult {
  serviceRequest: ServiceRequest;
  /** The new Tasks, in the order of `consultants`. */
  tasks: Task[];
}

/** A clinic whose Task ended this way no longer counts as on the referral: it may be asked again. */
const GONE = new Set<Task['status']>(['rejected', 'cancelled', 'failed', 'entered-in-error']);

/**
 * Adds the clinics in one write: the new Tasks, the ServiceRequest (new performers, `active`,
 * only if still at the version read: 412 otherwise), a Provenance, the intake row and the
 * record-set job. The intake row is locked first, so two posts for one referral run one after
 * the other and the second finds the first's clinics already there (422): a replay adds nothing.
 * Only the referrer that placed the referral may add to it (404 for anyone else); a revoked
 * referral answers 409, unless it ended only because its record set could not be assembled
 * (its Tasks `failed`): asking the clinics again is the way out of that.
 */
export async function addConsultants(serviceRequestId: string, request: AddConsultantsRequest, caller: Caller, deps: AddConsultantsDeps): Promise<AddConsultantsResult> {
  const referrer = deps.network.get(caller.participantId);
  // The network file guarantees every referrer has an EHR endpoint; reaching this is a configuration bug.
  if (!referrer?.fhir?.baseUrl) throw new Error('referrer has no FHIR endpoint configured');
  if (request.consent) refuseForeignReferences([{ field: 'consent.reference', reference: request.consent.reference }], referrer.fhir.baseUrl);

  return deps.store.withTransaction(async (tx) => {
    const [intake] = await tx.database
      .select()
      .from(intakeRequests)
      .where(and(eq(intakeRequests.serviceRequestId, serviceRequestId), eq(intakeRequests.participantId, caller.participantId)))
      .for('update');
    const serviceRequest = intake ? await tx.read<ServiceRequest>('ServiceRequest', serviceRequestId, readerOf(caller)) : undefined;
    if (!intake || !serviceRequest) throw new OperationOutcomeError(notFound);
    const tasks = await tx.readMany<Task>('Task', intake.taskIds, 'system');
    if (serviceRequest.status !== 'active' && serviceRequest.status !== 'completed' && !endedForWantOfRecords(serviceRequest, tasks)) {
      throw conflictError(`The referral is ${serviceRequest.status}: consultants can only be added to an active or completed referral, or one that ended because its record set could not be assembled`);
    }

    const onReferral = new Set(tasks.filter((t) => !GONE.has(t.status)).map((t) => t.owner?.reference));
    const consultants = checkNewConsultants(request.consultants, onReferral.size, onReferral, deps.network);

    const now = deps.now();
    const priority = serviceRequest.priority === 'urgent' || serviceRequest.priority === 'asap' ? serviceRequest.priority : 'routine';
    const taskIds = consultants.map(() => randomUUID());
    const newTasks = buildConsultantTasks({
      serviceRequestId,
      taskIds,
      consultants,
      priority,
      question: serviceRequest.note?.[0]?.text ?? tasks[0]?.description ?? 'Second opinion',
      subject: serviceRequest.subject as Reference<Patient>,
      requester: serviceRequest.requester as Reference<Practitioner | PractitionerRole>,
      now,
      due: dueDateFor(priority, now, deps.dueDays),
    });
    const version = serviceRequest.meta?.versionId ?? '';
    const reopened: ServiceRequest = { ...serviceRequest, status: 'active', performer: [...(serviceRequest.performer ?? []).filter((p) => !consultants.some((c) => c.organization.reference === p.reference)), ...consultants.map(organizationRef)] };
    const provenance = buildAddProvenance(serviceRequestId, Number(version) + 1, taskIds, organizationRef(referrer) as Reference<Organization>, now);

    const added: AddedConsultant[] = consultants.map((c, i) => ({
      participantId: c.id,
      taskId: taskIds[i] as string,
      ...(request.consent ? { consent: request.consent } : {}),
      consentAttested: request.consentAttested,
    }));
    // The current record set serves the new clinics as it is when nothing was added since it was
    // assembled (the job only checks their consent and admits them to that Bundle); otherwise the
    // record set is assembled again, as an addition of records does, for every open Task.
    const [last] = await tx.database.select().from(recordSetAssemblies).where(eq(recordSetAssemblies.serviceRequestId, serviceRequestId));
    const reuse = last?.bundleId && last.status !== 'records-failed' && last.recordsRevision >= intake.recordsRevision ? last.bundleId : undefined;
    const recordsRevision = reuse ? intake.recordsRevision : intake.recordsRevision + 1;
    await tx.database
      .update(intakeRequests)
      .set({ taskIds: [...intake.taskIds, ...taskIds], addedConsultants: [...intake.addedConsultants, ...added], recordsRevision })
      .where(eq(intakeRequests.serviceRequestId, serviceRequestId));

    const access = referrerAudience(referrer.id, serviceRequest.requester?.reference);
    const { updated, created } = await tx.write({
      updates: [{ resource: reopened, expectedVersion: version }],
      creates: [...newTasks.map((resource) => ({ resource, access })), { resource: provenance, access }],
    });
    const job: AssembleRecordSetJob | ReuseRecordSetJob = reuse
      ? { serviceRequestId, taskIds, serviceRequestVersion: String(Number(version) + 1), recordsRevision: String(recordsRevision), reuseBundleId: reuse }
      : { serviceRequestId, taskIds: [...intake.taskIds, ...taskIds], serviceRequestVersion: String(Number(version) + 1), recordsRevision: String(recordsRevision) };
    await deps.jobs.enqueue(tx.database, QUEUE.assembleRecordSet, job);
    return { serviceRequest: updated[0] as ServiceRequest, tasks: created.slice(0, newTasks.length) as Task[] };
  });
}

/**
 * Every clinic must be a known consultant not already on the referral, and the referral must
 * stay within {@link MAX_CONSULTANTS_PER_REFERRAL}; each refused one is named (`consultants[i]`).
 */
function checkNewConsultants(ids: readonly string[], present: number, onReferral: ReadonlySet<string | undefined>, network: AddConsultantsDeps['network']): DirectoryParticipant[] {
  const problems = [];
  const found: DirectoryParticipant[] = [];
  for (const [i, id] of ids.entries()) {
    const p = network.get(id);
    const at = `consultants[${i}]`;
    if (!p) problems.push(issue('business-rule', `Unknown participant '${id}': see GET /participants?role=consultant`, at));
    else if (!p.roles.includes('consultant')) problems.push(issue('business-rule', `Participant '${id}' is not a consultant`, at));
    else if (onReferral.has(p.organization.reference)) problems.push(issue('business-rule', `Participant '${id}' is already a consultant of this referral`, at));
    else if (present + found.length >= MAX_CONSULTANTS_PER_REFERRAL) {
      problems.push(issue('business-rule', `A referral has at most ${MAX_CONSULTANTS_PER_REFERRAL} consultants (${present} already): '${id}' would exceed it`, at));
    } else found.push(p);
  }
  if (problems.length) throw unprocessable(problems);
  return found;
}

/** Who added which Tasks to the referral, and the ServiceRequest version that names them. */
function buildAddProvenance(serviceRequestId: string, nextVersion: number, taskIds: readonly string[], referrer: Reference<Organization>, now: Date): Provenance {
  return {
    resourceType: 'Provenance',
    id: randomUUID(),
    target: [{ reference: `ServiceRequest/${serviceRequestId}/_history/${nextVersion}` }, ...taskIds.map((id) => ({ reference: `Task/${id}` }))],
    recorded: now.toISOString(),
    activity: { coding: [{ system: SYSTEM.dataOperation, code: 'UPDATE', display: 'revise' }] },
    reason: [{ text: 'Consulting clinics added to the referral' }],
    agent: [{ type: { coding: [{ system: SYSTEM.provenanceParticipantType, code: 'author', display: 'Author' }] }, who: referrer }],
  };
}
