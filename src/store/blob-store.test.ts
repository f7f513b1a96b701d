/**
 * The blob store's contract, the same on every store the service can be configured with
 * (`files`, and `s3` against a local s3rver): round trips, deduplication, byte ranges, refusals
 * that store nothing, bounded memory. After failures: blob-recovery.test.ts.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { count, sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { bytes, collect, failingAfter, generate, KiB, MiB } from '../../test/support/blob-bytes.ts';
import { BLOB_STORE_KINDS, useBlobStoreFixture, useS3Server } from '../../test/support/blob-stores.ts';
import { BlobIntegrityError, BlobRangeError, BlobTooLargeError } from './blob-store.ts';
import { blobChunks, blobs } from './schema.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** A size the tests cut content around. */
const CHUNK = 256 * KiB;

const s3 = useS3Server();

/** The same contract on every blob store the service can be configured with. */
describe.each(BLOB_STORE_KINDS)('BlobStore on %s', (kind) => {
  const f = useBlobStoreFixture(kind, s3);

  it.each([
    ['empty', 0],
    ['1 byte', 1],
    ['256 KiB', CHUNK],
    ['256 KiB + 1', CHUNK + 1],
    ['several MB (several S3 parts)', 11 * MiB + 17],
  ])('round-trips %s (put, head, read) with the hashes node computes', async (_, size) => {
    const input = await bytes(size, size + 1);
    const stored = await f.store.put(Readable.from(generate(size, size + 1)), { contentType: 'application/pdf' });
    const expected = {
      sha256: createHash('sha256').update(input).digest('hex'),
      sha1: createHash('sha1').update(input).digest('base64'),
      size,
      contentType: 'application/pdf',
    };
    expect(stored).toEqual({ ...expected, deduplicated: false });
    expect(await f.store.head(stored.sha256)).toEqual(expected);
    const output = await collect((await f.store.read(stored.sha256))!);
    expect(output.length).toBe(size);
    expect(output.equals(input)).toBe(true);
  });

  it('keeps only metadata in the database: the bytes are in the blob store', async () => {
    const stored = await f.store.put(generate(1000, 3), { contentType: 'text/plain' });
    const [row] = await f.database.db.select().from(blobs).where(sql`${blobs.sha256} = ${stored.sha256}`);
    expect(row).toMatchObject({ contentId: null, chunkSize: null });
    expect(await f.backing.backend.exists(row!.objectKey!)).toBe(true);
    if (kind === 'files') expect(row!.objectKey).toBe(`${stored.sha256.slice(0, 2)}/${stored.sha256.slice(2, 4)}/${stored.sha256}`);
    const [chunks] = await f.database.db.select({ n: count() }).from(blobChunks);
    expect(chunks?.n).toBe(0);
  });

  it('answers undefined for an unknown address', async () => {
    expect(await f.store.head('0'.repeat(64))).toBeUndefined();
    expect(await f.store.read('0'.repeat(64))).toBeUndefined();
  });

  it('stores identical content once and says so the second time', async () => {
    const first = await f.store.put(generate(CHUNK * 2 + 5, 7), { contentType: 'image/jpeg' });
    const before = await f.held();
    const second = await f.store.put(generate(CHUNK * 2 + 5, 7, 4096), { contentType: 'application/octet-stream' });
    expect(second).toEqual({ ...first, deduplicated: true }); // content type of the first put is kept
    expect(await f.held()).toEqual(before);
  });

  it('keeps one blob when identical content is put concurrently', async () => {
    const before = await f.held();
    const results = await Promise.all([1, 2, 3, 4].map(() => f.store.put(generate(CHUNK + 10, 11), { contentType: 'text/plain' })));
    expect(new Set(results.map((r) => r.sha256)).size).toBe(1);
    expect(results.filter((r) => !r.deduplicated)).toHaveLength(1);
    expect(await f.held()).toEqual({ blobs: before.blobs! + 1, objects: before.objects + 1, temporary: 0 });
  });

  describe('byte ranges (inclusive ends, HTTP semantics)', () => {
    const SIZE = 4321;
    let input: Buffer;
    let sha256: string;

    beforeAll(async () => {
      input = await bytes(SIZE, 5);
      sha256 = (await f.store.put(generate(SIZE, 5, 333), { contentType: 'application/pdf' })).sha256;
    });

    async function readRange(start: number, end?: number) {
      return collect((await f.store.read(sha256, end === undefined ? { start } : { start, end }))!);
    }

    it('serves the first byte', async () => {
      expect(await readRange(0, 0)).toEqual(input.subarray(0, 1));
    });
    it('serves a span in the middle', async () => {
      expect(await readRange(999, 3000)).toEqual(input.subarray(999, 3001));
    });
    it('serves from an offset to the end when there is no end', async () => {
      expect(await readRange(4000)).toEqual(input.subarray(4000));
      expect(await readRange(SIZE - 1)).toEqual(input.subarray(SIZE - 1));
    });
    it('clamps an end past the last byte', async () => {
      expect(await readRange(4300, 1_000_000)).toEqual(input.subarray(4300));
    });
    it('refuses ranges that cannot be satisfied with BlobRangeError carrying the size', async () => {
      await expect(f.store.read(sha256, { start: SIZE })).rejects.toEqual(new BlobRangeError(SIZE));
      await expect(f.store.read(sha256, { start: 10, end: 9 })).rejects.toBeInstanceOf(BlobRangeError);
      await expect(f.store.read(sha256, { start: -1 })).rejects.toBeInstanceOf(BlobRangeError);
      const empty = await f.store.put(generate(0, 1), { contentType: 'text/plain' });
      await expect(f.store.read(empty.sha256, { start: 0 })).rejects.toMatchObject({ name: 'BlobRangeError', size: 0 });
    });
  });

  describe('failures store nothing', () => {
    it('refuses content over maxBytes with BlobTooLargeError', async () => {
      const before = await f.held();
      const err = await f.store.put(generate(3 * CHUNK, 21), { contentType: 'application/pdf', maxBytes: 2 * CHUNK + 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobTooLargeError);
      expect(err).toMatchObject({ maxBytes: 2 * CHUNK + 1 });
      expect(await f.held()).toEqual(before);
    });

    it('accepts content of exactly maxBytes', async () => {
      const stored = await f.store.put(generate(CHUNK, 22), { contentType: 'application/pdf', maxBytes: CHUNK });
      expect(stored.size).toBe(CHUNK);
    });

    it('refuses a size that differs from the declared one with BlobIntegrityError', async () => {
      const before = await f.held();
      const err = await f.store.put(generate(CHUNK + 3, 23), { contentType: 'application/pdf', expected: { size: CHUNK } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobIntegrityError);
      expect(err).toMatchObject({ kind: 'size', expected: CHUNK, actual: CHUNK + 3 });
      expect(await f.held()).toEqual(before);
    });

    it('refuses bytes whose SHA-1 differs from the declared one with BlobIntegrityError, also past one S3 part', async () => {
      const before = await f.held();
      const size = 6 * MiB + 3;
      const actual = createHash('sha1').update(await bytes(size, 24)).digest('base64');
      const declared = createHash('sha1').update('something else').digest('base64');
      const err = await f.store.put(generate(size, 24), { contentType: 'application/pdf', expected: { size, sha1: declared } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobIntegrityError);
      expect(err).toMatchObject({ kind: 'hash', expected: declared, actual });
      expect(await f.held()).toEqual(before);
    });

    it('accepts bytes matching the declared size and SHA-1', async () => {
      const sha1 = createHash('sha1').update(await bytes(1000, 25)).digest('base64');
      expect(await f.store.put(generate(1000, 25), { contentType: 'text/plain', expected: { size: 1000, sha1 } })).toMatchObject({ sha1, size: 1000 });
    });

    it('rethrows the error of a source that fails midway', async () => {
      const before = await f.held();
      await expect(f.store.put(failingAfter(3 * CHUNK + 7), { contentType: 'application/pdf' })).rejects.toThrow('connection reset by EHR');
      expect(await f.held()).toEqual(before);
    });

    it('refuses a source of strings', async () => {
      const before = await f.held();
      await expect(f.store.put(Readable.from(['text']), { contentType: 'text/plain' })).rejects.toBeInstanceOf(TypeError);
      expect(await f.held()).toEqual(before);
    });
  });

  it('puts and reads 64 MB while memory stays far below 64 MB', async () => {
    const TOTAL = 64 * MiB;
    // Buffers are what a put or read would retain (on S3 the local server's in this process count too).
    const live = (m: NodeJS.MemoryUsage) => m.heapUsed + m.arrayBuffers;
    // Warm up the S3 client, the JIT and the file system cache.
    const warm = await f.store.put(generate(16 * MiB, 40, 64 * KiB), { contentType: 'application/octet-stream' });
    for await (const _ of (await f.store.read(warm.sha256))!);
    gc();
    const before = process.memoryUsage();
    let peakRss = before.rss;
    let peakLive = live(before);
    let seen = 0;
    let nextSample = 0;
    const sample = () => {
      if (seen < nextSample) return;
      nextSample += 4 * MiB;
      gc();
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakLive = Math.max(peakLive, live(m));
    };
    async function* measured() {
      for await (const piece of generate(TOTAL, 41, 64 * KiB)) {
        seen += piece.length;
        sample();
        yield piece;
      }
    }
    let t0 = performance.now();
    const stored = await f.store.put(measured(), { contentType: 'application/octet-stream' });
    const putMs = performance.now() - t0;
    expect(stored.size).toBe(TOTAL);
    seen = 0;
    nextSample = 0;
    const hash = createHash('sha256');
    t0 = performance.now();
    for await (const chunk of (await f.store.read(stored.sha256))!) {
      hash.update(chunk as Buffer);
      seen += (chunk as Buffer).length;
      sample();
    }
    const readMs = performance.now() - t0;
    expect(seen).toBe(TOTAL);
    expect(hash.digest('hex')).toBe(stored.sha256);
    const mb = (n: number) => n / MiB;
    const rssGrewMb = mb(peakRss - before.rss);
    const liveGrewMb = mb(peakLive - live(before));
    console.info(
      `blob store (${kind}): 64 MB put ${(64_000 / putMs).toFixed(0)} MB/s (incl. generating), read ${(64_000 / readMs).toFixed(0)} MB/s; ` +
        `RSS grew ${rssGrewMb.toFixed(1)} MB, live JS heap + buffers grew ${liveGrewMb.toFixed(1)} MB`,
    );
    // S3: the SDK holds up to three 5 MiB parts (two uploading, one filling), and the local
    // S3 server's buffers are in this process too.
    const limitMb = kind === 's3' ? 48 : 32;
    expect(liveGrewMb).toBeLessThan(limitMb);
    expect(rssGrewMb).toBeLessThan(limitMb);
  });
});
