/**
 * What a FHIR update of a Task means: the difference between the stored Task and
 * the one a clinic (or the referrer) sends, turned into one action of the transition table
 * (src/consults/task-transitions.ts) with the same input the JSON door builds. Pure: no store,
 * no caller; the use case (update-task.ts) runs the action through the same use cases as
 * `/consults/{id}/...` and `/second-opinions/{id}/cancel`.
 *
 * A change of `status` names the action; the elements that action carries (`statusReason`,
 * `businessStatus`, `output` with a contained consult note, the referrer's answer as a new
 * `note`) may change with it; anything else
 * (`for`, `focus`, `owner`, `requester`, `intent`, `code`, `note`, ...) is refused with 422
 * naming the element. `meta` and `lastModified` are the server's and are ignored.
 *
 * @see https://hl7.org/fhir/R4/task.html#statemachine
 * @see https://hl7.org/fhir/R4/http.html#update
 */
import type { Annotation, Attachment, DocumentReference, OperationOutcomeIssue, Resource, Task } from '@medplum/fhirtypes';
import { isDeepStrictEqual } from 'node:util';
import type { z } from 'zod';
import type { ConsultActionBody } from '../consults/consult-actions.ts';
import { DeclineSchema, RequestInfoSchema } from '../consults/consult-actions.ts';
import { CancelRequestSchema, InfoAnswerSchema } from '../consults/referrer-actions.ts';
import type { TaskAction } from '../consults/task-transitions.ts';
import { EXTENSION, LOINC_DOC, SYSTEM } from '../fhir/constants.ts';
import { invalid, issue, unprocessable } from '../fhir/outcomes.ts';
import { findUnstorableText } from '../fhir/unstorable-text.ts';
import { readOpinionExtension } from '../opinions/consult-note.ts';
import { AGREEMENT, type Opinion, OpinionSchema } from '../opinions/opinion.ts';

/** Which side of the Task the caller is on: the clinic owning it, or the referrer that placed its referral. */
export type TaskSide = 'consultant' | 'referrer';

/** The action a FHIR update amounts to, with the input the JSON door would have parsed. */
export type TaskChange =
  | { kind: 'none' }
  | { kind: 'consult-action'; body: ConsultActionBody }
  | { kind: 'opinion'; opinion: Opinion; answersAt: (expression: string) => string }
  | { kind: 'cancel'; reason: string }
  | { kind: 'answer'; text: string };

/** The elements of a resource the server manages: what a client sends in them is ignored. */
const SERVER_ELEMENTS = new Set(['resourceType', 'id', 'meta', 'lastModified']);

/**
 * Each status a side may set, the action it means, and the elements that action may change
 * besides `status` (the Task-over-FHIR table in docs/consults.md is this one).
 */
export const STATUS_ACTIONS: Record<TaskSide, Partial<Record<Task['status'], { action: TaskAction; carries: readonly string[] }>>> = {
  consultant: {
    received: { action: 'receive', carries: [] },
    accepted: { action: 'accept', carries: [] },
    rejected: { action: 'decline', carries: ['statusReason'] },
    'in-progress': { action: 'start', carries: [] },
    'on-hold': { action: 'request-info', carries: ['businessStatus'] },
    completed: { action: 'complete', carries: ['output', 'contained'] },
    cancelled: { action: 'confirm-cancellation', carries: [] },
  },
  referrer: {
    cancelled: { action: 'cancel', carries: ['statusReason'] },
    'in-progress': { action: 'resume', carries: ['note'] },
  },
};

/** The top-level elements whose value differs between the stored and the proposed Task, in a stable order. */
export function changedElements(stored: Resource, proposed: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(stored), ...Object.keys(proposed)]);
  return [...keys].filter((k) => !SERVER_ELEMENTS.has(k) && !isDeepStrictEqual((stored as unknown as Record<string, unknown>)[k], proposed[k])).sort();
}

/** 400 unless `body` is a Task with the id of the URL (FHIR update: the ids must agree), with text the store can hold. */
export function requireTaskBody(body: unknown, taskId: string): Record<string, unknown> & Task {
  return requireResourceBody<Task>(body, 'Task', taskId);
}

/** 400 unless `body` is a `type` with the id of the URL (FHIR update: the ids must agree), with text the store can hold. */
export function requireResourceBody<T extends Resource>(body: unknown, type: T['resourceType'], id: string): Record<string, unknown> & T {
  if (body === null || typeof body !== 'object' || Array.isArray(body) || (body as { resourceType?: unknown }).resourceType !== type) {
    throw invalid([issue('invalid', `The body must be a ${type} resource`, `${type}.resourceType`)]);
  }
  if ((body as { id?: unknown }).id !== id) throw invalid([issue('value', `${type}.id must be the id of the URL (${id})`, `${type}.id`)]);
  const unstorable = findUnstorableText(body);
  if (unstorable.length) throw invalid(unstorable.map(({ path, reason }) => issue('value', `${elementPath(path, type)} ${reason}`, elementPath(path, type))));
  return body as Record<string, unknown> & T;
}

