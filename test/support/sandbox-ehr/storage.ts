/**
 * The sandbox's "object storage" origin: attachments served from another host by absolute URL
 * with a signature in the query (like S3 pre-signed or Azure SAS links). It needs no
 * Authorization header: the signature is the credential, so a client must never send its EHR
 * bearer token here.
 *
 * DocumentReferences store the object's plain URL (`${storageUrl}/objects/{id}`); every read
 * and search answer carries a freshly signed one, as Medplum pre-signs its Binary links on each
 * read. With the `signedLinks` strictness switch (strict.ts) links behave like S3's: they carry
 * their expiry (`expires`, Unix seconds) under the signature, an expired or tampered one is 403,
 * and a request that also sends an Authorization header is 400 (S3 accepts one auth mechanism
 * only). Without it links never expire and an Authorization header is ignored.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { HttpReply } from './fhir-api.ts';
import type { Blob } from './seed.ts';

/** Path prefix of stored objects: `${storageUrl}/objects/{id}?expires=…&sig=…`. */
export const STORAGE_OBJECT_PATH = '/objects/';

/** Lifetime of a signed link with `signedLinks` on, unless `startSandboxEhr` says otherwise (S3's console default is 1 hour). */
export const DEFAULT_SIGNED_LINK_TTL_SECONDS = 3600;

/** Signs and checks object links with a per-instance random key. */
export interface UrlSigner {
  /** The query (`expires=…&sig=…`, or `sig=…` when `expiresAt` is undefined) of a link to `objectId`. */
  sign(objectId: string, expiresAt?: number): string;
  /** Whether `sig` signs `objectId` with this `expires` value (the raw query value, or null). */
  verify(objectId: string, expires: string | null, sig: string | null): boolean;
}

/** Creates a signer with a fresh random HMAC-SHA256 key. */
export function createUrlSigner(): UrlSigner {
  const key = randomBytes(32);
  const mac = (objectId: string, expires: string | null): string => createHmac('sha256', key).update(expires === null ? objectId : `${objectId}\n${expires}`).digest('base64url');
  return {
    sign(objectId, expiresAt) {
      if (expiresAt === undefined) return `sig=${mac(objectId, null)}`;
      return `expires=${expiresAt}&sig=${mac(objectId, String(expiresAt))}`;
    },
    verify(objectId, expires, sig) {
      if (!sig) return false;
      const expected = Buffer.from(mac(objectId, expires));
      const given = Buffer.from(sig);
      return expected.length === given.length && timingSafeEqual(expected, given);
    },
  };
}

/** The object storage of one sandbox: link signing and the origin's request handler. */
export interface ObjectStorage {
  /** The storage origin's unsigned URL of an object, as DocumentReferences store it. */
  plainUrl(objectId: string): string;
  /**
   * A signed absolute link to an object. With `signedLinks` it expires `ttlSeconds` from now
   * (default: the storage's TTL; negative gives an already expired link, for tests).
   */
  signedUrl(objectId: string, ttlSeconds?: number): string;
  /** Replaces every plain or signed storage URL in a FHIR JSON value (in place) with a freshly signed one. */
  presign<T>(value: T): T;
  /** Handles a request on the storage origin. */
  handle(method: string, path: string, authorization: string | undefined): HttpReply;
}

export interface ObjectStorageOptions {
  /** The origin's URL, known once it listens. */
  storageUrl: () => string;
  blobs: Map<string, Blob>;
  signedLinks: boolean;
  ttlSeconds?: number;
  now?: () => number;
}

function xmlError(status: number, code: string, message: string): HttpReply {
  return { status, headers: { 'content-type': 'application/xml' }, body: `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>` };
}

/** Creates the object storage of one sandbox instance. */
export function createObjectStorage(opts: ObjectStorageOptions): ObjectStorage {
  const signer = createUrlSigner();
  const now = opts.now ?? Date.now;
  const ttl = opts.ttlSeconds ?? DEFAULT_SIGNED_LINK_TTL_SECONDS;
  const plainUrl = (objectId: string): string => `${opts.storageUrl()}${STORAGE_OBJECT_PATH}${encodeURIComponent(objectId)}`;
  const signedUrl = (objectId: string, ttlSeconds = ttl): string =>
    `${plainUrl(objectId)}?${signer.sign(objectId, opts.signedLinks ? Math.floor(now() / 1000) + ttlSeconds : undefined)}`;

  function presign<T>(value: T): T {
    const prefix = `${opts.storageUrl()}${STORAGE_OBJECT_PATH}`;
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) return v.forEach(walk);
      if (!v || typeof v !== 'object') return;
      const obj = v as Record<string, unknown>;
      if (typeof obj.url === 'string' && obj.url.startsWith(prefix)) {
        obj.url = signedUrl(decodeURIComponent(obj.url.slice(prefix.length).split('?')[0]!));
      }
      Object.values(obj).forEach(walk);
    };
    walk(value);
    return value;
  }

  function handle(method: string, path: string, authorization: string | undefined): HttpReply {
    const url = new URL(path, 'http://storage.invalid');
    if (method !== 'GET' || !url.pathname.startsWith(STORAGE_OBJECT_PATH)) return xmlError(404, 'NoSuchKey', 'The specified key does not exist.');
    const id = decodeURIComponent(url.pathname.slice(STORAGE_OBJECT_PATH.length));
    if (opts.signedLinks && authorization !== undefined) {
      return xmlError(400, 'InvalidArgument', 'Only one auth mechanism allowed; only the signature query parameters or the Authorization header should be specified');
    }
    const expires = url.searchParams.get('expires');
    if (!signer.verify(id, expires, url.searchParams.get('sig'))) {
      return xmlError(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
    }
    if (opts.signedLinks && (expires === null || Number(expires) * 1000 <= now())) return xmlError(403, 'AccessDenied', 'Request has expired');
    const blob = opts.blobs.get(id);
    if (!blob) return xmlError(404, 'NoSuchKey', 'The specified key does not exist.');
    return { status: 200, headers: { 'content-type': blob.contentType }, body: blob.bytes, attachment: true };
  }

  return { plainUrl, signedUrl, presign, handle };
}
