import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { and, asc, between, eq, is, lt, notExists, sql } from 'drizzle-orm';
import { PgliteDatabase, PgliteTransaction } from 'drizzle-orm/pglite';
import type { Db } from './database.ts';
import { blobChunks, blobContents, blobs } from './schema.ts';

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
  /** Bytes per stored chunk (default 1 MiB). Kept per blob, so changing it later is safe. */
  chunkSize?: number;
  /** Chunks fetched per query when reading (default: about 2 MiB worth). */
  chunksPerRead?: number;
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
 * 1 MiB chunks: on PostgreSQL a 256 KiB chunk per INSERT reached ~55 MB/s, 1 MiB ~100 MB/s
 * (fewer commits and round trips); a range read then fetches at most 2 MiB it does not need.
 */
const DEFAULT_CHUNK_SIZE = 1024 * 1024;
const READ_BATCH_BYTES = 2 * 1024 * 1024;
/** Chunk INSERTs in flight per put: two let PostgreSQL write one while the next is sent (+20%). */
const WRITES_IN_FLIGHT = 2;

/**
 * Content-addressed attachment bytes in the database, in fixed-size chunks, the same on
 * PostgreSQL and PGlite (DESIGN.md "Store"; issue 3 §2 and §5). Writes stream: the bytes
 * are hashed (SHA-1 for FHIR `Attachment.hash`, SHA-256 as the address) and written chunk
 * by chunk under a fresh upload id, so memory holds at most two chunks whatever the size.
 * The address is known only at the end; completing inserts the `blob` row pointing at the
 * upload, or, when those bytes are already stored, drops the upload. Reads stream a few
 * chunks per query and touch only the chunks a byte range covers.
 */
export class BlobStore {
  private readonly db: Db;
  private readonly chunkSize: number;
  private readonly chunksPerRead: number;
  private readonly now: () => Date;
  /**
   * PGlite's own bytea serializer and parser work byte by byte in JS (~4 MB/s). On PGlite the
   * bytes travel as base64 text decoded by the server instead (~18 MB/s); node-postgres
   * sends a Buffer as a binary parameter, which is faster still there.
   */
  private readonly bytesAsText: boolean;