/** `['output', 0, 'valueReference']` -> `Task.output[0].valueReference`. */
export function elementPath(path: readonly PropertyKey[], root = 'Task'): string {
  return path.reduce<string>((out, p) => (typeof p === 'number' ? `${out}[${p}]` : `${out}.${String(p)}`), root);
}

/** zod issues of one value as 422 issues naming it where it sits in the Task. */
function schemaIssues(result: z.ZodSafeParseResult<unknown>, where: (path: readonly PropertyKey[]) => string): OperationOutcomeIssue[] {
  if (result.success) return [];
  return result.error.issues.map((i) => issue(i.code === 'invalid_type' && i.message.includes('undefined') ? 'required' : 'value', `${where(i.path)}: ${i.message}`, where(i.path)));
}

/**
 * Turns the difference between `stored` and `proposed` into one action of `side`; 422 naming
 * every element that may not change (or does not say what the action needs).
 */
export function planTaskChange(stored: Task, proposed: Record<string, unknown> & Task, side: TaskSide): TaskChange {
  const changed = changedElements(stored, proposed);
  if (changed.length === 0) return { kind: 'none' };
  const setting = changed.includes('status') ? STATUS_ACTIONS[side][proposed.status] : undefined;
  if (changed.includes('status') && !setting) {
    const allowed = Object.keys(STATUS_ACTIONS[side]).join(', ');
    throw unprocessable([issue('business-rule', `The ${side} cannot set a Task's status to '${String(proposed.status)}' over FHIR; it may set: ${allowed}`, 'Task.status')]);
  }
  const carried = new Set(['status', ...(setting?.carries ?? [])]);
  const refused = changed.filter((k) => !carried.has(k));
  if (refused.length) {
    const why = setting
      ? (k: string) => `Task.${k} cannot change when the ${side} sets status '${proposed.status}' (${setting.action}); only ${[...carried].map((c) => `Task.${c}`).join(', ')} may`
      : (k: string) => `Task.${k} cannot change on its own: a Task changes by its status (the actions of the transition table)`;
    throw unprocessable(refused.map((k) => issue('business-rule', why(k), `Task.${k}`)));
  }
  const action = setting?.action as TaskAction;
  switch (action) {
    case 'decline': {
      const parsed = DeclineSchema.safeParse({ reason: proposed.statusReason?.text });
      if (!parsed.success) throw unprocessable(schemaIssues(parsed, () => 'Task.statusReason.text'));
      return { kind: 'consult-action', body: { action: 'decline', reason: parsed.data.reason } };
    }
    case 'cancel': {
      const parsed = CancelRequestSchema.safeParse({ reason: proposed.statusReason?.text });
      if (!parsed.success) throw unprocessable(schemaIssues(parsed, () => 'Task.statusReason.text'));
      return { kind: 'cancel', reason: parsed.data.reason };
    }
    case 'request-info': {
      const coded = proposed.businessStatus?.coding?.some((c) => c.system === SYSTEM.taskBusinessStatus && c.code === 'information-requested');
      if (!coded) throw unprocessable([issue('required', `Task.businessStatus must carry ${SYSTEM.taskBusinessStatus}#information-requested when the Task goes on-hold`, 'Task.businessStatus.coding')]);
      const parsed = RequestInfoSchema.safeParse({ question: proposed.businessStatus?.text });
      if (!parsed.success) throw unprocessable(schemaIssues(parsed, () => 'Task.businessStatus.text'));
      return { kind: 'consult-action', body: { action: 'request-info', question: parsed.data.question } };
    }
    case 'resume': {
      const text = addedNoteText(stored.note, proposed.note, 'Task', 'the answer to the request for information');
      const parsed = InfoAnswerSchema.safeParse({ text });
      if (!parsed.success) throw unprocessable(schemaIssues(parsed, () => `Task.note[${stored.note?.length ?? 0}].text`));
      return { kind: 'answer', text: parsed.data.text as string };
    }
    case 'complete':
      return { kind: 'opinion', opinion: opinionFromOutput(proposed), answersAt: answersInConsultNote(proposed) };
    default:
      return { kind: 'consult-action', body: { action: action as 'receive' | 'accept' | 'start' | 'confirm-cancellation' } };
  }
}

/**
 * The text of the one note a client appended (`Resource.note`, an Annotation list the server
 * also writes to): the stored notes must come first, unchanged, then exactly one new entry
 * with a `text`. Its author and time are the server's to set (the caller's Organization, now).
 * 422 naming `{type}.note` otherwise.
 */
export function addedNoteText(stored: readonly Annotation[] | undefined, proposed: unknown, type: string, what: string): string {
  const before = stored ?? [];
  const after = Array.isArray(proposed) ? (proposed as Annotation[]) : [];
  const kept = after.length === before.length + 1 && before.every((n, i) => isDeepStrictEqual(n, after[i]));
  if (!kept) {
    throw unprocessable([issue('required', `${type}.note must be the stored notes, unchanged, followed by one new note whose text is ${what}`, `${type}.note`)]);
  }
  const text = after[before.length]?.text;
  if (typeof text !== 'string' || text.trim() === '') throw unprocessable([issue('required', `The new note must have a text: ${what}`, `${type}.note[${before.length}].text`)]);
  return text;
}

