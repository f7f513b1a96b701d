/**
 * `POST /consults/{taskId}/opinion`: the consultant's opinion completes its
 * Task. One statement writes the consult note (DocumentReference, readable by the referrer
 * and this consultant), its Provenance, the completed Task pointing at it, the delivery row
 * and the durable `deliver-opinion` job; so the post-back exists exactly when the opinion
 * does. The note carries the opinion's concordance with the first opinion (concordance/classify.ts),
 * classified here from the same read. For a blinded referral, the first opinion's withheld documents are released to this
 * consultant now that its own opinion is in, with the other clinics' opinions (audited as a disclosure).
 */
import type { Bundle, ClinicalImpression, Reference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { randomUUID } from 'node:crypto';
import { eq, type SQL, sql } from 'drizzle-orm';
import type { AuditLog } from '../audit/audit-log.ts';
import { EXTENSION } from '../fhir/constants.ts';
import type { Caller } from '../access/caller.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { type DeliverOpinionJob, QUEUE } from '../jobs/queues.ts';
import { buildConsultNote, buildOpinionProvenance } from '../opinions/consult-note.ts';
import { classifyOpinion, type Concordance } from '../concordance/classify.ts';
import { firstOpinionPoints } from '../concordance/concordance-extension.ts';
import type { Opinion } from '../opinions/opinion.ts';
import { requireAnswers } from '../opinions/answers.ts';
import { readReferralQuestions } from '../intake/referral-questions.ts';
import { opinionDeliveries, recordSetAssemblies } from '../store/schema.ts';
import { referrerAudience } from '../access/audience.ts';
import { grantOpinions, returnedOpinions } from '../access/consultant-admission.ts';
import { type ConsultDeps, organizationOf } from './consult-actions.ts';
import { readOpinionContext } from './opinion-context.ts';
import { isTerminal } from './task-transitions.ts';
import { planTaskTransition } from './transition-task.ts';
import { retryOnConflict } from '../store/conflict-retry.ts';

export interface SubmitOpinionDeps extends ConsultDeps {
  jobs: Pick<JobQueue, 'enqueueParts'>;
  audit: Pick<AuditLog, 'recordMany'>;
}

/**
 * Four SQL statements in all (BEGIN, one read, one write, COMMIT; a blinded referral adds the
 * release): the read gathers the Task, the referral and its other Tasks (opinion-context.ts),
 * and one statement writes the completed Task (only if its version is still the one read: 412
 * otherwise) with its Provenance, the consult note and its Provenance, the delivery row, the
 * delivery job and, when this opinion ends the last open Task, the settled ServiceRequest.
 */
export async function submitOpinion(taskId: string, opinion: Opinion, caller: Caller, deps: SubmitOpinionDeps, ifMatch?: string): Promise<Task> {
  const agent = organizationOf(caller, deps);
  return retryOnConflict(ifMatch, () =>
    deps.store.withTransaction(async (tx) => {
      const { task, serviceRequestId, intake, serviceRequest, otherTasks, firstOpinion } = await readOpinionContext(tx, taskId, caller, deps);
      // The referral's own questions are on the ServiceRequest just read: no statement more.
      const questions = readReferralQuestions(serviceRequest);
      requireAnswers(questions, opinion.answers);
      const now = deps.now();
      const noteId = randomUUID();

      const completion = planTaskTransition({
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
        patient: task.for as Reference,
        serviceRequestId,
        taskId,
        consultant: agent,
        now,
        requestId: intake.requestId,
        ...(task.description ? { question: task.description } : {}),
        questions,
        ...concordanceOf(firstOpinion, opinion),
      });
      const access = [...referrerAudience(intake.participantId, serviceRequest.requester?.reference), caller.participantId];
      // When every other Task has ended, this opinion ends the referral too: completed (ServiceRequest active -> completed | revoked).
      const settles = serviceRequest.status === 'active' && otherTasks.every((t) => isTerminal(t.status));
      const job: DeliverOpinionJob = { deliveryId: noteId };
      const { updated } = await tx.write({
        updates: [completion.update, ...(settles ? [{ resource: { ...serviceRequest, status: 'completed' as const }, expectedVersion: serviceRequest.meta?.versionId ?? '' }] : [])],
        creates: [
          completion.provenance,
          { resource: note, access },
          { resource: buildOpinionProvenance({ id: randomUUID(), documentId: noteId, taskId, consultant: agent, now }), access },
        ],
        parts: [
          { name: 'delivery_row', sql: deliveryRowInsert({ id: noteId, taskId, serviceRequestId, participantId: intake.participantId, now }) },
          ...deps.jobs.enqueueParts('delivery_job', QUEUE.deliverOpinion, [{ data: job, options: { singletonKey: noteId } }]),
        ],
      });

      if (serviceRequest.extension?.find((e) => e.url === EXTENSION.blinded)?.valueBoolean) await releaseFirstOpinion(tx, serviceRequest, taskId, caller, deps, task.for?.reference);
      return updated[0] as Task;
    }),
  );
}

/** The opinion's concordance with the first opinion, as buildConsultNote takes it; nothing without a first opinion. */
function concordanceOf(firstOpinion: ClinicalImpression | undefined, opinion: Opinion): { concordance?: Concordance } {
  const preferred = opinion.recommendations.find((r) => r.preferred)?.option;
  const concordance = classifyOpinion(firstOpinion ? firstOpinionPoints(firstOpinion) : undefined, { ...opinion, ...(preferred ? { preferredOption: preferred } : {}) });
  return concordance ? { concordance } : {};
}

/**
 * The pending delivery row, as a flat statement: the query builder's insert (every column,
 * each value through its column's encoder) cost several times this per opinion to render.
 * Columns left out take their defaults, as the builder's `default` did.
 */
function deliveryRowInsert(row: { id: string; taskId: string; serviceRequestId: string; participantId: string; now: Date }): SQL {
  const at = row.now.toISOString();
  return sql`INSERT INTO ${opinionDeliveries} (id, task_id, service_request_id, participant_id, status, attempts, created_at, updated_at)
    VALUES (${row.id}, ${row.taskId}, ${row.serviceRequestId}, ${row.participantId}, 'pending', 0, ${at}, ${at}) RETURNING id`;
}

/**
 * Blinding ends for a consultant once its own opinion is in: the withheld record set (the
 * first opinion's documents and earlier consult notes), the first opinion itself and the
 * opinions other clinics have returned so far become readable by it. Access is granted on the
 * same resources (they do not change).
 */
async function releaseFirstOpinion(tx: SubmitOpinionDeps['store'], serviceRequest: ServiceRequest, taskId: string, caller: Caller, deps: SubmitOpinionDeps, patientReference: string | undefined): Promise<void> {
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
  // The other clinics' opinions returned so far (a third opinion's clinic sees the first two now).
  released.push(...(await grantOpinions(tx, await returnedOpinions(tx, serviceRequest.id as string, taskId), participantId)));
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
        description: `First opinion and other opinions of ServiceRequest/${serviceRequest.id} released to the consultant after its own opinion`,
      },
    ],
    tx,
  );
}