  constructor(db: Db, options: BlobStoreOptions = {}) {
    this.db = db;
    this.bytesAsText = is(db, PgliteDatabase) || is(db, PgliteTransaction);
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isInteger(this.chunkSize) || this.chunkSize < 1) throw new Error('chunkSize must be a positive integer');
    this.chunksPerRead = options.chunksPerRead ?? Math.max(1, Math.floor(READ_BATCH_BYTES / this.chunkSize));
    this.now = options.now ?? (() => new Date());
  }

  /**
   * Stores the bytes of `source` and returns their address and hashes. Rejects with
   * BlobTooLargeError or BlobIntegrityError, or with the source's own error, leaving
   * nothing behind. Identical content stored twice (even concurrently) is kept once.
   */
  async put(source: Readable | AsyncIterable<Uint8Array>, options: PutOptions): Promise<StoredBlob> {
    const contentId = randomUUID();
    await this.db.insert(blobContents).values({ id: contentId, createdAt: this.now() });
    const sha1 = createHash('sha1');
    const sha256 = createHash('sha256');
    let size = 0;
    let seq = 0;
    let buffer = Buffer.allocUnsafe(this.chunkSize);
    let filled = 0;
    // Chunk inserts run while the next chunk is read and hashed; at most WRITES_IN_FLIGHT
    // chunks wait in memory for the database.
    const inFlight: Promise<void>[] = [];
    const write = async (data: Buffer) => {
      if (inFlight.length >= WRITES_IN_FLIGHT) await inFlight.shift();
      const value = this.bytesAsText ? sql`decode(${data.toString('base64')}, 'base64')` : sql`${data}`;
      // `.then` runs the (lazy) drizzle query once and gives a plain promise.
      const insert = this.db
        .execute(sql`INSERT INTO ${blobChunks} (content_id, seq, data) VALUES (${contentId}, ${seq++}, ${value})`)
        .then(() => undefined);
      insert.catch(() => undefined); // awaited later; this only keeps it from counting as unhandled meanwhile
      inFlight.push(insert);
    };
    try {
      for await (const piece of source as AsyncIterable<unknown>) {
        if (!(piece instanceof Uint8Array)) throw new TypeError('blob source must yield bytes, not strings or objects');
        size += piece.byteLength;
        if (options.maxBytes !== undefined && size > options.maxBytes) throw new BlobTooLargeError(options.maxBytes);
        sha1.update(piece);
        sha256.update(piece);
        let offset = 0;
        while (offset < piece.byteLength) {
          const n = Math.min(this.chunkSize - filled, piece.byteLength - offset);
          buffer.set(piece.subarray(offset, offset + n), filled);
          filled += n;
          offset += n;
          if (filled === this.chunkSize) {
            await write(buffer);
            buffer = Buffer.allocUnsafe(this.chunkSize);
            filled = 0;
          }
        }
      }
      if (filled > 0) await write(buffer.subarray(0, filled));
      await Promise.all(inFlight);

      const info: BlobInfo = { sha256: sha256.digest('hex'), sha1: sha1.digest('base64'), size, contentType: options.contentType };
      const expected = options.expected ?? {};
      if (expected.size !== undefined && expected.size !== size) throw new BlobIntegrityError('size', expected.size, size);
      if (expected.sha1 !== undefined && expected.sha1 !== info.sha1) throw new BlobIntegrityError('hash', expected.sha1, info.sha1);
      return await this.complete(contentId, info, seq);
    } catch (err) {
      await Promise.allSettled(inFlight);
      await this.db
        .delete(blobContents)
        .where(eq(blobContents.id, contentId))
        .catch(() => undefined); // left for purgeAbandonedUploads; the original error is what matters
      throw err;
    }
  }

  /**
   * Makes the upload the blob of its SHA-256, or drops it when that blob exists. ON CONFLICT
   * settles concurrent puts of identical bytes: the later insert waits for the earlier one
   * to commit and then inserts nothing.
   */
  private async complete(contentId: string, info: BlobInfo, chunkCount: number): Promise<StoredBlob> {
    return this.db.transaction(async (tx) => {
      const inserted = await tx
        .insert(blobs)
        .values({ ...info, chunkSize: this.chunkSize, chunkCount, contentId, createdAt: this.now() })
        .onConflictDoNothing({ target: blobs.sha256 })
        .returning({ sha256: blobs.sha256 });
      if (inserted.length === 1) return { ...info, deduplicated: false };
      await tx.delete(blobContents).where(eq(blobContents.id, contentId));
      const existing = await this.find(tx as unknown as Db, info.sha256);
      if (!existing) throw new Error('blob vanished while deduplicating'); // blobs are never deleted
      return { ...toInfo(existing), deduplicated: true };
    });
  }

  async head(sha256: string): Promise<BlobInfo | undefined> {
    const row = await this.find(this.db, sha256);
    return row && toInfo(row);
  }

  /**
   * Streams the blob's bytes, or the inclusive `range` of them (an `end` past the last byte
   * is clamped, as HTTP does). Undefined when there is no such blob; BlobRangeError when
   * the range starts at or past the end (so any range of an empty blob) or is malformed.
   */
  async read(sha256: string, range?: ByteRange): Promise<Readable | undefined> {
    const row = await this.find(this.db, sha256);
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
    return Readable.from(this.chunks(row.contentId, row.chunkSize, start, end), { objectMode: false, highWaterMark: row.chunkSize });
  }

  /**
   * Deletes uploads that never became a blob (their process died mid-put) and began before
   * `olderThan`; pick a cut-off well beyond the longest upload. Returns how many were removed.
   */
  async purgeAbandonedUploads(olderThan: Date): Promise<number> {
    const removed = await this.db
      .delete(blobContents)
      .where(
        and(
          lt(blobContents.createdAt, olderThan),
          notExists(this.db.select({ one: sql`1` }).from(blobs).where(eq(blobs.contentId, blobContents.id))),
        ),
      )
      .returning({ id: blobContents.id });
    return removed.length;
  }

  /** Yields the bytes start..end (inclusive), fetching the next batch of chunks while this one is consumed. */
  private async *chunks(contentId: string, chunkSize: number, start: number, end: number): AsyncGenerator<Buffer> {
    const last = Math.floor(end / chunkSize);
    type Batch = { from: number; to: number; rows: { seq: number; base64: string }[] };
    const fetch = (from: number): Promise<Batch> => {
      const to = Math.min(last, from + this.chunksPerRead - 1);
      // base64 text, decoded natively by Buffer: faster than the drivers' bytea parsing on both
      // (PGlite parses bytea byte by byte; node-postgres gets hex, twice the size).
      const rows = this.db
        .select({ seq: blobChunks.seq, base64: sql<string>`encode(${blobChunks.data}, 'base64')` })
        .from(blobChunks)
        .where(and(eq(blobChunks.contentId, contentId), between(blobChunks.seq, from, to)))
        .orderBy(asc(blobChunks.seq))
        .then((found) => ({ from, to, rows: found }));
      rows.catch(() => undefined); // awaited below, unless the reader stops early
      return rows;
    };
    let next: Promise<Batch> | undefined = fetch(Math.floor(start / chunkSize));
    while (next) {
      const { from, to, rows }: Batch = await next;
      next = to < last ? fetch(to + 1) : undefined;
      if (rows.length !== to - from + 1) throw new Error(`blob content ${contentId} is missing chunks ${from}-${to}`);
      for (const { seq, base64 } of rows) {
        const data = Buffer.from(base64, 'base64');
        const offset = seq * chunkSize;
        const sliceStart = Math.max(0, start - offset);
        const sliceEnd = Math.min(data.length, end - offset + 1);
        yield sliceStart === 0 && sliceEnd === data.length ? data : data.subarray(sliceStart, sliceEnd);
      }
    }
  }

  private async find(db: Db, sha256: string) {
    const [row] = await db.select().from(blobs).where(eq(blobs.sha256, sha256));
    return row;
  }
}

function toInfo(row: typeof blobs.$inferSelect): BlobInfo {
  return { sha256: row.sha256, sha1: row.sha1, size: row.size, contentType: row.contentType };
}
