import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { eq, inArray } from 'drizzle-orm';
import type { BlobBackend } from './blob-backend.ts';
import type { Db } from './database.ts';
import { purgeAbandonedDatabaseUploads, readDatabaseChunks } from './legacy-blob-chunks.ts';
import { blobs } from './schema.ts';

/** What is known of a stored blob. `sha256` (lower-case hex) is its id; `sha1` is FHIR's `Attachment.hash`. */
export interface BlobInfo {
  sha256: string;
  /** Base64 of the raw SHA-1 digest, the form of FHIR `Attachment.hash`. */
  sha1: string;
  size: number;
  /** The content type given when these bytes were first stored. */
  contentType: string;
}

export interface StoredBlob extends BlobInfo {
  /** True when identical bytes were already stored: nothing new was kept. */
  deduplicated: boolean;
}

export interface PutOptions {
  contentType: string;
  /** Refuse (BlobTooLargeError) as soon as the stream passes this many bytes. */
  maxBytes?: number;
  /** What the source declared (FHIR `Attachment.size` / `.hash`); a mismatch stores nothing. */
  expected?: { size?: number; sha1?: string };
}

/** Inclusive byte range, as in an HTTP `Range: bytes=start-end` header; no `end` means to the last byte. */
export interface ByteRange {
  start: number;
  end?: number;
}

export interface BlobStoreOptions {
  now?: () => Date;
}

/** The stream passed `maxBytes`; nothing was stored. */
export class BlobTooLargeError extends Error {
  override readonly name = 'BlobTooLargeError';
  readonly maxBytes: number;
  constructor(maxBytes: number) {
    super(`content exceeds ${maxBytes} bytes`);
    this.maxBytes = maxBytes;
  }
}

