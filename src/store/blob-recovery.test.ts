/**
 * The blob store after things went wrong (both stores, as blob-store.test.ts): a writer process
 * killed mid-put, bytes left without a row and the sweep that removes them, and blobs the
 * database still holds from before the blob store, read in place and moved by the migration.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { count, isNotNull, sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { bytes, collect, generate, MiB } from '../../test/support/blob-bytes.ts';
import { BLOB_STORE_KINDS, openTestBlobBackend, useBlobStoreFixture, useS3Server } from '../../test/support/blob-stores.ts';
import { fanOutPath } from './blob-backend.ts';
import { BlobStore } from './blob-store.ts';
import { type Db, openDatabase } from './database.ts';
import { migrateBlobsFromDatabase } from './migrate-blobs.ts';
import { blobChunks, blobContents, blobs } from './schema.ts';

const CHUNK = 256 * 1024;

/** A blob as the database stored it before the blob store: `blob_content` + `blob_chunk` rows. */
async function insertLegacyBlob(db: Db, data: Buffer, chunkSize: number): Promise<string> {
  const contentId = randomUUID();
  const sha256 = createHash('sha256').update(data).digest('hex');
  await db.insert(blobContents).values({ id: contentId, createdAt: new Date() });
  let seq = 0;
  for (let at = 0; at < data.length; at += chunkSize) {
    const chunk = data.subarray(at, at + chunkSize).toString('base64');
    await db.execute(sql`INSERT INTO ${blobChunks} (content_id, seq, data) VALUES (${contentId}, ${seq++}, decode(${chunk}, 'base64'))`);
  }
  await db.insert(blobs).values({
    sha256,
    sha1: createHash('sha1').update(data).digest('base64'),
    size: data.length,
    contentType: 'application/pdf',
    chunkSize,
    chunkCount: seq,
    contentId,
    createdAt: new Date(),
  });
  return sha256;
}

const CHILD = path.join(import.meta.dirname, '..', '..', 'test', 'support', 'blob-writer-child.ts');

/** Runs blob-writer-child.ts and SIGKILLs it once it has streamed `killAfter` bytes of its endless blob. */
async function killMidWrite(args: object, killAfter: number): Promise<{ stored: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const errors: string[] = [];
  createInterface({ input: child.stderr }).on('line', (l) => errors.push(l));
  let stored = '';
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('STORED ')) stored = line.slice(7);
      if (line.startsWith('WRITING ') && Number(line.slice(8)) >= killAfter) {
        child.kill('SIGKILL');
        resolve();
      }
    });
    void exited.then(() => reject(new Error(`writer exited before it was killed:\n${errors.slice(-20).join('\n')}`)));
  });
  expect(await exited).toBe('SIGKILL');
  return { stored };
}

const s3 = useS3Server();

