import { notFound, OperationOutcomeError } from '@medplum/core';
import type { ServiceRequest } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { readerOf } from '../access/reader.ts';
import { inReferralScope } from '../auth/referral-scope.ts';
import type { Caller } from '../access/caller.ts';
import type { Reader, ResourceStore } from '../store/resource-store.ts';
import { intakeRequests } from '../store/schema.ts';

export interface VisibleReferral {
  placed: { participantId: string; requestId: string; taskIds: string[]; recordsRevision: number };
  serviceRequest: ServiceRequest;
  /** How to read the referral's resources for this caller (access/reader.ts). */
  reader: Reader;
}

/**
 * The referral `id` if the caller may read it (auth/referral-scope.ts): placed by the caller,
 * or by the referrer a physician acts for and requested by one of its clinicians. Anyone else
 * gets 404, so ids reveal nothing.
 */
export async function findVisibleReferral(id: string, caller: Caller, store: ResourceStore): Promise<VisibleReferral> {
  const [placed] = await store.database
    .select({ participantId: intakeRequests.participantId, requestId: intakeRequests.requestId, taskIds: intakeRequests.taskIds, recordsRevision: intakeRequests.recordsRevision })
    .from(intakeRequests)
    .where(eq(intakeRequests.serviceRequestId, id));
  if (!placed || !caller.referrals || caller.referrals.referrer !== placed.participantId) throw new OperationOutcomeError(notFound);
  const reader = readerOf(caller);
  const serviceRequest = await store.read<ServiceRequest>('ServiceRequest', id, reader);
  if (!serviceRequest || !inReferralScope(caller.referrals, placed.participantId, serviceRequest.requester?.reference)) throw new OperationOutcomeError(notFound);
  return { placed, serviceRequest, reader };
}
