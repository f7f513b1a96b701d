/**
 * Building the record-set Bundle and its Provenance (DESIGN.md "FHIR model: Record set";
 * issue 3 §2). Pure: ids, clock and the stored blobs come in.
 */
import type { Attachment, Bundle, DiagnosticReport, DocumentReference, ImagingStudy, Provenance } from '@medplum/fhirtypes';
import { PROFILE, SERVICE_DEVICE_DISPLAY, SYSTEM } from '../fhir/constants.ts';

export type RecordResource = DocumentReference | DiagnosticReport | ImagingStudy;

/** One record as it goes into a Bundle: the rewritten copy and the absolute reference it was read from. */
export interface RecordSetEntry {
  resource: RecordResource;
  /** Absolute reference on the referring EHR (`https://ehr/fhir/R4/DocumentReference/1`). */
  source: string;
}

/** What the blob store says about one stored attachment. */
export interface StoredAttachment {
  sha256: string;
  sha1: string;
  size: number;
  contentType: string;
}

/**
 * The copy of an attachment as the consultant sees it: served from this service's Binary URL,
 * with the size and SHA-1 measured while storing. Inline `data` is dropped (the bytes are
 * served from the URL); title, language and creation are kept.
 */
export function rewriteAttachment(source: Attachment, stored: StoredAttachment, publicUrl: string): Attachment {
  const { data: _data, url: _url, size: _size, hash: _hash, contentType: _contentType, ...rest } = source;
  return {
    ...rest,
    contentType: source.contentType ?? stored.contentType,
    url: `${publicUrl}/fhir/Binary/${stored.sha256}`,
    size: stored.size,
    hash: stored.sha1,
  };
}

/** A copy of a source record without the source server's `meta` (versionId, lastUpdated, tags). */
export function copyRecord<T extends RecordResource>(resource: T): T {
  const { meta: _meta, ...rest } = structuredClone(resource);
  return rest as T;
}

/**
 * A record-set Bundle (type collection, our profile). Each entry's `fullUrl` is the record's
 * absolute URL on the referring EHR, so relative references inside the copy (subject, author)
 * still resolve against the EHR that holds them.
 */
export function buildRecordSetBundle(id: string, entries: readonly RecordSetEntry[], now: Date): Bundle {
  return {
    resourceType: 'Bundle',
    id,
    meta: { profile: [PROFILE.recordSet] },
    identifier: { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${id}` },
    type: 'collection',
    timestamp: now.toISOString(),
    ...(entries.length > 0 ? { entry: entries.map((e) => ({ fullUrl: e.source, resource: e.resource })) } : {}),
  };
}

/**
 * Where a record-set Bundle came from: one `source` entity per record, read from the referring
 * EHR by the service (agent: the assembler) on behalf of the referring organization.
 */
export function buildRecordSetProvenance(args: {
  id: string;
  bundleId: string;
  serviceRequestId: string;
  sources: readonly string[];
  referrerOrganization: { reference: string; display?: string };
  now: Date;
}): Provenance {
  return {
    resourceType: 'Provenance',
    id: args.id,
    target: [{ reference: `Bundle/${args.bundleId}` }],
    recorded: args.now.toISOString(),
    activity: { coding: [{ system: SYSTEM.dataOperation, code: 'CREATE', display: 'create' }] },
    reason: [{ text: `Record set of ServiceRequest/${args.serviceRequestId}` }],
    agent: [
      {
        type: { coding: [{ system: SYSTEM.provenanceParticipantType, code: 'assembler', display: 'Assembler' }] },
        who: { display: SERVICE_DEVICE_DISPLAY },
        onBehalfOf: { reference: args.referrerOrganization.reference, ...(args.referrerOrganization.display ? { display: args.referrerOrganization.display } : {}) },
      },
    ],
    entity: args.sources.map((source) => ({ role: 'source', what: { reference: source } })),
  };
}