/**
 * The opinion of a completed Task: `output` names one contained DocumentReference (consult
 * note, LOINC 11488-4) whose `second-opinion` extensions hold the structured points (as our
 * consult-note profile carries them) and whose attachments are the opinion's files. The
 * readable note is rendered by the service, as for `POST /consults/{id}/opinion`. So is the
 * note's `concordance` extension: the service classifies the opinion against the first one
 * when it is submitted (concordance/classify.ts); a value the client put there is not read.
 */
export function opinionFromOutput(task: Task): Opinion {
  const output = task.output ?? [];
  const reference = output[0]?.valueReference?.reference;
  if (output.length !== 1 || !reference?.startsWith('#')) {
    throw unprocessable([issue('required', 'Task.output must be exactly one valueReference to the contained consult note (#id)', 'Task.output')]);
  }
  const contained = task.contained ?? [];
  const index = contained.findIndex((r) => r.id === reference.slice(1));
  const at = `Task.contained[${index}]`;
  if (index < 0 || contained[index]?.resourceType !== 'DocumentReference') {
    throw unprocessable([issue('not-found', `Task.output[0].valueReference ${reference} names no contained DocumentReference`, 'Task.output[0].valueReference')]);
  }
  const extra = contained.map((_, i) => i).filter((i) => i !== index);
  if (extra.length) throw unprocessable(extra.map((i) => issue('business-rule', 'Only the consult note may be contained', `Task.contained[${i}]`)));
  const doc = contained[index] as DocumentReference;
  if (!doc.type?.coding?.some((c) => c.system === SYSTEM.loinc && c.code === LOINC_DOC.consultNote.code)) {
    throw unprocessable([issue('value', `The consult note's type must be LOINC ${LOINC_DOC.consultNote.code}`, `${at}.type`)]);
  }
  const root = doc.extension?.find((e) => e.url === EXTENSION.secondOpinion);
  if (!root) throw unprocessable([issue('required', `The consult note must carry the opinion's points (extension ${EXTENSION.secondOpinion})`, `${at}.extension`)]);
  const problems: OperationOutcomeIssue[] = [];
  for (const point of ['diagnosisAgreement', 'planAgreement']) {
    const code = root.extension?.find((e) => e.url === point)?.valueCoding?.code;
    if (!(AGREEMENT as readonly string[]).includes(code ?? '')) {
      problems.push(issue(code === undefined ? 'required' : 'value', `${point} must be one of ${AGREEMENT.join(', ')}`, `${at}.extension('${EXTENSION.secondOpinion}').extension('${point}')`));
    }
  }
  if (problems.length) throw unprocessable(problems);
  const attachments = (doc.content ?? []).map((c, i) => ({ a: c.attachment as Attachment | undefined, i }));
  const linked = attachments.filter(({ a }) => a?.data === undefined);
  if (linked.length) throw unprocessable(linked.map(({ i }) => issue('required', 'Opinion attachments must be inline (data): the service does not fetch URLs', `${at}.content[${i}].attachment.data`)));
  const candidate = {
    ...readOpinionExtension(doc),
    attachments: attachments.map(({ a }) => ({ contentType: a?.contentType, ...(a?.title ? { title: a.title } : {}), data: a?.data })),
  };
  const parsed = OpinionSchema.safeParse(candidate);
  if (!parsed.success) {
    const answersAt = answersInConsultNote(task);
    throw unprocessable(
      schemaIssues(parsed, (path) =>
        path[0] === 'attachments'
          ? elementPath(['content', path[1] ?? 0, 'attachment', ...path.slice(2)], at)
          : path[0] === 'answers'
            ? answersAt(`answers${path[1] !== undefined ? `[${String(path[1])}]` : ''}${path[2] !== undefined ? `.${String(path[2])}` : ''}`)
            : `${at}.extension('${EXTENSION.secondOpinion}')`,
      ),
    );
  }
  return parsed.data;
}

/**
 * Where a consult note sent over FHIR keeps the answers to the referral's questions: turns the
 * JSON door's expressions (`answers`, `answers[1].question`, from the opinion's schema and the
 * rule in opinions/answers.ts) into the contained note's `second-opinion-answer` extensions.
 */
export function answersInConsultNote(task: Task): (expression: string) => string {
  const id = task.output?.[0]?.valueReference?.reference?.slice(1);
  const base = `Task.contained[${(task.contained ?? []).findIndex((r) => r.id === id)}].extension('${EXTENSION.secondOpinionAnswer}')`;
  return (expression) => {
    const m = /^answers(?:\[(\d+)\](?:\.(\w+))?)?$/.exec(expression);
    if (!m) return expression;
    return m[1] === undefined ? base : `${base}[${m[1]}]${m[2] ? `.extension('${m[2]}')` : ''}`;
  };
}
