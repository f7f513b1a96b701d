/**
 * Each consultant's follow-up thread as the referral summary, the comparison and
 * the clinic's worklist show it: every question with when it was asked and when its answer is
 * due, the answer and when it came, and the answer's post-back to the referrer's EHR. One
 * statement for any number of Tasks; the texts come from the Communications as the caller may
 * read them (a caller who may not read one sees no text).
 */
import type { Communication, OperationOutcome } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { accessFilter, type Reader, type ResourceStore } from '../store/resource-store.ts';
import { followUps, resources } from '../store/schema.ts';
import { textArray } from '../store/write-batch.ts';

export interface FollowUpEntry {
  /** The question's Communication id (what `POST /consults/{taskId}/answers` names). */
  question: string;
  text?: string;
  askedAt: string;
  due: string;
  /** Unanswered past its due date. */
  overdue: boolean;
  answer?: { id: string; text?: string; answeredAt: string };
  /** The answer's post-back to the referrer's EHR, once answered. */
  delivery?: { status: string; attempts: number; lastError?: string; lastOutcome?: OperationOutcome; remoteQuestion?: string; remoteAnswer?: string; deliveredAt?: string };
}

interface Row {
  id: string;
  task_id: string;
  asked_at: string | Date;
  due_at: string | Date;
  answer_id: string | null;
  answered_at: string | Date | null;
  delivery_status: string | null;
  attempts: number;
  last_error: string | null;
  last_outcome: OperationOutcome | null;
  remote_question: string | null;
  remote_answer: string | null;
  delivered_at: string | Date | null;
  question: Communication | null;
  answer: Communication | null;
}

const iso = (v: string | Date) => new Date(v).toISOString();

/** The threads of `taskIds`, by Task id, oldest question first; `openOnly`: unanswered questions only (the worklist). */
export async function readFollowUpThreads(store: Pick<ResourceStore, 'database'>, taskIds: readonly string[], reader: Reader, now: Date, options: { openOnly?: boolean } = {}): Promise<Map<string, FollowUpEntry[]>> {
  const threads = new Map<string, FollowUpEntry[]>();
  if (taskIds.length === 0) return threads;
  const visible = (alias: string) => accessFilter(sql.raw(`${alias}.access`) as unknown as typeof resources.access, reader) ?? sql`true`;
  const result = (await store.database.execute(sql`
    SELECT f.*, q.content AS question, a.content AS answer
      FROM ${followUps} f
      LEFT JOIN ${resources} q ON q.resource_type = 'Communication' AND q.id = f.id AND ${visible('q')}
      LEFT JOIN ${resources} a ON a.resource_type = 'Communication' AND a.id = f.answer_id AND ${visible('a')}
     WHERE f.task_id = ANY(${textArray(taskIds)})${options.openOnly ? sql` AND f.answer_id IS NULL` : sql``}
     ORDER BY f.asked_at, f.id`)) as unknown as { rows: Row[] };
  for (const row of result.rows) {
    const due = iso(row.due_at);
    const entry: FollowUpEntry = {
      question: row.id,
      ...(row.question?.payload?.[0]?.contentString ? { text: row.question.payload[0].contentString } : {}),
      askedAt: iso(row.asked_at),
      due,
      overdue: !row.answer_id && new Date(due).getTime() < now.getTime(),
      ...(row.answer_id && row.answered_at
        ? { answer: { id: row.answer_id, ...(row.answer?.payload?.[0]?.contentString ? { text: row.answer.payload[0].contentString } : {}), answeredAt: iso(row.answered_at) } }
        : {}),
      ...(row.delivery_status
        ? {
            delivery: {
              status: row.delivery_status,
              attempts: row.attempts,
              ...(row.last_error ? { lastError: row.last_error } : {}),
              ...(row.last_outcome ? { lastOutcome: row.last_outcome } : {}),
              ...(row.remote_question ? { remoteQuestion: row.remote_question } : {}),
              ...(row.remote_answer ? { remoteAnswer: row.remote_answer } : {}),
              ...(row.delivered_at ? { deliveredAt: iso(row.delivered_at) } : {}),
            },
          }
        : {}),
    };
    threads.set(row.task_id, [...(threads.get(row.task_id) ?? []), entry]);
  }
  return threads;
}
