/**
 * One record of the referring EHR into the record set: its attachments fetched, verified
 * against what the EHR declared and kept in the blob store, and this service's copy (new id,
 * attachments pointing at our Binary URLs) validated. What cannot be kept is reported, never
 * stored half.
 */
import { Readable } from 'node:stream';
import type { Attachment } from '@medplum/fhirtypes';
import { randomUUID } from 'node:crypto';
import { ResourceValidationError } from '../fhir/validator.ts';
import type { FhirClient } from '../outbound/fhir-client.ts';
import { AttachmentTooLargeError, OutboundError, type OutboundHttpError } from '../outbound/outbound-errors.ts';
import { BlobIntegrityError, BlobTooLargeError, type BlobStore } from '../store/blob-store.ts';
import type { ResourceValidator } from '../store/resource-store.ts';
import { copyRecord, rewriteAttachment, type RecordResource, type RecordSetEntry, type StoredAttachment } from './record-set-bundle.ts';
import { isCallFailure, isMissing } from './record-sources.ts';
import type { ReferrerBlobs } from './referrer-blobs.ts';

/** A record that was asked for but could not be read. */
export interface MissingDocument {
  reference: string;
  /** `invalid`: the EHR's resource does not conform to FHIR R4. */
  reason: 'not-found' | 'unreadable' | 'no-content' | 'invalid';
  status?: number;
}

export interface IntegrityFailure {
  reference: string;
  kind: 'size' | 'hash';
  expected: number | string;
  actual: number | string;
}

export interface TooLargeAttachment {
  reference: string;
  maxBytes: number;
}

/** What storing a record needs: where bytes go, the limits, the validator and the referrer's EHR. */
export interface RecordStoreContext {
  deps: { blobs: BlobStore; validator: ResourceValidator; maxAttachmentBytes: number; publicUrl: string };
  client: FhirClient;
}

/** A record as stored: this service's copy, the reference it was read from, and the blobs it carries. */
export interface StoredRecord extends RecordSetEntry {
  /** Absolute reference on the referring EHR (what blinding compares against). */
  sourceReference: string;
  /** sha256 of every attachment of the copy. */
  blobs: string[];
}


/**
 * Stores every attachment of a record and returns this service's copy (new id, attachments
 * rewritten to Binary URLs, validated), or undefined when the record is left out (integrity
 * failure, too large, no content, invalid); the reason goes into `report`. Retryable
 * outbound errors propagate.
 */
export async function storeRecord(
  resource: RecordResource,
  source: string,
  ctx: RecordStoreContext,
  referrerBlobs: ReferrerBlobs,
  report: { missingDocuments: MissingDocument[]; integrityFailures: IntegrityFailure[]; tooLarge: TooLargeAttachment[] },
): Promise<StoredRecord | undefined> {
  const copy = copyRecord(resource, { id: randomUUID(), source, ehrBaseUrl: ctx.client.baseUrl });
  const attachments = attachmentsOf(copy);
  const rewritten: Attachment[] = [];
  const blobs: string[] = [];
  for (const attachment of attachments) {
    if (attachment.data === undefined && !attachment.url) {
      report.missingDocuments.push({ reference: source, reason: 'no-content' });
      return undefined;
    }
    try {
      const stored = await storeAttachment(attachment, ctx, referrerBlobs);
      rewritten.push(rewriteAttachment(attachment, stored, ctx.deps.publicUrl));
      blobs.push(stored.sha256);
    } catch (err) {
      if (err instanceof BlobIntegrityError) {
        report.integrityFailures.push({ reference: source, kind: err.kind, expected: err.expected, actual: err.actual });
      } else if (err instanceof BlobTooLargeError || err instanceof AttachmentTooLargeError) {
        report.tooLarge.push({ reference: source, maxBytes: ctx.deps.maxAttachmentBytes });
      } else if (isMissing(err)) {
        report.missingDocuments.push({ reference: source, reason: 'not-found', status: (err as OutboundHttpError).status });
      } else if (err instanceof OutboundError && !isCallFailure(err)) {
        // An attachment URL the client refuses (scheme, too many redirects): this record is unreadable.
        report.missingDocuments.push({ reference: source, reason: 'unreadable' });
      } else {
        throw err;
      }
      return undefined;
    }
  }
  if (copy.resourceType === 'DocumentReference') copy.content = copy.content.map((c, i) => ({ ...c, attachment: rewritten[i] as Attachment }));
  else if (copy.resourceType === 'DiagnosticReport' && copy.presentedForm) copy.presentedForm = rewritten;
  try {
    ctx.deps.validator.validate(copy);
  } catch (err) {
    if (!(err instanceof ResourceValidationError)) throw err;
    // The EHR's record does not conform to R4: it is reported, not stored (nothing invalid is ever served).
    report.missingDocuments.push({ reference: source, reason: 'invalid' });
    return undefined;
  }
  return { resource: copy, source, sourceReference: source, blobs };
}

/** The attachments a record carries (a study's are not fetched: its instances stay on the EHR). */
export function attachmentsOf(record: RecordResource): Attachment[] {
  if (record.resourceType === 'DocumentReference') return record.content.map((c) => c.attachment);
  if (record.resourceType === 'DiagnosticReport') return record.presentedForm ?? [];
  return [];
}

/**
 * One attachment into the blob store. When the source declared size and hash and this
 * referrer's EHR already gave us those bytes (an earlier attempt, an earlier referral), they
 * are not fetched again. Bytes another organization supplied are never reused on a declared
 * hash alone: they are fetched, and deduplicated by SHA-256 once measured.
 */
async function storeAttachment(attachment: Attachment, ctx: RecordStoreContext, referrerBlobs: ReferrerBlobs): Promise<StoredAttachment> {
  const { deps, client } = ctx;
  const known = referrerBlobs.find(attachment);
  if (known) return known;
  const expected = { ...(attachment.size !== undefined ? { size: attachment.size } : {}), ...(attachment.hash ? { sha1: attachment.hash } : {}) };
  let stored: StoredAttachment;
  if (attachment.data !== undefined) {
    stored = await deps.blobs.put(Readable.from([Buffer.from(attachment.data, 'base64')]), {
      contentType: attachment.contentType ?? 'application/octet-stream',
      maxBytes: deps.maxAttachmentBytes,
      expected,
    });
  } else {
    stored = await fetchVerified(attachment, ctx, expected);
  }
  referrerBlobs.add(stored);
  return { sha256: stored.sha256, sha1: stored.sha1, size: stored.size, contentType: stored.contentType };
}

/**
 * Downloads made of one attachment whose bytes fail their declared size or hash before it is
 * reported as an integrity failure: a connection cut short or a proxy that mangles a body is a
 * fault of the transfer, and fetching again usually gets the whole document. Bytes that fail
 * every time are the EHR's own (a wrong declared size or hash) and are left out.
 */
export const INTEGRITY_FETCHES = 3;

async function fetchVerified(attachment: Attachment, ctx: RecordStoreContext, expected: { size?: number; sha1?: string }): Promise<StoredAttachment> {
  const { deps, client } = ctx;
  for (let fetch = 1; ; fetch++) {
    const response = await client.fetchAttachment(attachment.url as string, { maxBytes: deps.maxAttachmentBytes });
    try {
      return await deps.blobs.put(response.body, {
        contentType: attachment.contentType ?? response.contentType ?? 'application/octet-stream',
        maxBytes: deps.maxAttachmentBytes,
        expected,
      });
    } catch (err) {
      if (!(err instanceof BlobIntegrityError) || fetch >= INTEGRITY_FETCHES) throw err;
    }
  }
}