/** The bytes disagree with the size or SHA-1 the source declared; nothing was stored. */
export class BlobIntegrityError extends Error {
  override readonly name = 'BlobIntegrityError';
  readonly kind: 'size' | 'hash';
  readonly expected: number | string;
  readonly actual: number | string;
  constructor(kind: 'size' | 'hash', expected: number | string, actual: number | string) {
    super(`${kind} mismatch: expected ${expected}, got ${actual}`);
    this.kind = kind;
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * The range cannot be served from a blob of `size` bytes (start at or past the end, start
 * after end, negative or fractional bounds): HTTP 416 with `Content-Range: bytes *\/size`.
 */
export class BlobRangeError extends Error {
  override readonly name = 'BlobRangeError';
  readonly size: number;
  constructor(size: number) {
    super(`range not satisfiable for ${size} bytes`);
    this.size = size;
  }
}

/**
 * Content-addressed attachment bytes (docs/store.md): the
 * bytes in a BlobBackend (files or S3, blob-backend.ts), their metadata in the `blob` table.
 * A put streams: the bytes are hashed (SHA-1 for FHIR `Attachment.hash`, SHA-256 as the
 * address) while they are written to a temporary upload, so memory holds a buffer or two
 * whatever the size. Only when size and hash are verified is the upload committed (durable
 * at its final key) and then the `blob` row inserted: a row never lacks its bytes, and what a
 * crash leaves between the two is swept (`sweep`). Reads stream the backend's object, or the
 * database chunks of a blob stored before the blob store existed (until migrated).
 */
export class BlobStore {
  readonly backend: BlobBackend;
  private readonly db: Db;
  private readonly now: () => Date;

  constructor(db: Db, backend: BlobBackend, options: BlobStoreOptions = {}) {
    this.db = db;
    this.backend = backend;
    this.now = options.now ?? (() => new Date());
  }

  /**
   * Stores the bytes of `source` and returns their address and hashes. Rejects with
   * BlobTooLargeError or BlobIntegrityError, or with the source's own error, leaving
   * nothing behind. Identical content stored twice (even concurrently) is kept once.
   */
  async put(source: Readable | AsyncIterable<Uint8Array>, options: PutOptions): Promise<StoredBlob> {
    const upload = await this.backend.begin();
    let committed = false;
    try {
      const sha1 = createHash('sha1');
      const sha256 = createHash('sha256');
      let size = 0;
      for await (const piece of source as AsyncIterable<unknown>) {
        if (!(piece instanceof Uint8Array)) throw new TypeError('blob source must yield bytes, not strings or objects');
        size += piece.byteLength;
        if (options.maxBytes !== undefined && size > options.maxBytes) throw new BlobTooLargeError(options.maxBytes);
        sha1.update(piece);
        sha256.update(piece);
        await upload.write(piece);
      }
      const info: BlobInfo = { sha256: sha256.digest('hex'), sha1: sha1.digest('base64'), size, contentType: options.contentType };
      const expected = options.expected ?? {};
      if (expected.size !== undefined && expected.size !== size) throw new BlobIntegrityError('size', expected.size, size);
      if (expected.sha1 !== undefined && expected.sha1 !== info.sha1) throw new BlobIntegrityError('hash', expected.sha1, info.sha1);
      const key = await upload.commit(info.sha256);
      committed = true;
      // ON CONFLICT settles concurrent puts of identical bytes: the later insert waits for the
      // earlier one to commit and then inserts nothing.
      const inserted = await this.db
        .insert(blobs)
        .values({ ...info, objectKey: key, createdAt: this.now() })
        .onConflictDoNothing({ target: blobs.sha256 })
        .returning({ sha256: blobs.sha256 });
      if (inserted.length === 1) return { ...info, deduplicated: false };
      const existing = await this.find(info.sha256);
      if (!existing) throw new Error('blob vanished while deduplicating'); // blobs are never deleted
      // Identical bytes were stored already (or by a concurrent put): drop this copy unless it is
      // the very object the row names (the same content address).
      if (existing.objectKey !== key) await this.backend.remove(key).catch(() => undefined); // else left to the sweep
      return { ...toInfo(existing), deduplicated: true };
    } catch (err) {
      if (!committed) await upload.abort();
      throw err;
    }
  }

  async head(sha256: string): Promise<BlobInfo | undefined> {
    const row = await this.find(sha256);
    return row && toInfo(row);
  }

  /**
   * Streams the blob's bytes, or the inclusive `range` of them (an `end` past the last byte
   * is clamped, as HTTP does). Undefined when there is no such blob; BlobRangeError when
   * the range starts at or past the end (so any range of an empty blob) or is malformed.
   */
  async read(sha256: string, range?: ByteRange): Promise<Readable | undefined> {
    const row = await this.find(sha256);
    if (!row) return undefined;
    let start = 0;
    let end = row.size - 1;
    if (range) {
      const validEnd = range.end === undefined || (Number.isSafeInteger(range.end) && range.end >= range.start);
      if (!Number.isSafeInteger(range.start) || range.start < 0 || range.start >= row.size || !validEnd) {
        throw new BlobRangeError(row.size);
      }
      start = range.start;
      end = Math.min(range.end ?? end, end);
    }
    if (end < start) return Readable.from([]);
    if (row.objectKey) return this.backend.read(row.objectKey, start, end);
    if (row.contentId && row.chunkSize) return readDatabaseChunks(this.db, row.contentId, row.chunkSize, start, end);
    throw new Error(`blob ${sha256} has neither an object key nor database chunks`);
  }

  /**
   * Removes bytes no `blob` row points at, last written before `olderThan`: temporary files
   * and incomplete multipart uploads of puts that died, objects committed by a put that died
   * before inserting the row, and database uploads of the time before the blob store. Pick a
   * cut-off well beyond the longest upload. Returns how many were removed.
   */
  async sweep(olderThan: Date): Promise<number> {
    const objects = await this.backend.sweep(olderThan, async (keys) => {
      if (keys.length === 0) return new Set();
      const rows = await this.db.select({ key: blobs.objectKey }).from(blobs).where(inArray(blobs.objectKey, keys));
      return new Set(rows.map((r) => r.key as string));
    });
    return objects + (await purgeAbandonedDatabaseUploads(this.db, olderThan));
  }

  private async find(sha256: string) {
    const [row] = await this.db.select().from(blobs).where(eq(blobs.sha256, sha256));
    return row;
  }
}

function toInfo(row: typeof blobs.$inferSelect): BlobInfo {
  return { sha256: row.sha256, sha1: row.sha1, size: row.size, contentType: row.contentType };
}
