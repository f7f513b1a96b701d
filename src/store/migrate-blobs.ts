import { createHash } from 'node:crypto';
import { and, asc, eq, gt, isNotNull } from 'drizzle-orm';
import type { BlobBackend } from './blob-backend.ts';
import type { Db } from './database.ts';
import { readDatabaseChunks } from './legacy-blob-chunks.ts';
import { blobContents, blobs } from './schema.ts';

export interface MigrateBlobsResult {
  /** Blobs whose bytes were copied out of the database (and their chunks deleted). */
  moved: number;
  /** Their bytes in all. */
  bytes: number;
  /** Blobs whose database chunks did not hash to their address: left where they are. */
  failed: { sha256: string; reason: string }[];
}

/**
 * Moves the bytes of blobs still held in the database (`blob_chunk`, from before the blob
 * store) into `backend`, one blob at a time: stream the chunks into an upload while hashing,
 * verify SHA-256 and size against the `blob` row, commit the upload, then in one transaction
 * point the row at the new object and delete the database copy. Idempotent and resumable:
 * only blobs that still have a `content_id` are candidates, and a blob is switched over only
 * after its bytes are verified and durable. A kill in between leaves an object no row names,
 * which the blob sweep removes; the next run copies that blob again.
 */
export async function migrateBlobsFromDatabase(db: Db, backend: BlobBackend, onBlob?: (done: { sha256: string; size: number }) => void): Promise<MigrateBlobsResult> {
  const result: MigrateBlobsResult = { moved: 0, bytes: 0, failed: [] };
  let after = '';
  for (;;) {
    const [row] = await db
      .select({ sha256: blobs.sha256, size: blobs.size, contentId: blobs.contentId, chunkSize: blobs.chunkSize })
      .from(blobs)
      .where(and(isNotNull(blobs.contentId), gt(blobs.sha256, after)))
      .orderBy(asc(blobs.sha256))
      .limit(1);
    if (!row) return result;
    after = row.sha256;
    const { contentId, chunkSize } = row;
    if (!contentId || !chunkSize) continue;
    const upload = await backend.begin();
    let key: string;
    try {
      const hash = createHash('sha256');
      let size = 0;
      if (row.size > 0) {
        for await (const piece of readDatabaseChunks(db, contentId, chunkSize, 0, row.size - 1)) {
          hash.update(piece as Buffer);
          size += (piece as Buffer).length;
          await upload.write(piece as Buffer);
        }
      }
      const sha256 = hash.digest('hex');
      if (sha256 !== row.sha256 || size !== row.size) {
        await upload.abort();
        result.failed.push({ sha256: row.sha256, reason: `database chunks hash to ${sha256} (${size} bytes), the row says ${row.sha256} (${row.size} bytes)` });
        continue;
      }
      key = await upload.commit(sha256);
    } catch (err) {
      await upload.abort();
      throw err;
    }
    await db.transaction(async (tx) => {
      const switched = await tx
        .update(blobs)
        .set({ objectKey: key, contentId: null, chunkSize: null, chunkCount: null })
        .where(and(eq(blobs.sha256, row.sha256), eq(blobs.contentId, contentId)))
        .returning({ sha256: blobs.sha256 });
      if (switched.length === 1) await tx.delete(blobContents).where(eq(blobContents.id, contentId));
    });
    result.moved++;
    result.bytes += row.size;
    onBlob?.({ sha256: row.sha256, size: row.size });
  }
}
