/**
 * `PUT /fhir/Task/{id}` and `PATCH /fhir/Task/{id}`: clinics work their Tasks,
 * and referrers cancel them or answer their requests for information, with FHIR updates. One
 * model, several doors: the update is read as one action of the transition table
 * (task-change.ts) and handed to the same use case the JSON door calls (`actOnConsult`,
 * `submitOpinion`, `cancelReferralTask`, `answerTaskInformationRequest`), so validation,
 * transitions, Provenance, post-back, blinding and audit are theirs, not this door's.
 */
import { applyPatch, notFound, OperationOutcomeError, type Operation } from '@medplum/core';
import { fhirPathPatchToJsonPatch } from './fhirpath-patch.ts';
import type { Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { requireRole, requireScope, type Caller } from '../access/caller.ts';
import { readerOf } from '../access/reader.ts';
import { actOnConsult } from '../consults/consult-actions.ts';
import { answerTaskInformationRequest, cancelReferralTask, type ReferrerActionDeps } from '../consults/referrer-actions.ts';
import { submitOpinion, type SubmitOpinionDeps } from '../consults/submit-opinion.ts';
import { HttpOutcomeError, invalid, issue, outcome, unprocessable } from '../fhir/outcomes.ts';
import { intakeRequests } from '../store/schema.ts';
import { elementPath, planTaskChange, requireTaskBody, type TaskSide } from './task-change.ts';

export type TaskUpdateDeps = SubmitOpinionDeps & ReferrerActionDeps;

/**
 * The caller's side of the Task it may see: the consultant whose Organization owns it, or the
 * referrer that placed its referral; 404 for anyone else, whether or not the Task exists.
 * Each side needs the scope its JSON door needs (`Task.u`; `ServiceRequest.c` for the referrer's cancel and answer).
 */
async function readTaskFor(taskId: string, caller: Caller, deps: TaskUpdateDeps): Promise<{ task: Task; side: TaskSide }> {
  const task = await deps.store.read<Task>('Task', taskId, readerOf(caller));
  if (!task) throw new OperationOutcomeError(notFound);
  const organization = deps.network.get(caller.participantId)?.organization.reference;
  if (caller.roles.includes('consultant') && organization !== undefined && task.owner?.reference === organization) {
    requireScope(caller, 'Task', 'u');
    return { task, side: 'consultant' };
  }
  const serviceRequestId = (task.focus?.reference ?? '').replace(/^ServiceRequest\//, '');
  const [intake] = await deps.store.database.select({ participantId: intakeRequests.participantId }).from(intakeRequests).where(eq(intakeRequests.serviceRequestId, serviceRequestId));
  if (intake?.participantId !== caller.participantId) throw new OperationOutcomeError(notFound);
  requireRole(caller, 'referrer');
  requireScope(caller, 'ServiceRequest', 'c');
  return { task, side: 'referrer' };
}

/** 412 when the client's `If-Match` is not the stored version (before the difference is read against it). */
function checkVersion(task: Task, ifMatch: string | undefined): void {
  if (ifMatch === undefined || ifMatch === task.meta?.versionId) return;
  throw new OperationOutcomeError({ ...outcome([issue('conflict', `The Task is at version ${task.meta?.versionId}, not ${ifMatch}: read it again`, 'If-Match')]), id: 'precondition-failed' });
}

/**
 * Runs what `proposed` means on `stored` through the JSON door's use case. The version the
 * difference was read against travels as the use case's expected version: a Task that moved
 * on in between answers 412, never a lost update.
 */
async function apply(stored: Task, side: TaskSide, proposed: Task & Record<string, unknown>, caller: Caller, deps: TaskUpdateDeps): Promise<Task> {
  const change = planTaskChange(stored, proposed, side);
  const id = stored.id as string;
  const version = stored.meta?.versionId;
  switch (change.kind) {
    case 'none':
      return stored;
    case 'consult-action':
      return actOnConsult(id, change.body, caller, deps, version);
    case 'opinion':
      return inConsultNoteTerms(change.answersAt, () => submitOpinion(id, change.opinion, caller, deps, version));
    case 'cancel':
      return cancelReferralTask(id, { reason: change.reason }, caller, deps, version);
    case 'answer':
      return answerTaskInformationRequest(id, { text: change.text }, caller, deps, version);
  }
}

/**
 * The answer rule (opinions/answers.ts) names `answers[...]` as the JSON door has them; over
 * FHIR the answers are the contained consult note's extensions, so its 422 names those.
 */
async function inConsultNoteTerms(answersAt: (expression: string) => string, fn: () => Promise<Task>): Promise<Task> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof HttpOutcomeError) || err.status !== 422) throw err;
    throw unprocessable((err.outcome.issue ?? []).map((i) => ({ ...i, ...(i.expression ? { expression: i.expression.map(answersAt) } : {}) })));
  }
}

