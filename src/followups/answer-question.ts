/**
 * `POST /consults/{taskId}/answers`: the consulting clinic answers a follow-up
 * question on its Task. One statement writes the answer (a Communication `inResponseTo` the
 * question, readable by the referrer and this clinic only), its Provenance, the thread's row
 * (answered, post-back pending) and the durable `deliver-follow-up-answer` job, so the post-back
 * exists exactly when the answer does. The row is locked first: answering twice is 409.
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Communication, Reference, ServiceRequest } from '@medplum/fhirtypes';
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { referrerAudience } from '../access/audience.ts';
import type { Caller } from '../access/caller.ts';
import { type ConsultDeps, organizationOf, readOwnTask, serviceRequestIdOf } from '../consults/consult-actions.ts';
import { conflictError, issue, unprocessable } from '../fhir/outcomes.ts';
import { text } from '../intake/intake-request.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { type DeliverFollowUpAnswerJob, QUEUE } from '../jobs/queues.ts';
import { followUps } from '../store/schema.ts';
import { buildAnswer, buildFollowUpProvenance } from './follow-up-resources.ts';

export const AnswerSchema = z.strictObject({
  /** The question's Communication id (as the worklist lists it). */
  question: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/, 'must be a Communication id'),
  text: text(8000),
});

export interface AnswerQuestionDeps extends ConsultDeps {
  jobs: Pick<JobQueue, 'enqueueParts'>;
}

export interface GivenAnswer {
  id: string;
  question: string;
  taskId: string;
  answeredAt: string;
  delivery: 'pending';
  communication: Communication;
}

export async function answerFollowUpQuestion(taskId: string, body: z.output<typeof AnswerSchema>, caller: Caller, deps: AnswerQuestionDeps): Promise<GivenAnswer> {
  const consultant = organizationOf(caller, deps);
  return deps.store.withTransaction(async (tx) => {
    const task = await readOwnTask(tx, taskId, caller, deps);
    const locked = (await tx.database.execute(sql`
      SELECT participant_id, answer_id FROM ${followUps} WHERE id = ${body.question} AND task_id = ${taskId} FOR UPDATE`)) as unknown as { rows: { participant_id: string; answer_id: string | null }[] };
    const row = locked.rows[0];
    if (!row) throw unprocessable([issue('not-found', `No follow-up question ${body.question} was asked on this Task`, 'question')]);
    if (row.answer_id) throw conflictError(`Question ${body.question} has already been answered (Communication/${row.answer_id})`, 'question');
    const question = await tx.read<Communication>('Communication', body.question, 'system');
    const serviceRequest = await tx.read<ServiceRequest>('ServiceRequest', serviceRequestIdOf(task), 'system');
    if (!question || !serviceRequest) throw new OperationOutcomeError(notFound);

    const now = deps.now();
    const id = randomUUID();
    const answer = buildAnswer({ id, questionId: body.question, taskId, patient: task.for as Reference, text: body.text, consultant, recipient: question.sender as Reference, now });
    const access = [...referrerAudience(row.participant_id, serviceRequest.requester?.reference), caller.participantId];
    const at = now.toISOString();
    const job: DeliverFollowUpAnswerJob = { followUpId: body.question };
    const { created } = await tx.write({
      creates: [
        { resource: answer, access },
        { resource: buildFollowUpProvenance({ id: randomUUID(), communicationId: id, taskId, author: consultant, what: 'answer', now }), access },
      ],
      parts: [
        {
          name: 'follow_up_answer',
          sql: sql`UPDATE ${followUps} SET answer_id = ${id}, answered_at = ${at}, delivery_status = 'pending', updated_at = ${at} WHERE id = ${body.question} AND answer_id IS NULL RETURNING id`,
        },
        ...deps.jobs.enqueueParts('follow_up_job', QUEUE.deliverFollowUpAnswer, [{ data: job, options: { singletonKey: body.question } }]),
      ],
    });
    return { id, question: body.question, taskId, answeredAt: at, delivery: 'pending', communication: created[0] as Communication };
  });
}