describe.each(BLOB_STORE_KINDS)('BlobStore on %s, after failures', (kind) => {
  const f = useBlobStoreFixture(kind, s3);

  describe('the sweep', () => {
    it('removes bytes committed by a put that died before its row, once older than the cut-off, and nothing a row names', async () => {
      const kept = await f.store.put(generate(5000, 51), { contentType: 'text/plain' });
      // A put that died between making its bytes durable and inserting the row.
      const upload = await f.backing.backend.begin();
      const orphan = await bytes(3000, 52);
      await upload.write(orphan);
      const key = await upload.commit(createHash('sha256').update(orphan).digest('hex'));
      expect(await f.backing.backend.exists(key)).toBe(true);
      const before = await f.held();
      expect(await f.store.sweep(new Date(Date.now() - 3_600_000))).toBe(0); // too young to be swept
      expect(await f.store.sweep(new Date(Date.now() + 60_000))).toBe(1);
      expect(await f.backing.backend.exists(key)).toBe(false);
      expect(await f.held()).toEqual({ ...before, objects: before.objects - 1 });
      expect((await collect((await f.store.read(kept.sha256))!)).equals(await bytes(5000, 51))).toBe(true);
    });

    it.runIf(kind === 'files')('puts back a file a sweep had moved aside when it died, if a row names it', async () => {
      const data = await bytes(700, 53);
      const stored = await f.store.put(Readable.from([data]), { contentType: 'text/plain' });
      const key = fanOutPath(stored.sha256);
      const dir = (f.backing.settings as { dir: string }).dir;
      await rename(path.join(dir, key), path.join(dir, 'tmp', `swept-${stored.sha256}-${randomUUID()}`));
      expect(await f.backing.backend.exists(key)).toBe(false);
      expect(await f.store.sweep(new Date(Date.now() + 60_000))).toBe(0);
      expect((await collect((await f.store.read(stored.sha256))!)).equals(data)).toBe(true);
      expect((await f.backing.contents()).temporary).toEqual([]);
    });

    it('removes database uploads that never became a blob', async () => {
      const past = new Date(Date.now() - 3_600_000);
      await f.database.db.insert(blobContents).values({ id: randomUUID(), createdAt: past });
      expect(await f.store.sweep(new Date(Date.now() - 60_000))).toBe(1);
    });
  });

  describe('blobs stored in the database before the blob store', () => {
    it('are read from their chunks, whole and by range, until migrated; the migration moves them once', async () => {
      const a = await bytes(2 * CHUNK + 99, 61);
      const b = await bytes(10, 62);
      const shaA = await insertLegacyBlob(f.database.db, a, CHUNK);
      const shaB = await insertLegacyBlob(f.database.db, b, CHUNK);
      expect((await collect((await f.store.read(shaA))!)).equals(a)).toBe(true);
      expect(await collect((await f.store.read(shaA, { start: CHUNK - 5, end: CHUNK + 5 }))!)).toEqual(a.subarray(CHUNK - 5, CHUNK + 6));
      // Identical content put now is deduplicated against the legacy blob.
      expect(await f.store.put(Readable.from([b]), { contentType: 'text/plain' })).toMatchObject({ sha256: shaB, deduplicated: true });

      const result = await migrateBlobsFromDatabase(f.database.db, f.backing.backend);
      expect(result).toEqual({ moved: 2, bytes: a.length + b.length, failed: [] });
      const [left] = await f.database.db.select({ n: count() }).from(blobs).where(isNotNull(blobs.contentId));
      expect(left?.n).toBe(0);
      const [chunks] = await f.database.db.select({ n: count() }).from(blobChunks);
      expect(chunks?.n).toBe(0);
      expect((await collect((await f.store.read(shaA))!)).equals(a)).toBe(true);
      expect(await collect((await f.store.read(shaA, { start: CHUNK - 5, end: CHUNK + 5 }))!)).toEqual(a.subarray(CHUNK - 5, CHUNK + 6));
      expect(await migrateBlobsFromDatabase(f.database.db, f.backing.backend)).toEqual({ moved: 0, bytes: 0, failed: [] });
    });

    it('leaves a blob whose chunks do not hash to its address where it is', async () => {
      const data = await bytes(500, 63);
      const sha = await insertLegacyBlob(f.database.db, data, CHUNK);
      await f.database.db.execute(sql`UPDATE ${blobChunks} SET data = decode(${randomBytes(500).toString('base64')}, 'base64') WHERE content_id = (SELECT content_id FROM ${blobs} WHERE sha256 = ${sha})`);
      const before = await f.held();
      const result = await migrateBlobsFromDatabase(f.database.db, f.backing.backend);
      expect(result.moved).toBe(0);
      expect(result.failed).toEqual([{ sha256: sha, reason: expect.stringContaining('hash to') }]);
      expect(await f.held()).toEqual(before);
    });
  });

  it('after a writer is killed mid-put, no blob row lacks its bytes, and the sweep removes what the put left', { timeout: 60_000 }, async () => {
    // The writer is another process, on a database of its own that this test reopens after the kill.
    const url = process.env.DATABASE_URL;
    const schemaName = `k_${randomBytes(6).toString('hex')}`;
    const dataDir = url ? undefined : await mkdtemp(path.join(tmpdir(), 'blob-kill-'));
    const open = () => openDatabase(url ? { databaseUrl: url, schemaName, poolSize: 2 } : { dataDir: dataDir as string });
    const setup = await open();
    await setup.migrate();
    await setup.close();
    const writer = await openTestBlobBackend(kind, s3());
    try {
      const { stored } = await killMidWrite({ ...(url ? { databaseUrl: url, schemaName } : { dataDir }), settings: writer.settings }, 12 * MiB);
      const after = await open();
      try {
        const killedStore = new BlobStore(after.db, writer.backend);
        const rows = await after.db.select().from(blobs);
        expect(rows.map((r) => r.sha256)).toEqual([stored]);
        for (const row of rows) expect(await writer.backend.exists(row.objectKey!)).toBe(true);
        expect((await collect((await killedStore.read(stored))!)).toString()).toBe('stored before the kill');
        const left = await writer.contents();
        if (kind === 'files') expect(left.temporary).toHaveLength(1); // the killed put's temporary file
        // S3: the killed put is an incomplete multipart upload, not an object (s3rver cannot list those).
        expect(left.objects).toHaveLength(1);
        await killedStore.sweep(new Date(Date.now() + 60_000));
        expect(await writer.contents()).toEqual({ objects: left.objects, temporary: [] });
        expect((await collect((await killedStore.read(stored))!)).toString()).toBe('stored before the kill');
      } finally {
        await after.close();
      }
    } finally {
      await writer.close();
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
      if (url) {
        const admin = await openDatabase({ databaseUrl: url, poolSize: 1 });
        await admin.db.execute(sql.raw(`DROP SCHEMA IF EXISTS ${schemaName} CASCADE`));
        await admin.close();
      }
    }
  });
});
