/**
 * Building the record-set Bundle and its Provenance (docs/fhir.md, "FHIR model").
 * Pure: ids, clock and the stored blobs come in.
 */
import type { Attachment, Bundle, DiagnosticReport, DocumentReference, ImagingStudy, Provenance } from '@medplum/fhirtypes';
import { PROFILE, SERVICE_DEVICE_DISPLAY, SYSTEM } from '../fhir/constants.ts';
import { absoluteReference } from '../fhir/references.ts';
import { recordSetProvenanceReason } from '../access/consent-withdrawal.ts';

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

/**
 * This service's copy of a source record: a new id, `meta.source` naming the record on the
 * referring EHR, and every relative reference inside made absolute against that EHR (the
 * copy is served from this service, where `Patient/1` would resolve to nothing). The source
 * server's versionId, lastUpdated and tags are dropped.
 */
export function copyRecord<T extends RecordResource>(resource: T, copy: { id: string; source: string; ehrBaseUrl: string }): T {
  const { meta: _meta, id: _id, ...rest } = structuredClone(resource);
  absolutizeReferences(rest, copy.ehrBaseUrl);
  return { ...rest, id: copy.id, meta: { source: copy.source } } as T;
}

const RELATIVE_LITERAL = /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}(\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

/** Rewrites, in place, every `reference` that is a relative literal reference (`Type/id`); `#contained`, `urn:` and absolute ones are left alone. */
function absolutizeReferences(node: unknown, baseUrl: string): void {
  if (Array.isArray(node)) {
    for (const item of node) absolutizeReferences(item, baseUrl);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const record = node as Record<string, unknown>;
  for (const [key, value] of Object.entries(record)) {
    if (key === 'reference' && typeof value === 'string' && RELATIVE_LITERAL.test(value)) record[key] = absoluteReference(baseUrl, value);
    else absolutizeReferences(value, baseUrl);
  }
}

/**
 * A record-set Bundle (type collection, our profile). Each entry's `fullUrl` is the copy's
 * URL on this service (`{fhirBaseUrl}/DocumentReference/{id}`), where it can also be read
 * on its own; `meta.source` of each copy says where it came from.
 */
export function buildRecordSetBundle(id: string, entries: readonly RecordSetEntry[], now: Date, fhirBaseUrl: string): Bundle {
  return {
    resourceType: 'Bundle',
    id,
    meta: { profile: [PROFILE.recordSet] },
    identifier: { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${id}` },
    type: 'collection',
    timestamp: now.toISOString(),
    ...(entries.length > 0 ? { entry: entries.map((e) => ({ fullUrl: `${fhirBaseUrl}/${e.resource.resourceType}/${e.resource.id}`, resource: e.resource })) } : {}),
  };
}

/**
 * Where a record set came from: it targets the Bundle and every copy in it, with one `source`
 * entity per record read from the referring EHR by the service (agent: the assembler) on
 * behalf of the referring organization.
 */
export function buildRecordSetProvenance(args: {
  id: string;
  bundleId: string;
  serviceRequestId: string;
  /** The copies in the Bundle; each one's `meta.source` is the record it was read from. */
  records: readonly RecordResource[];
  referrerOrganization: { reference: string; display?: string };
  now: Date;
}): Provenance {
  const entity = args.records.flatMap((r) => (r.meta?.source ? [{ role: 'source' as const, what: { reference: r.meta.source } }] : []));
  return {
    resourceType: 'Provenance',
    id: args.id,
    target: [{ reference: `Bundle/${args.bundleId}` }, ...args.records.map((r) => ({ reference: `${r.resourceType}/${r.id}` }))],
    recorded: args.now.toISOString(),
    activity: { coding: [{ system: SYSTEM.dataOperation, code: 'CREATE', display: 'create' }] },
    reason: [{ text: recordSetProvenanceReason(args.serviceRequestId) }],
    agent: [
      {
        type: { coding: [{ system: SYSTEM.provenanceParticipantType, code: 'assembler', display: 'Assembler' }] },
        who: { display: SERVICE_DEVICE_DISPLAY },
        onBehalfOf: { reference: args.referrerOrganization.reference, ...(args.referrerOrganization.display ? { display: args.referrerOrganization.display } : {}) },
      },
    ],
    // Absent, never `[]`, when no record was read: FHIR JSON forbids empty arrays.
    ...(entity.length > 0 ? { entity } : {}),
  };
}
