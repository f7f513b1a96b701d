import { Readable } from 'node:stream';
import { and, asc, between, eq, lt, notExists, sql } from 'drizzle-orm';
import type { Db } from './database.ts';
import { blobChunks, blobContents, blobs } from './schema.ts';

/**
 * Attachment bytes as the database held them before the blob store (`blob_content` +
 * `blob_chunk`): read until `npm run blobs:migrate` moves them out, never written any more.
 */

/** Chunks fetched per query: about 2 MiB at the 1 MiB chunks that were written. */
const READ_BATCH_BYTES = 2 * 1024 * 1024;

/** The bytes start..end (inclusive) of a database upload stored in `chunkSize` chunks. */
export function readDatabaseChunks(db: Db, contentId: string, chunkSize: number, start: number, end: number): Readable {
  return Readable.from(chunks(db, contentId, chunkSize, start, end), { objectMode: false, highWaterMark: chunkSize });
}

/** Yields the bytes start..end (inclusive), fetching the next batch of chunks while this one is consumed. */
async function* chunks(db: Db, contentId: string, chunkSize: number, start: number, end: number): AsyncGenerator<Buffer> {
  const perRead = Math.max(1, Math.floor(READ_BATCH_BYTES / chunkSize));
  const last = Math.floor(end / chunkSize);
  type Batch = { from: number; to: number; rows: { seq: number; base64: string }[] };
  const fetch = (from: number): Promise<Batch> => {
    const to = Math.min(last, from + perRead - 1);
    // base64 text, decoded natively by Buffer: faster than the drivers' bytea parsing on both.
    const rows = db
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

/** Deletes database uploads that never became a blob (their process died) begun before `olderThan`. */
export async function purgeAbandonedDatabaseUploads(db: Db, olderThan: Date): Promise<number> {
  const removed = await db
    .delete(blobContents)
    .where(and(lt(blobContents.createdAt, olderThan), notExists(db.select({ one: sql`1` }).from(blobs).where(eq(blobs.contentId, blobContents.id)))))
    .returning({ id: blobContents.id });
  return removed.length;
}
