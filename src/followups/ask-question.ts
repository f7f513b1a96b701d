/**
 * `POST /second-opinions/{id}/consultants/{participant}/questions`: after a
 * consulting clinic's opinion has reached the referrer's EHR, the referrer asks it a follow-up
 * question. Allowed only once that opinion is delivered (409 before), at most `FOLLOW_UP_LIMIT`
 * questions per consultant (the network file's `followUpLimit` for that clinic; 409 beyond) and
 * within `FOLLOW_UP_WINDOW_DAYS` of the opinion (422 after), and not to a clinic the patient
 * withdrew consent for (409). One statement writes the question
 * (a Communication readable by the referrer and that clinic only), its Provenance and the
 * thread's row. The opinion's delivery row is locked first, so two questions asked at once
 * never both take the last place.
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Communication, Organization, Reference, Task } from '@medplum/fhirtypes';
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { referrerAudience } from '../access/audience.ts';
import type { Caller } from '../access/caller.ts';
import { refusedForWithdrawal } from '../access/consent-withdrawal.ts';
import { lockOwnReferral } from '../consults/referrer-actions.ts';
import { conflictError, issue, unprocessable } from '../fhir/outcomes.ts';
import { text } from '../intake/intake-request.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { followUps, opinionDeliveries } from '../store/schema.ts';
import { buildFollowUpProvenance, buildQuestion, followUpDue } from './follow-up-resources.ts';

export const QuestionSchema = z.strictObject({ text: text(4000) });

export interface FollowUpLimits {
  /** Questions per consultant (FOLLOW_UP_LIMIT), unless the consultant's `followUpLimit` says otherwise. */
  limit: number;
  /** Days after the opinion (FOLLOW_UP_WINDOW_DAYS). */
  windowDays: number;
}

export interface AskQuestionDeps {
  store: ResourceStore;
  network: { get(id: string): { organization: { reference: string; display?: string }; followUpLimit?: number } | undefined };
  followUps: FollowUpLimits;
  now: () => Date;
}

export interface AskedQuestion {
  id: string;
  taskId: string;
  consultant: string;
  askedAt: string;
  due: string;
  /** Questions asked of this consultant so far (this one included), and how many are allowed. */
  asked: number;
  limit: number;
  communication: Communication;
}

export async function askFollowUpQuestion(serviceRequestId: string, consultantId: string, body: z.output<typeof QuestionSchema>, caller: Caller, deps: AskQuestionDeps): Promise<AskedQuestion> {
  const referrer = deps.network.get(caller.participantId)?.organization;
  if (!referrer) throw new OperationOutcomeError(notFound);
  return deps.store.withTransaction(async (tx) => {
    const { taskIds, serviceRequest } = await lockOwnReferral(tx, serviceRequestId, caller);
    const consultant = deps.network.get(consultantId);
    const tasks = consultant ? await tx.readMany<Task>('Task', taskIds, 'system') : [];
    const task = tasks.find((t) => t.owner?.reference === consultant?.organization.reference);
    // A participant that is no consultant of this referral is no part of it: 404, as an unknown referral.
    if (!consultant || !task) throw new OperationOutcomeError(notFound);
    const name = consultant.organization.display ?? consultantId;
    // A question carries the patient's case to the clinic: not once the patient withdrew consent to disclose to it.
    const recordSets = (task.input ?? []).flatMap((i) => (i.valueReference?.reference?.startsWith('Bundle/') ? [{ reference: i.valueReference.reference }] : []));
    if (await refusedForWithdrawal(tx, consultantId, recordSets)) throw conflictError(`The patient withdrew consent to disclose the case to ${name}: no follow-up question can be sent to it`, 'participant');

    const locked = (await tx.database.execute(sql`
      SELECT status, created_at FROM ${opinionDeliveries} WHERE task_id = ${task.id as string} ORDER BY created_at DESC LIMIT 1 FOR UPDATE`)) as unknown as { rows: { status: string; created_at: string | Date }[] };
    const delivery = locked.rows[0];
    if (task.status !== 'completed' || !delivery) throw conflictError(`${name} has not given its opinion yet (its Task is ${task.status}): follow-up questions can be asked once the opinion is delivered`, 'participant');
    if (delivery.status !== 'delivered') throw conflictError(`${name}'s opinion has not reached your EHR yet (delivery ${delivery.status}): follow-up questions can be asked once it is delivered`, 'participant');

    const now = deps.now();
    const limit = consultant.followUpLimit ?? deps.followUps.limit;
    const window = `${deps.followUps.windowDays} days`;
    const [{ n }] = ((await tx.database.execute(sql`SELECT count(*)::int AS n FROM ${followUps} WHERE task_id = ${task.id as string}`)) as unknown as { rows: [{ n: number }] }).rows;
    if (n >= limit) throw conflictError(`At most ${limit} follow-up questions may be asked of ${name} (within ${window} of its opinion); ${n} have been asked`, 'participant');
    const opinionAt = new Date(delivery.created_at);
    const closes = new Date(opinionAt.getTime() + deps.followUps.windowDays * 86_400_000);
    if (now.getTime() > closes.getTime()) {
      throw unprocessable([issue('business-rule', `Follow-up questions may be asked within ${window} of the opinion (at most ${limit}); ${name}'s opinion of ${opinionAt.toISOString()} closed to questions at ${closes.toISOString()}`, 'participant')]);
    }

    const id = randomUUID();
    const due = followUpDue(serviceRequest.priority, now);
    const requester = serviceRequest.requester?.reference ? (serviceRequest.requester as Reference) : { reference: referrer.reference, ...(referrer.display ? { display: referrer.display } : {}) };
    const consultantRef = { reference: consultant.organization.reference, ...(consultant.organization.display ? { display: consultant.organization.display } : {}) } as Reference<Organization>;
    const question = buildQuestion({ id, taskId: task.id as string, patient: task.for as Reference, text: body.text, sender: requester, consultant: consultantRef, now, due });
    const access = [...referrerAudience(caller.participantId, serviceRequest.requester?.reference), consultantId];
    const author = { reference: referrer.reference, ...(referrer.display ? { display: referrer.display } : {}) } as Reference<Organization>;
    const at = now.toISOString();
    const { created } = await tx.write({
      creates: [
        { resource: question, access },
        { resource: buildFollowUpProvenance({ id: randomUUID(), communicationId: id, taskId: task.id as string, author, what: 'question', now }), access },
      ],
      parts: [
        {
          name: 'follow_up_row',
          sql: sql`INSERT INTO ${followUps} (id, task_id, service_request_id, participant_id, consultant_id, asked_at, due_at, attempts, updated_at)
            VALUES (${id}, ${task.id as string}, ${serviceRequestId}, ${caller.participantId}, ${consultantId}, ${at}, ${due.toISOString()}, 0, ${at}) RETURNING id`,
        },
      ],
    });
    return { id, taskId: task.id as string, consultant: consultantId, askedAt: at, due: due.toISOString(), asked: n + 1, limit, communication: created[0] as Communication };
  });
}
