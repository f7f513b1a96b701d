/**
 * Consent withdrawn: the one place that takes a clinic's access to a referral's
 * records away, and the one place that says a refused read was refused for that reason.
 *
 * Every door reads through the resources' access lists (access/reader.ts, the store's access
 * filter): the FHIR reads and searches, `_include`, the Binary bytes (readable through a record-set
 * Bundle) and the record-set push (which sends only what the Bundle's list still gives the
 * clinic). Revoking is therefore done on the lists, once, in the withdrawal's own write: the
 * clinic's participant id is replaced on every record-set resource of the referral (each
 * record-set Bundle, disclosed or released after blinding, its copies, their Provenance) and on
 * the first opinion by a marker, `withdrawn:<participant>`. A marker is never a reader key
 * (participant ids are slugs without `:`), so nothing reads with it; it is how a refusal knows
 * its reason. The referral and the clinic's own Task stay readable to it: the clinic must be able
 * to see that its Task was cancelled and why.
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Provenance, ServiceRequest } from '@medplum/fhirtypes';
import type { ResourceStore } from '../store/resource-store.ts';
import { recordSetAttachments, resources } from '../store/schema.ts';

/** The access-list entry left in place of a clinic whose consent was withdrawn. */
export function withdrawalMarker(participantId: string): string {
  return `withdrawn:${participantId}`;
}

/** A disclosure refused because consent was withdrawn: 404 to the caller (what it may not see does not exist for it). */
export class ConsentWithdrawnError extends OperationOutcomeError {
  constructor() {
    super(notFound);
  }
}

/** Why a read of records was refused once consent was withdrawn: for the AuditEvent (no PHI). */
export const CONSENT_WITHDRAWN_REFUSAL = 'Refused (404): the patient withdrew consent to disclose the records to this clinic';

/** The `reason.text` of every record-set Provenance of a referral (records/record-set-bundle.ts). */
export const recordSetProvenanceReason = (serviceRequestId: string): string => `Record set of ServiceRequest/${serviceRequestId}`;

/**
 * Takes `participantId`'s access to the referral's records away, in `tx` (the caller's
 * transaction). Returns the references whose access was revoked now (none on a replay).
 */
export async function revokeDisclosure(tx: ResourceStore, serviceRequest: ServiceRequest, participantId: string): Promise<string[]> {
  const marker = withdrawalMarker(participantId);
  const rows = await tx.database
    .select({ id: resources.id, content: resources.content })
    .from(resources)
    .where(
      and(
        eq(resources.resourceType, 'Provenance'),
        sql`${resources.content} @> ${JSON.stringify({ reason: [{ text: recordSetProvenanceReason(serviceRequest.id as string) }] })}::jsonb`,
        sql`(${resources.access} @> ARRAY[${participantId}]::text[] OR ${resources.access} @> ARRAY[${marker}]::text[])`,
      ),
    );
  const byType = new Map<string, Set<string>>([['Provenance', new Set(rows.map((r) => r.id))]]);
  const add = (reference: string | undefined) => {
    const [type, id] = (reference ?? '').split('/');
    if (!type || !id) return;
    byType.set(type, (byType.get(type) ?? new Set()).add(id));
  };
  for (const row of rows) for (const target of (row.content as Provenance).target ?? []) add(target.reference);
  add(serviceRequest.supportingInfo?.find((s) => s.reference?.startsWith('ClinicalImpression/'))?.reference);
  const revoked: string[] = [];
  for (const [type, ids] of byType) {
    const list = [...ids];
    const changed = await tx.database
      .select({ id: resources.id })
      .from(resources)
      .where(and(eq(resources.resourceType, type), inArray(resources.id, list), sql`${resources.access} @> ARRAY[${participantId}]::text[]`));
    if ((await tx.revokeAccess(type, list, participantId, marker)) > 0) revoked.push(...changed.map((c) => `${type}/${c.id}`));
  }
  return revoked;
}

/**
 * Whether a refused read of `requested` (references `Type/id`; `Binary/{sha256}`) by
 * `participantId` was refused because the patient withdrew consent for it: the resource (for
 * Binary, a record-set Bundle carrying it) has the clinic's withdrawal marker.
 */
export async function refusedForWithdrawal(store: ResourceStore, participantId: string, requested: readonly { reference: string }[]): Promise<boolean> {
  const marker = withdrawalMarker(participantId);
  for (const { reference } of requested) {
    const [type, id] = reference.split('/');
    if (!type || !id) continue;
    const query =
      type === 'Binary'
        ? store.database
            .select({ id: resources.id })
            .from(recordSetAttachments)
            .innerJoin(resources, and(eq(resources.resourceType, 'Bundle'), eq(resources.id, recordSetAttachments.bundleId)))
            .where(and(eq(recordSetAttachments.sha256, id), sql`${resources.access} @> ARRAY[${marker}]::text[]`))
        : store.database
            .select({ id: resources.id })
            .from(resources)
            .where(and(eq(resources.resourceType, type), eq(resources.id, id), sql`${resources.access} @> ARRAY[${marker}]::text[]`));
    if ((await query.limit(1)).length > 0) return true;
  }
  return false;
}

/** Whether the clinic's access to record-set Bundle `bundleId` was revoked by a withdrawal of consent. */
export async function bundleWithdrawnFrom(store: ResourceStore, bundleId: string, participantId: string): Promise<boolean> {
  return (await store.accessList('Bundle', bundleId))?.includes(withdrawalMarker(participantId)) ?? false;
}
