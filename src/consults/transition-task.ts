/**
 * Changing a consultant Task: the one place a Task's status moves. Checks the
 * transition table (who may take the action, from which status), the caller's `If-Match`
 * version, and writes the new Task version with a Provenance in the caller's transaction.
 * A concurrent change of the same Task makes the slower writer fail with 412 (the store's
 * version check), never a lost update.
 */
import { OperationOutcomeError } from '@medplum/core';
import type { Organization, Provenance, Reference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { randomUUID } from 'node:crypto';
import { SYSTEM } from '../fhir/constants.ts';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import type { BatchCreate, ResourceStore, VersionedWrite } from '../store/resource-store.ts';
import { type Actor, isTerminal, planTransition, type TaskAction } from './task-transitions.ts';

/** A conflict with the Task's current status: 409 naming the status and what is allowed. */
export function transitionRefused(task: Task, action: TaskAction, allowed: readonly string[], why?: string): HttpOutcomeError {
  const text =
    why ??
    `'${action}' is not allowed on a Task that is ${task.status}` +
      (task.businessStatus?.coding?.[0]?.code ? ` (${task.businessStatus.coding[0].code})` : '') +
      `; allowed now: ${allowed.length > 0 ? allowed.join(', ') : 'none'}`;
  return new HttpOutcomeError(409, outcome([issue('business-rule', text, 'Task.status')]));
}

/** `W/"3"`, `"3"` or `3` -> `3`; undefined when absent. 400 when it is not a version. */
export function parseIfMatch(header: string | undefined): string | undefined {
  if (header === undefined || header === '') return undefined;
  const match = /^(?:W\/)?"?(\d+)"?$/.exec(header.trim());
  if (!match) throw new HttpOutcomeError(400, outcome([issue('value', `If-Match must be a version ETag such as W/"2"`, 'If-Match')]));
  return match[1];
}

export interface TransitionArgs {
  task: Task;
  action: TaskAction;
  actor: Actor;
  /** Who acts, for the Provenance: the participant's Organization (and display). */
  agent: Reference<Organization>;
  /** Applies the action's own changes (statusReason, note, output, business status) to the new version. */
  change: (next: Task) => Task;
  /** The version the caller last saw (If-Match); the current one otherwise. */
  expectedVersion?: string;
  now: Date;
  /** Extra checks on the current Task (e.g. records must be ready): return the reason to refuse. */
  precondition?: (task: Task) => string | undefined;
}

/** A Task change ready to write: the new version and its Provenance (readable by whoever may read the Task). */
export interface PlannedTransition {
  update: VersionedWrite<Task>;
  provenance: BatchCreate;
}

/**
 * Checks a transition and builds what it writes, without writing: the table, the precondition
 * and the caller's If-Match are checked here; the store checks the version again as it writes.
 * `index` is the position the Task's update will have in the write batch (its Provenance is
 * readable by whoever may read that new version).
 */
export function planTaskTransition(args: TransitionArgs, index = 0): PlannedTransition {
  const { task, action, actor, now } = args;
  const plan = planTransition(task.status, action, actor);
  if (!plan.ok) throw transitionRefused(task, action, plan.allowed);
  const refusal = args.precondition?.(task);
  if (refusal) throw transitionRefused(task, action, [], refusal);
  if (args.expectedVersion !== undefined && args.expectedVersion !== task.meta?.versionId) {
    throw new OperationOutcomeError({
      ...outcome([issue('conflict', `The Task is at version ${task.meta?.versionId}, not ${args.expectedVersion}: read it again`, 'If-Match')]),
      id: 'precondition-failed',
    });
  }
  const current = task.meta?.versionId ?? '';
  if (!/^\d+$/.test(current)) throw new Error(`Task ${task.id} has no version`);
  const next = args.change({ ...task, ...(plan.transition.to ? { status: plan.transition.to } : {}), lastModified: now.toISOString() });
  const provenance: Provenance = {
    resourceType: 'Provenance',
    id: randomUUID(),
    target: [{ reference: `Task/${task.id}/_history/${Number(current) + 1}` }],
    recorded: now.toISOString(),
    activity: { coding: [{ system: SYSTEM.dataOperation, code: 'UPDATE', display: 'revise' }] },
    reason: [{ text: `${action}: ${plan.transition.description}` }],
    agent: [
      {
        type: { coding: [{ system: SYSTEM.provenanceParticipantType, code: 'author', display: 'Author' }] },
        who: args.agent,
      },
    ],
  };
  // Whoever may read the Task may read who changed it.
  return { update: { resource: next, expectedVersion: current }, provenance: { resource: provenance, access: { sameAs: index } } };
}

/** Moves a Task by the table and records who did it, in one statement in `tx`; returns the new version. */
export async function transitionTask(tx: ResourceStore, args: TransitionArgs): Promise<Task> {
  const { update, provenance } = planTaskTransition(args);
  const { updated } = await tx.write({ updates: [update], creates: [provenance] });
  return updated[0] as Task;
}

/**
 * When every Task of a referral has ended, the referral ends too: `completed` when at least
 * one opinion came back, `revoked` otherwise (ServiceRequest active -> completed | revoked).
 */
export async function settleReferral(tx: ResourceStore, serviceRequestId: string, taskIds: readonly string[]): Promise<ServiceRequest | undefined> {
  const tasks = await tx.readMany<Task>('Task', taskIds, 'system');
  if (tasks.length === 0 || !tasks.every((t) => isTerminal(t.status))) return undefined;
  const serviceRequest = await tx.read<ServiceRequest>('ServiceRequest', serviceRequestId, 'system');
  if (!serviceRequest || serviceRequest.status !== 'active') return undefined;
  const status = tasks.some((t) => t.status === 'completed') ? 'completed' : 'revoked';
  return tx.update<ServiceRequest>({ ...serviceRequest, status }, { expectedVersion: serviceRequest.meta?.versionId });
}

/**
 * Whether a `revoked` referral ended only because none of its clinics could be served: no
 * opinion came back, no Task was cancelled (by the referrer, or by a withdrawal of consent), and
 * at least one `failed` because its record set could not be assembled (the others, if any,
 * declined). Nobody decided to end such a referral, so the referrer may take it up again: add
 * records to it and ask clinics again (`POST /second-opinions/{id}/consultants`), which makes it
 * `active` once more.
 */
export function endedForWantOfRecords(serviceRequest: ServiceRequest, tasks: readonly Task[]): boolean {
  return (
    serviceRequest.status === 'revoked' &&
    tasks.length > 0 &&
    tasks.every((t) => t.status === 'failed' || t.status === 'rejected') &&
    tasks.some((t) => t.status === 'failed')
  );
}
