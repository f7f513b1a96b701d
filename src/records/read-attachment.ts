/**
 * `GET /fhir/Binary/{id}` as a use case: the bytes of a record-set attachment,
 * whole or one byte range, for a participant who may read a record-set Bundle carrying it.
 * The id is the attachment's SHA-256 (the blob store's content address).
 *
 * Who may read it follows from the Bundles, not from the bytes: identical bytes in two
 * referrals are stored once, and each referral's readers see them through their own Bundle.
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Readable } from 'node:stream';
import { and, eq, sql } from 'drizzle-orm';
import type { Caller } from '../access/caller.ts';
import { BlobRangeError, type BlobInfo, type BlobStore, type ByteRange } from '../store/blob-store.ts';
import { accessFilter, type ResourceStore } from '../store/resource-store.ts';
import { readerOf } from '../access/reader.ts';
import { recordSetAttachments, resources } from '../store/schema.ts';

export interface ReadAttachmentDeps {
  store: ResourceStore;
  blobs: BlobStore;
}

export interface AttachmentAccess {
  info: BlobInfo;
  /** A record-set Bundle the caller may read that carries the attachment. */
  bundleId: string;
  /** The patient of that record set (absolute reference on the referrer's EHR), when known. */
  patientReference?: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The attachment's metadata when the caller may read it; 404 (OperationOutcomeError) otherwise, whether or not it exists. */
export async function findReadableAttachment(id: string, caller: Caller, deps: ReadAttachmentDeps): Promise<AttachmentAccess> {
  if (!SHA256_HEX.test(id)) throw new OperationOutcomeError(notFound);
  const [row] = await deps.store.database
    .select({ bundleId: recordSetAttachments.bundleId, patient: sql<string | null>`${resources.content} #>> '{entry,0,resource,subject,reference}'` })
    .from(recordSetAttachments)
    .innerJoin(resources, and(eq(resources.resourceType, 'Bundle'), eq(resources.id, recordSetAttachments.bundleId)))
    .where(and(eq(recordSetAttachments.sha256, id), accessFilter(resources.access, readerOf(caller))))
    .limit(1);
  if (!row) throw new OperationOutcomeError(notFound);
  const info = await deps.blobs.head(id);
  if (!info) throw new OperationOutcomeError(notFound);
  return { info, bundleId: row.bundleId, ...(row.patient ? { patientReference: row.patient } : {}) };
}

/** The bytes, whole or `range` (already checked against the size by `parseRange`). */
export async function openAttachment(info: BlobInfo, range: ByteRange | undefined, deps: ReadAttachmentDeps): Promise<Readable> {
  const stream = await deps.blobs.read(info.sha256, range);
  if (!stream) throw new OperationOutcomeError(notFound);
  return stream;
}

export type RangeRequest = { kind: 'whole' } | { kind: 'range'; start: number; end: number } | { kind: 'unsatisfiable' };

/**
 * One `Range: bytes=...` header against a resource of `size` bytes (RFC 9110 §14.1.2):
 * `a-b`, `a-` and the suffix `-n`. A header this service does not serve (another unit,
 * several ranges, malformed) is ignored, which RFC 9110 allows: the whole body is sent.
 */
export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (!header) return { kind: 'whole' };
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return { kind: 'whole' };
  const [, first, last] = match as unknown as [string, string, string];
  if (first === '' && last === '') return { kind: 'whole' };
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (!Number.isSafeInteger(start) || start >= size) return { kind: 'unsatisfiable' };
  if (last !== '' && Number(last) < start) return { kind: 'whole' };
  return { kind: 'range', start, end };
}

export { BlobRangeError };
