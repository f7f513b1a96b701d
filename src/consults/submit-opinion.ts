/**
 * `POST /consults/{taskId}/opinion` (issue 4 §2-§3): the consultant's opinion completes its
 * Task. One transaction writes the consult note (DocumentReference, readable by the referrer
 * and this consultant), its Provenance, the completed Task pointing at it, the delivery row
 * and the durable `deliver-opinion` job; so the post-back exists exactly when the opinion
 * does. For a blinded referral, the first opinion's withheld documents are released to this
 * consultant now that its own opinion is in (audited as a disclosure).
 */
import type { Bundle, ServiceRequest, Task } from '@medplum/fhirtypes';
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { AuditLog } from '../audit/audit-log.ts';
import { EXTENSION } from '../fhir/constants.ts';
import type { Caller } from '../access/caller.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { type DeliverOpinionJob, QUEUE } from '../jobs/queues.ts';
import { buildConsultNote, buildOpinionProvenance } from '../opinions/consult-note.ts';
import type { Opinion } from '../opinions/opinion.ts';
import { intakeRequests, opinionDeliveries, recordSetAssemblies } from '../store/schema.ts';
import { referrerAudience } from '../access/audience.ts';
import { type ConsultDeps, organizationOf, readOwnTask } from './consult-actions.ts';
import { settleReferral, transitionTask } from './transition-task.ts';

export interface SubmitOpinionDeps extends ConsultDeps {
  jobs: Pick<JobQueue, 'enqueue'>;
  audit: Pick<AuditLog, 'recordMany'>;
}

export async function submitOpinion(taskId: string, opinion: Opinion, caller: Caller, deps: SubmitOpinionDeps, ifMatch?: string): Promise<Task> {
  const agent = organizationOf(caller, deps);
  return deps.store.withTransaction(async (tx) => {
    const task = await readOwnTask(tx, taskId, caller, deps);
    const serviceRequestId = (task.focus?.reference ?? '').replace(/^ServiceRequest\//, '');
    const [intake] = await tx.database
      .select({ participantId: intakeRequests.participantId, requestId: intakeRequests.requestId, taskIds: intakeRequests.taskIds })
      .from(intakeRequests)
      .where(eq(intakeRequests.serviceRequestId, serviceRequestId));
    const serviceRequest = await tx.read<ServiceRequest>('ServiceRequest', serviceRequestId, 'system');
    if (!intake || !serviceRequest || !task.for) throw new Error(`Task ${taskId} has no referral`); // an integrity bug, never input
    const now = deps.now();
    const noteId = randomUUID();

    const completed = await transitionTask(tx, {
      task,
      action: 'complete',
      actor: 'consultant',
      agent,
      now,
      ...(ifMatch !== undefined ? { expectedVersion: ifMatch } : {}),
      change: (next) => ({ ...next, output: [{ type: { text: 'opinion' }, valueReference: { reference: `DocumentReference/${noteId}`, display: 'Second opinion' } }] }),
    });
    const note = buildConsultNote({
      id: noteId,
      opinion,
      patient: task.for,
      serviceRequestId,
      taskId,
      consultant: agent,
      now,
      requestId: intake.requestId,
      ...(task.description ? { question: task.description } : {}),
    });
    const access = [...referrerAudience(intake.participantId, serviceRequest.requester?.reference), caller.participantId];
    await tx.createMany([
      { resource: note, access },
      { resource: buildOpinionProvenance({ id: randomUUID(), documentId: noteId, taskId, consultant: agent, now }), access },
    ]);

    await tx.database.insert(opinionDeliveries).values({ id: noteId, taskId, serviceRequestId, participantId: intake.participantId, status: 'pending', attempts: 0, createdAt: now, updatedAt: now });
    const job: DeliverOpinionJob = { deliveryId: noteId };
    await deps.jobs.enqueue(tx.database, QUEUE.deliverOpinion, job, { singletonKey: noteId });

    if (serviceRequest.extension?.find((e) => e.url === EXTENSION.blinded)?.valueBoolean) await releaseFirstOpinion(tx, serviceRequest, caller, deps, task.for.reference);
    await settleReferral(tx, serviceRequestId, intake.taskIds);
    return completed;
  });
}

/**
 * Blinding ends for a consultant once its own opinion is in: the withheld record set (the
 * first opinion's documents and earlier consult notes) and the first opinion itself become
 * readable by it. Access is granted on the same resources (they do not change).
 */
async function releaseFirstOpinion(tx: SubmitOpinionDeps['store'], serviceRequest: ServiceRequest, caller: Caller, deps: SubmitOpinionDeps, patientReference: string | undefined): Promise<void> {
  const { participantId } = caller;
  const released: string[] = [];
  const [assembly] = await tx.database.select({ withheldBundleId: recordSetAssemblies.withheldBundleId }).from(recordSetAssemblies).where(eq(recordSetAssemblies.serviceRequestId, serviceRequest.id as string));
  if (assembly?.withheldBundleId) {
    const bundle = await tx.read<Bundle>('Bundle', assembly.withheldBundleId, 'system');
    if (bundle && (await tx.grantAccess('Bundle', [assembly.withheldBundleId], participantId)) > 0) released.push(`Bundle/${assembly.withheldBundleId}`);
    const byType = new Map<string, string[]>();
    for (const entry of bundle?.entry ?? []) {
      const r = entry.resource;
      if (r?.id) byType.set(r.resourceType, [...(byType.get(r.resourceType) ?? []), r.id]);
    }
    for (const [type, ids] of byType) {
      await tx.grantAccess(type, ids, participantId);
      released.push(...ids.map((id) => `${type}/${id}`));
    }
  }
  const firstOpinion = serviceRequest.supportingInfo?.find((s) => s.reference?.startsWith('ClinicalImpression/'))?.reference;
  if (firstOpinion) {
    const id = firstOpinion.slice('ClinicalImpression/'.length);
    if ((await tx.grantAccess('ClinicalImpression', [id], participantId)) > 0) released.push(firstOpinion);
  }
  if (released.length === 0) return;
  await deps.audit.recordMany(
    [
      {
        action: 'disclose',
        outcome: 'success',
        agent: { participantId },
        ...(caller.requestId ? { requestId: caller.requestId } : {}),
        entities: released.map((reference) => ({ reference })),
        ...(patientReference ? { patientReference } : {}),
        description: `First opinion of ServiceRequest/${serviceRequest.id} released to the consultant after its own opinion`,
      },
    ],
    tx,
  );
}
