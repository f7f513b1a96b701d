/**
 * Consent withdrawn: `POST /second-opinions/{id}/consent-withdrawal`
 * `{ consultants?, reason? }`, the referrer recording, on the patient's behalf, that the patient no
 * longer consents to the records reaching some (or, without `consultants`, all) of the referral's
 * consulting clinics; and the same step when the service finds the EHR's Consent has become
 * inactive or rejected (access/disclosure-gate.ts).
 *
 * In one transaction, for each clinic: its open Task is cancelled by the transition table's
 * `withdraw-consent` (the reason in `statusReason`, a Provenance naming the referrer), its access
 * to the records is revoked (access/consent-withdrawal.ts), and an AuditEvent records the
 * withdrawal. The Task and its Provenance are the durable FHIR record of the withdrawal; the
 * revoked access lists are what every door enforces. No table of its own: a withdrawal is a fact
 * about one clinic's Task and its access, both already stored. What the clinic already delivered
 * stays: a submitted opinion (Task completed) is not touched, its post-back goes on, the referrer
 * reads it as before. A replay changes nothing and answers 200 with the same result.
 */
import { OperationOutcomeError, notFound } from '@medplum/core';
import type { Organization, Reference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { z } from 'zod';
import type { Caller } from '../access/caller.ts';
import { revokeDisclosure } from '../access/consent-withdrawal.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { issue, unprocessable } from '../fhir/outcomes.ts';
import { text } from '../intake/intake-request.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { lockOwnReferral, referrerAgent } from './referrer-actions.ts';
import { isTerminal } from './task-transitions.ts';
import { settleReferral, transitionTask } from './transition-task.ts';

export const ConsentWithdrawalSchema = z.strictObject({
  consultants: z
    .array(text(64))
    .min(1, 'name at least one consultant, or leave consultants out for all')
    .max(20)
    .refine((ids) => new Set(ids).size === ids.length, { message: 'must not name a consultant twice' })
    .optional(),
  reason: text(1000).optional(),
});

export interface WithdrawConsentDeps {
  store: ResourceStore;
  network: {
    get(id: string): { id: string; organization: { reference: string; display?: string } } | undefined;
    findByOrganization(reference: string): { id: string } | undefined;
  };
  audit: Pick<AuditLog, 'recordMany'>;
  now: () => Date;
}

export interface WithdrawnConsultant {
  participant: string;
  task: { id: string; status: Task['status']; statusReason?: string };
  /** References whose access was revoked by this call (empty on a replay). */
  revoked: string[];
}

export interface ConsentWithdrawalResult {
  id: string;
  status: string;
  consultants: WithdrawnConsultant[];
}

const DEFAULT_REASON = 'the patient withdrew consent to disclose the records to this clinic';

/** The referrer's door: 404 unless the caller placed the referral; 422 naming a consultant that is not one of this referral's. */
export async function withdrawConsent(serviceRequestId: string, body: z.output<typeof ConsentWithdrawalSchema>, caller: Caller, deps: WithdrawConsentDeps): Promise<ConsentWithdrawalResult> {
  const agent = referrerAgent(caller, deps);
  return deps.store.withTransaction(async (tx) => {
    const { taskIds, serviceRequest } = await lockOwnReferral(tx, serviceRequestId, caller);
    const tasks = await tx.readMany<Task>('Task', taskIds, 'system');
    const ownerOf = (participantId: string) => deps.network.get(participantId)?.organization.reference;
    const named = body.consultants ?? [];
    const unknown = named.flatMap((id, i) => (tasks.some((t) => t.owner?.reference !== undefined && t.owner.reference === ownerOf(id)) ? [] : [issue('value', `'${id}' is not a consulting clinic of this referral`, `consultants[${i}]`)]));
    if (unknown.length > 0) throw unprocessable(unknown);
    const targets = body.consultants ?? consultantsOf(tasks, deps);
    // One statement per clinic, all in this transaction: the withdrawal commits whole or not at all.
    return withdrawInTransaction(tx, serviceRequest, tasks, targets, { reason: body.reason ?? DEFAULT_REASON, agent, actor: caller.participantId, ...(caller.clientId ? { clientId: caller.clientId } : {}) }, deps);
  });
}

/** The participants owning the referral's Tasks. */
function consultantsOf(tasks: readonly Task[], deps: Pick<WithdrawConsentDeps, 'network'>): string[] {
  return tasks.flatMap((t) => {
    const participant = t.owner?.reference ? deps.network.findByOrganization(t.owner.reference) : undefined;
    return participant ? [participant.id] : [];
  });
}

/**
 * The withdrawal for `participants`, in `tx`: cancels each one's open Task, revokes its access,
 * audits it, and settles the referral when every Task has ended. Shared by the referrer's door and
 * the EHR Consent re-check (`agent` is then the referrer's organization: its EHR said so).
 */
export async function withdrawInTransaction(
  tx: ResourceStore,
  serviceRequest: ServiceRequest,
  tasks: readonly Task[],
  participants: readonly string[],
  how: { reason: string; agent: Reference<Organization>; actor: string; clientId?: string },
  deps: WithdrawConsentDeps,
): Promise<ConsentWithdrawalResult> {
  const now = deps.now();
  const results: WithdrawnConsultant[] = [];
  for (const participantId of participants) {
    const owner = deps.network.get(participantId)?.organization.reference;
    const task = tasks.find((t) => t.owner?.reference === owner);
    if (!task) continue;
    const statusReason = `Consent withdrawn: ${how.reason}`;
    const updated = isTerminal(task.status)
      ? task
      : await transitionTask(tx, {
          task,
          action: 'withdraw-consent',
          actor: 'referrer',
          agent: how.agent,
          now,
          change: (next) => ({ ...next, statusReason: { text: statusReason }, note: [...(next.note ?? []), { authorReference: how.agent, time: now.toISOString(), text: statusReason }] }),
        });
    const revoked = await revokeDisclosure(tx, serviceRequest, participantId);
    if (updated !== task || revoked.length > 0) {
      await deps.audit.recordMany(
        [
          {
            action: 'update',
            outcome: 'success',
            agent: { participantId: how.actor, ...(how.clientId ? { clientId: how.clientId } : {}) },
            entities: [{ reference: `ServiceRequest/${serviceRequest.id}` }, { reference: `Task/${task.id}` }, ...revoked.map((reference) => ({ reference }))],
            description: `Consent to disclose the records to ${participantId} withdrawn: its Task cancelled, its access to ${revoked.length} record-set resources revoked`,
          },
        ],
        tx,
      );
    }
    results.push({ participant: participantId, task: { id: updated.id as string, status: updated.status, ...(updated.statusReason?.text ? { statusReason: updated.statusReason.text } : {}) }, revoked });
  }
  const taskIds = tasks.map((t) => t.id as string);
  const settled = await settleReferral(tx, serviceRequest.id as string, taskIds);
  const current = settled ?? (await tx.read<ServiceRequest>('ServiceRequest', serviceRequest.id as string, 'system'));
  if (!current) throw new OperationOutcomeError(notFound);
  return { id: serviceRequest.id as string, status: current.status, consultants: results };
}
