/**
 * The sandbox's "object storage" origin: attachments served from another host by absolute URL
 * with a signature in the query (like S3 pre-signed or Azure SAS links). It needs no
 * Authorization header: the signature is the credential, so a client must never send its EHR
 * bearer token here (issue 3 §1).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { HttpReply } from './fhir-api.ts';
import type { Blob } from './seed.ts';

/** Path prefix of stored objects: `${storageUrl}/objects/{id}?sig=…`. */
export const STORAGE_OBJECT_PATH = '/objects/';

/** Signs and checks object links with a per-instance random key. */
export interface UrlSigner {
  sign(objectId: string): string;
  verify(objectId: string, sig: string | null): boolean;
}

/** Creates a signer with a fresh random HMAC-SHA256 key. */
export function createUrlSigner(): UrlSigner {
  const key = randomBytes(32);
  const sign = (objectId: string): string => createHmac('sha256', key).update(objectId).digest('base64url');
  return {
    sign,
    verify(objectId, sig) {
      if (!sig) return false;
      const expected = Buffer.from(sign(objectId));
      const given = Buffer.from(sig);
      return expected.length === given.length && timingSafeEqual(expected, given);
    },
  };
}

/** Absolute signed URL of an object on the storage origin. */
export function signedObjectUrl(storageUrl: string, signer: UrlSigner, objectId: string): string {
  return `${storageUrl}${STORAGE_OBJECT_PATH}${encodeURIComponent(objectId)}?sig=${signer.sign(objectId)}`;
}

function xmlError(status: number, code: string): HttpReply {
  return { status, headers: { 'content-type': 'application/xml' }, body: `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code></Error>` };
}

/** Handles `GET /objects/{id}?sig=…` on the storage origin (403 on a missing or bad signature). */
export function handleStorageRequest(method: string, path: string, blobs: Map<string, Blob>, signer: UrlSigner): HttpReply {
  const url = new URL(path, 'http://storage.invalid');
  if (method !== 'GET' || !url.pathname.startsWith(STORAGE_OBJECT_PATH)) return xmlError(404, 'NoSuchKey');
  const id = decodeURIComponent(url.pathname.slice(STORAGE_OBJECT_PATH.length));
  if (!signer.verify(id, url.searchParams.get('sig'))) return xmlError(403, 'SignatureDoesNotMatch');
  const blob = blobs.get(id);
  if (!blob) return xmlError(404, 'NoSuchKey');
  return { status: 200, headers: { 'content-type': blob.contentType }, body: blob.bytes, attachment: true };
}
