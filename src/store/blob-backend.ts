import path from 'node:path';
import type { Readable } from 'node:stream';

/**
 * Where attachment bytes live (BLOB_STORE): the database keeps only their metadata (`blob`).
 * Two implementations: `files` (file-blob-backend.ts, the default: content-addressed files
 * under the data directory) and `s3` (s3-blob-backend.ts: an S3-compatible bucket, for
 * several replicas). Both write an upload somewhere temporary first and make it durable at
 * its final key on `commit`, so a crash leaves either the whole object or a leftover that
 * `sweep` removes; the metadata row is inserted only after `commit` (BlobStore.put).
 */
export interface BlobBackend {
  readonly kind: 'files' | 's3';
  /** Starts one upload. */
  begin(): Promise<BlobUpload>;
  /** The bytes `start..end` (inclusive) of the object at `key`; `end >= start`. */
  read(key: string, start: number, end: number): Promise<Readable>;
  /** True when an object is stored at `key`. */
  exists(key: string): Promise<boolean>;
  /** Deletes the object at `key` (no error when it is not there). */
  remove(key: string): Promise<void>;
  /**
   * Deletes what no metadata row will ever point at and was last written before `olderThan`:
   * leftover temporary files or incomplete multipart uploads, and objects whose key
   * `referenced` does not return (their process died between commit and the row's insert).
   * Returns how many were removed.
   */
  sweep(olderThan: Date, referenced: (keys: string[]) => Promise<Set<string>>): Promise<number>;
  close(): Promise<void>;
}

/** One upload in progress: `write` the bytes in order, then `commit` or `abort`. */
export interface BlobUpload {
  /** Resolves when the piece may be reused by the caller (backpressure). */
  write(piece: Uint8Array): Promise<void>;
  /**
   * Makes the bytes durable under their final key (derived from `sha256` or not) and returns it.
   * `sha256` is the hex SHA-256 of the bytes written (the S3 backend signs a one-part upload with it).
   */
  commit(sha256: string): Promise<string>;
  /** Drops what was written; never throws. */
  abort(): Promise<void>;
}

export interface FileBlobSettings {
  kind: 'files';
  /** Directory of the blobs (default DATA_DIR/blobs). */
  dir: string;
}

export interface S3BlobSettings {
  kind: 's3';
  bucket: string;
  /** Key prefix inside the bucket ('' or ending in '/'). */
  prefix: string;
  /** Endpoint of an S3-compatible server (MinIO, Ceph, s3rver...); AWS when absent. */
  endpoint?: string;
  region: string;
  /** Static credentials; when absent, the AWS SDK's default chain (env, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  forcePathStyle: boolean;
  /** Multipart part size in bytes (at least 5 MiB). */
  partSize?: number;
}

export type BlobStoreSettings = FileBlobSettings | S3BlobSettings;

/** Opens the configured backend (the S3 client is loaded only when used). */
export async function openBlobBackend(settings: BlobStoreSettings): Promise<BlobBackend> {
  if (settings.kind === 'files') {
    const { FileBlobBackend } = await import('./file-blob-backend.ts');
    return FileBlobBackend.open(settings.dir);
  }
  const { S3BlobBackend } = await import('./s3-blob-backend.ts');
  return new S3BlobBackend(settings);
}

/** `aa/bb/<sha256>`: two levels of 256 directories keep each one small. */
export function fanOutPath(sha256: string): string {
  return path.posix.join(sha256.slice(0, 2), sha256.slice(2, 4), sha256);
}
