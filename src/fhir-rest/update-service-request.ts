/**
 * `PUT /fhir/ServiceRequest/{id}`: the referrer revokes its referral with a FHIR
 * update, as `POST /second-opinions/{id}/cancel` does. One model, several doors: the update is
 * read as the one change it may be (`status` active -> revoked, the reason in a new `note`) and
 * handed to `cancelReferral`, whose checks, Task transitions, Provenance and audit are the
 * JSON door's.
 *
 * R4 ServiceRequest has no `statusReason`: the reason travels as one new `note` entry appended
 * to the stored notes (its text; author and time are the service's). Every Task of the referral
 * not yet ended is cancelled with that reason, or, once its clinic started work, the clinic is
 * asked to stop; the referral is `revoked` when every Task has ended.
 *
 * @see https://hl7.org/fhir/R4/servicerequest.html (status: revoked)
 * @see https://hl7.org/fhir/R4/http.html#update
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { ServiceRequest } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import type { Caller } from '../access/caller.ts';
import { readerOf } from '../access/reader.ts';
import { CancelRequestSchema, cancelReferral, type ReferrerActionDeps } from '../consults/referrer-actions.ts';
import { issue, outcome, unprocessable } from '../fhir/outcomes.ts';
import { intakeRequests } from '../store/schema.ts';
import { addedNoteText, changedElements, requireResourceBody } from './task-change.ts';

/** What a FHIR update of a ServiceRequest amounts to: nothing, or the referrer's cancel with its reason. */
export type ServiceRequestChange = { kind: 'none' } | { kind: 'revoke'; reason: string };

/**
 * Pure: the difference between `stored` and `proposed`. Only `status` -> `revoked` with one new
 * `note` (the reason) is an action; any other change is 422 naming the element.
 */
export function planServiceRequestChange(stored: ServiceRequest, proposed: Record<string, unknown> & ServiceRequest): ServiceRequestChange {
  const changed = changedElements(stored, proposed);
  if (changed.length === 0) return { kind: 'none' };
  if (changed.includes('status') && proposed.status !== 'revoked') {
    throw unprocessable([issue('business-rule', `The referrer may only set a ServiceRequest's status to 'revoked' (cancel the referral), not '${String(proposed.status)}'`, 'ServiceRequest.status')]);
  }
  const refused = changed.filter((k) => k !== 'status' && k !== 'note');
  const alone = !changed.includes('status');
  if (refused.length || alone) {
    const why = (k: string) =>
      alone && k === 'note'
        ? 'ServiceRequest.note changes only with status revoked (the reason for revoking)'
        : `ServiceRequest.${k} cannot change over FHIR: the referrer may only revoke the referral (status revoked, the reason as a new note)`;
    throw unprocessable((alone ? changed : refused).map((k) => issue('business-rule', why(k), `ServiceRequest.${k}`)));
  }
  const text = addedNoteText(stored.note, proposed.note, 'ServiceRequest', 'the reason for revoking the referral');
  const parsed = CancelRequestSchema.safeParse({ reason: text });
  const at = `ServiceRequest.note[${stored.note?.length ?? 0}].text`;
  if (!parsed.success) throw unprocessable(parsed.error.issues.map((i) => issue('value', `${at}: ${i.message}`, at)));
  return { kind: 'revoke', reason: parsed.data.reason };
}

/**
 * `PUT /fhir/ServiceRequest/{id}`: the referral as the referrer wants it; returns it as stored
 * after the cancel (still `active` while a clinic that started work has not confirmed). Only the
 * referrer that placed it may (404 for anyone else, as the JSON cancel); `If-Match` is honoured
 * up to the cancel's own transaction (412).
 */
export async function updateServiceRequest(id: string, body: unknown, caller: Caller, deps: ReferrerActionDeps, ifMatch?: string): Promise<ServiceRequest> {
  const proposed = requireResourceBody<ServiceRequest>(body, 'ServiceRequest', id);
  const stored = await deps.store.read<ServiceRequest>('ServiceRequest', id, readerOf(caller));
  const [intake] = stored ? await deps.store.database.select({ participantId: intakeRequests.participantId }).from(intakeRequests).where(eq(intakeRequests.serviceRequestId, id)) : [];
  if (!stored || intake?.participantId !== caller.participantId) throw new OperationOutcomeError(notFound);
  if (ifMatch !== undefined && ifMatch !== stored.meta?.versionId) {
    throw new OperationOutcomeError({ ...outcome([issue('conflict', `The ServiceRequest is at version ${stored.meta?.versionId}, not ${ifMatch}: read it again`, 'If-Match')]), id: 'precondition-failed' });
  }
  const change = planServiceRequestChange(stored, proposed);
  if (change.kind === 'none') return stored;
  await cancelReferral(id, { reason: change.reason }, caller, deps, stored.meta?.versionId);
  return (await deps.store.read<ServiceRequest>('ServiceRequest', id, readerOf(caller))) as ServiceRequest;
}
