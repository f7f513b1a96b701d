import { notFound, OperationOutcomeError } from '@medplum/core';
import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { and, eq } from 'drizzle-orm';
import { z } from 'zod';
import { absoluteReference, sameResourceReference } from '../fhir/references.ts';
import { conflictError } from '../fhir/outcomes.ts';
import type { Caller } from '../access/caller.ts';
import { QUEUE, type AssembleRecordSetJob } from '../jobs/queues.ts';
import { intakeRequests, recordSetAssemblies } from '../store/schema.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import type { IntakeDeps } from './create-second-opinion.ts';
import { RecordRefSchema, type DocumentRef, type IntakeRequest } from './intake-request.ts';
import { readerOf } from '../access/reader.ts';
import { endedForWantOfRecords } from '../consults/transition-task.ts';
import { documentReferences, refuseForeignReferences } from './own-server-references.ts';

/** The body of `POST /second-opinions/{id}/records`: records (documents, reports, imaging studies) on the referrer's EHR to add to the record set. */
export const AddRecordsRequestSchema = z.strictObject({
  documents: z.array(RecordRefSchema).min(1, 'name at least one document').max(100, 'at most 100 documents per call'),
});

export type AddRecordsRequest = z.output<typeof AddRecordsRequestSchema>;

export type AddRecordsDeps = Pick<IntakeDeps, 'store' | 'network' | 'jobs'>;

export interface AddRecordsResult {
  /** False when every document was already named: nothing changed, no assembly was started. */
  accepted: boolean;
  /** The referral's records revision after the call (each accepted addition bumps it). */
  recordsRevision: number;
  /** The documents this call added, as given. */
  added: DocumentRef[];
}

const TERMINAL = new Set<Task['status']>(['completed', 'cancelled', 'rejected', 'failed', 'entered-in-error']);

/**
 * The referrer adds records to a referral, e.g. the operative note the
 * checklist found missing. The documents join the ones named at intake and the record set
 * is assembled again by the durable job, as a new Bundle version: a record set already made
 * available to a consultant is never changed. Only the referrer that placed the referral may
 * add to it (404 for anyone else, so ids reveal nothing); a closed referral answers 409, except
 * one that ended because its record set could not be assembled (its records wait for the
 * clinics the referrer asks again).
 * Documents already named are not added twice; a call that adds nothing starts no assembly,
 * except one that names again a record the last assembly left out (not found, or its bytes
 * failed their check): that record is fetched again, in a new revision.
 */
export async function addRecords(serviceRequestId: string, request: AddRecordsRequest, caller: Caller, deps: AddRecordsDeps): Promise<AddRecordsResult> {
  return deps.store.withTransaction((tx) => addRecordsInTransaction(tx, serviceRequestId, request, caller, deps));
}

/** `addRecords` inside the caller's transaction (answering a request for information adds records too). */
export async function addRecordsInTransaction(tx: ResourceStore, serviceRequestId: string, request: AddRecordsRequest, caller: Caller, deps: AddRecordsDeps): Promise<AddRecordsResult> {
  {
    const baseUrl = deps.network.get(caller.participantId)?.fhir?.baseUrl;
    // The network file guarantees every referrer has an EHR endpoint; reaching this is a configuration bug.
    if (!baseUrl) throw new Error('referrer has no FHIR endpoint configured');
    refuseForeignReferences(documentReferences('documents', request.documents), baseUrl);

    // The row lock serialises additions to one referral: each gets its own revision, none is lost.
    const [intake] = await tx.database
      .select()
      .from(intakeRequests)
      .where(and(eq(intakeRequests.serviceRequestId, serviceRequestId), eq(intakeRequests.participantId, caller.participantId)))
      .for('update');
    if (!intake) throw new OperationOutcomeError(notFound);

    const serviceRequest = await tx.read<ServiceRequest>('ServiceRequest', serviceRequestId, readerOf(caller));
    if (!serviceRequest) throw new OperationOutcomeError(notFound);
    const tasks = await tx.readMany<Task>('Task', intake.taskIds, 'system');
    // A referral that ended because its record set could not be assembled is taken up again by
    // asking the clinics again (add-consultants.ts): records added before that wait for it.
    const awaitingClinics = endedForWantOfRecords(serviceRequest, tasks);
    if (serviceRequest.status !== 'active' && !awaitingClinics) {
      throw conflictError(`The referral is ${serviceRequest.status}: records can only be added to an active referral`);
    }
    const open = tasks.some((t) => !TERMINAL.has(t.status));
    if (!open && !awaitingClinics) {
      throw conflictError('Every consultant Task of this referral is closed: records can no longer be added');
    }

    const original = intake.request as IntakeRequest;
    const previouslyAdded = intake.addedDocuments as DocumentRef[];
    const named = [...(original.records.documents ?? []), ...(original.firstOpinion?.documents ?? []), ...previouslyAdded].map((d) => absoluteReference(baseUrl, d.reference));
    const added: DocumentRef[] = [];
    const again: string[] = [];
    for (const doc of request.documents) {
      const reference = absoluteReference(baseUrl, doc.reference);
      if (named.some((n) => sameResourceReference(n, reference))) {
        again.push(reference);
        continue;
      }
      named.push(reference);
      added.push(doc);
    }
    // Nothing new: nothing to do, unless the last assembly (of the current revision) gave up
    // while some Task holding an earlier record set is still open, or left out a record posted
    // again here (not found then, or its bytes failed their size or hash check): then posting the
    // records again assembles them anew. (The Tasks that had no record set after a give-up failed:
    // asking their clinics again assembles for them.)
    const [last] = await tx.database
      .select({ status: recordSetAssemblies.status, recordsRevision: recordSetAssemblies.recordsRevision, missingDocuments: recordSetAssemblies.missingDocuments, integrityFailures: recordSetAssemblies.integrityFailures })
      .from(recordSetAssemblies)
      .where(eq(recordSetAssemblies.serviceRequestId, serviceRequestId));
    const current = last !== undefined && last.recordsRevision >= intake.recordsRevision;
    const retryFailed = open && current && last.status === 'records-failed';
    const leftOut = [...((last?.missingDocuments ?? []) as { reference?: string }[]), ...((last?.integrityFailures ?? []) as { reference?: string }[])].flatMap((d) => (d.reference ? [d.reference] : []));
    const fetchAgain = open && current && again.some((reference) => leftOut.some((l) => sameResourceReference(l, reference)));
    if (added.length === 0 && !retryFailed && !fetchAgain) return { accepted: false, recordsRevision: intake.recordsRevision, added };

    const recordsRevision = intake.recordsRevision + 1;
    await tx.database
      .update(intakeRequests)
      .set({ addedDocuments: [...previouslyAdded, ...added], recordsRevision })
      .where(eq(intakeRequests.serviceRequestId, serviceRequestId));
    const job: AssembleRecordSetJob = {
      serviceRequestId,
      taskIds: intake.taskIds,
      serviceRequestVersion: serviceRequest.meta?.versionId ?? '1',
      recordsRevision: String(recordsRevision),
    };
    // No open Task, no one to assemble for yet: the clinics asked again get these records too.
    if (open) await deps.jobs.enqueue(tx.database, QUEUE.assembleRecordSet, job);
    return { accepted: true, recordsRevision, added };
  }
}
