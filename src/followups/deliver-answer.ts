/**
 * The `deliver-follow-up-answer` job: posts a follow-up question and the
 * consultant's answer into the referring EHR, exactly once, the way the opinion is posted
 * (delivery/deliver-opinion.ts): each is a conditional create on an identifier this service owns
 * (`If-None-Exist: identifier=<follow-up-id system>|<our id>`), so a retry, a replayed job or a
 * second replica finds what the first attempt created. The question goes first: the answer
 * points at it there (`inResponseTo`), and both are `about` the consult note as posted there.
 *
 * What the EHR gets references only what it holds: its own patient and clinician, its copies of
 * the consult note and the question; the consulting clinic by identifier, our Task as a logical
 * reference (identifier, never our id as a literal reference).
 *
 * Every attempt that ends is audited as a disclosure; failures are classified, retried and
 * given up as the opinion's are (the follow_up row keeps the last error and the EHR's
 * OperationOutcome, shown in the summary, the comparison and the admin delivery list, and
 * `POST /admin/deliveries/{id}/retry` re-drives it).
 */
import type { Communication, Reference } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { AuditLog } from '../audit/audit-log.ts';
import { countedAttempt, describeDeliveryFailure, type DeliveryDeps, ehrTarget, type EhrTarget } from '../delivery/deliver-opinion.ts';
import { SYSTEM } from '../fhir/constants.ts';
import { RetryLaterError, type Job } from '../jobs/job-queue.ts';
import type { DeliverFollowUpAnswerJob } from '../jobs/queues.ts';
import { referencesForEhr } from '../outbound/ehr-references.ts';
import { isPermanentError, keptOutcome, OutboundError, OutboundHttpError } from '../outbound/outbound-errors.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { followUps, opinionDeliveries, resources } from '../store/schema.ts';

export type FollowUpDeliveryDeps = DeliveryDeps;

export type FollowUpDeliveryResult =
  | { outcome: 'delivered'; question: string; answer: string }
  | { outcome: 'skipped'; reason: string }
  | { outcome: 'failed'; reason: string; error?: unknown };

interface ContextRow {
  participant_id: string;
  task_id: string;
  delivery_status: string | null;
  question: Communication | null;
  answer: Communication | null;
  remote_document: string | null;
}

/** Two SQL statements per attempt: one read (the row, both Communications, the consult note's copy on the EHR), one write. */
export async function deliverFollowUpAnswer(job: Job<DeliverFollowUpAnswerJob>, deps: FollowUpDeliveryDeps): Promise<FollowUpDeliveryResult> {
  return countedAttempt('follow-up-answer', deps, () => attemptAnswerDelivery(job, deps));
}