/** `PUT /fhir/Task/{id}`: the whole Task as the client wants it; returns the Task as stored after the action. */
export async function updateTask(taskId: string, body: unknown, caller: Caller, deps: TaskUpdateDeps, ifMatch?: string): Promise<Task> {
  const proposed = requireTaskBody(body, taskId);
  const { task, side } = await readTaskFor(taskId, caller, deps);
  checkVersion(task, ifMatch);
  return apply(task, side, proposed, caller, deps);
}

/**
 * `PATCH /fhir/Task/{id}` with a JSON Patch (RFC 6902), or a FHIRPath Patch (`Parameters`, translated
 * to JSON Patch by fhirpath-patch.ts): applied to the stored Task (the
 * `If-Match` version), then read exactly as a `PUT` of the result. A failed `test` or a path
 * that does not exist is 422 naming the element.
 */
export async function patchTask(taskId: string, patch: unknown, caller: Caller, deps: TaskUpdateDeps, ifMatch?: string, form: 'json-patch' | 'fhirpath-patch' = 'json-patch'): Promise<Task> {
  const jsonPatch = form === 'json-patch' ? requireJsonPatch(patch) : undefined;
  const { task, side } = await readTaskFor(taskId, caller, deps);
  checkVersion(task, ifMatch);
  // A FHIRPath Patch is translated against the stored Task (an add appends to a list or sets a single element).
  const operations = jsonPatch ?? fhirPathPatchToJsonPatch(patch, task);
  const patched = structuredClone(task) as Task & Record<string, unknown>;
  const results = applyPatch(patched, operations);
  const failed = results.flatMap((r, i) => (r ? [issue(r.name === 'TestError' ? 'conflict' : 'processing', `Patch operation ${i} (${operations[i]?.op} ${operations[i]?.path}) failed: ${r.name}`, pointerPath(operations[i]?.path ?? ''))] : []));
  if (failed.length) throw unprocessable(failed);
  return apply(task, side, requireTaskBody(patched, taskId), caller, deps);
}

const OPS = new Set(['add', 'remove', 'replace', 'move', 'copy', 'test']);

/** 400 unless `patch` is a JSON Patch document: an array of operations with a known `op` and a string `path`. */
function requireJsonPatch(patch: unknown): Operation[] {
  if (!Array.isArray(patch)) throw invalid([issue('invalid', 'The body must be a JSON Patch document (an array of operations)')]);
  const problems = patch.flatMap((op: unknown, i) => {
    const o = op as { op?: unknown; path?: unknown; from?: unknown } | null;
    if (o === null || typeof o !== 'object' || !OPS.has(o.op as string) || typeof o.path !== 'string' || (['move', 'copy'].includes(o.op as string) && typeof o.from !== 'string')) {
      return [issue('invalid', `Operation ${i} must have an op (${[...OPS].join(', ')}), a path${['move', 'copy'].includes(String(o?.op)) ? ' and a from' : ''}`, `[${i}]`)];
    }
    return [];
  });
  if (problems.length) throw invalid(problems);
  return patch as Operation[];
}

/** `/output/0/valueReference` -> `Task.output[0].valueReference` (JSON Pointer to FHIRPath, RFC 6901 escapes undone). */
export function pointerPath(pointer: string): string {
  // `-` (the end of an array) names no element: the array itself is meant.
  const tokens = pointer.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~')).filter((t, i, all) => !(t === '-' && i === all.length - 1));
  return elementPath(tokens.map((t) => (/^\d+$/.test(t) ? Number(t) : t)));
}