async function attemptAnswerDelivery(job: Job<DeliverFollowUpAnswerJob>, deps: FollowUpDeliveryDeps): Promise<FollowUpDeliveryResult> {
  const { followUpId } = job.data;
  const context = (await deps.store.database.execute(sql`
    SELECT f.participant_id, f.task_id, f.delivery_status, q.content AS question, a.content AS answer,
           (SELECT d.remote_document FROM ${opinionDeliveries} d WHERE d.task_id = f.task_id AND d.status = 'delivered' ORDER BY d.created_at DESC LIMIT 1) AS remote_document
      FROM ${followUps} f
      LEFT JOIN ${resources} q ON q.resource_type = 'Communication' AND q.id = f.id
      LEFT JOIN ${resources} a ON a.resource_type = 'Communication' AND a.id = f.answer_id
     WHERE f.id = ${followUpId}`)) as unknown as { rows: ContextRow[] };
  const row = context.rows[0];
  if (!row) return { outcome: 'skipped', reason: 'no such follow-up question' };
  if (row.delivery_status === 'delivered') return { outcome: 'skipped', reason: 'already delivered' };
  if (!row.question || !row.answer) return { outcome: 'skipped', reason: 'the question or its answer is gone' };
  const { question, answer } = row;
  const patientReference = question.subject?.reference;
  const attempts = sql`greatest(${followUps.attempts} + 1, ${job.attempt})`;
  const entities = [{ reference: `Communication/${answer.id}` }, { reference: `Communication/${question.id}` }];
  const audit = (outcome: 'success' | 'failure', description: string) => ({
    action: 'disclose' as const,
    outcome,
    agent: { participantId: row.participant_id },
    entities,
    ...(patientReference ? { patientReference } : {}),
    description,
  });
  try {
    const client = deps.clients.get(row.participant_id);
    if (!client) throw new Error('The referring participant has no FHIR endpoint configured');
    const target = ehrTarget(client.baseUrl, 'omit', deps.network);
    const about = row.remote_document ? [{ reference: row.remote_document }] : [];
    const remoteQuestion = await client.createIfNoneExist(toEhrCommunication(question, { taskId: row.task_id, about }, target), identifierQuery(question.id as string));
    const questionUrl = `${client.baseUrl}/Communication/${remoteQuestion.id}`;
    const remoteAnswer = await client.createIfNoneExist(toEhrCommunication(answer, { taskId: row.task_id, about, inResponseTo: questionUrl }, target), identifierQuery(answer.id as string));
    const answerUrl = `${client.baseUrl}/Communication/${remoteAnswer.id}`;
    const now = deps.now().toISOString();
    await record(deps, followUpId, [sql`delivery_status = 'delivered'`, sql`attempts = ${attempts}`, sql`last_error = NULL`, sql`last_outcome = NULL`, sql`remote_question = ${questionUrl}`, sql`remote_answer = ${answerUrl}`, sql`updated_at = ${now}`, sql`delivered_at = ${now}`], audit('success', `Follow-up answer delivered to the referring EHR (attempt ${job.attempt})`));
    return { outcome: 'delivered', question: questionUrl, answer: answerUrl };
  } catch (err) {
    const reason = describeDeliveryFailure(err);
    const permanent = isPermanentError(err);
    const last = permanent || job.attempt >= deps.retryLimit + 1;
    const ehrOutcome = err instanceof OutboundHttpError ? keptOutcome(err.outcome) : undefined;
    await record(
      deps,
      followUpId,
      [sql`delivery_status = ${last ? 'failed' : 'pending'}`, sql`attempts = ${attempts}`, sql`last_error = ${reason}`, sql`last_outcome = ${ehrOutcome ? JSON.stringify(ehrOutcome) : null}::jsonb`, sql`updated_at = ${deps.now().toISOString()}`],
      audit('failure', `Follow-up answer delivery attempt ${job.attempt} failed${permanent ? ' permanently (not retried)' : ''}`),
    );
    if (last) return { outcome: 'failed', reason, error: err };
    if (err instanceof OutboundError && err.retryAt) throw new RetryLaterError(err.retryAt, { cause: err });
    throw err;
  }
}

const identifierQuery = (id: string) => `identifier=${encodeURIComponent(SYSTEM.followUpId)}|${encodeURIComponent(id)}`;

/** The row's new values and the attempt's AuditEvent, in one statement. */
async function record(deps: { store: ResourceStore; audit: Pick<AuditLog, 'build'> }, id: string, set: ReturnType<typeof sql>[], audit: Parameters<AuditLog['build']>[0]): Promise<void> {
  await deps.store.write({
    creates: [{ resource: deps.audit.build(audit), access: [] }],
    parts: [{ name: 'follow_up_row', sql: sql`UPDATE ${followUps} SET ${sql.join(set, sql`, `)} WHERE id = ${id} RETURNING id` }],
  });
}

/**
 * A question or answer as the referring EHR stores it: no id or meta of ours; our Task as a
 * logical reference (the EHR holds no copy of it); `about` the consult note as posted there;
 * an answer `inResponseTo` the question as created there; every other reference made fit for
 * the EHR (outbound/ehr-references.ts).
 */
export function toEhrCommunication(communication: Communication, args: { taskId: string; about: Reference[]; inResponseTo?: string }, target: EhrTarget): Communication {
  const { id: _id, meta: _meta, basedOn: _basedOn, inResponseTo: _inResponseTo, ...rest } = communication;
  const outbound: Communication = {
    ...rest,
    basedOn: [{ type: 'Task', identifier: { system: SYSTEM.taskId, value: args.taskId }, display: 'Second-opinion consult' } as Reference<never>],
    ...(args.inResponseTo ? { inResponseTo: [{ reference: args.inResponseTo }] } : {}),
    ...(args.about.length ? { about: args.about as Reference<never>[] } : {}),
  };
  return referencesForEhr(outbound, target);
}
