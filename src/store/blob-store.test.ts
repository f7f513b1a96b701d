import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { count } from 'drizzle-orm';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/support/database.ts';
import { BlobIntegrityError, BlobRangeError, BlobStore, BlobTooLargeError } from './blob-store.ts';
import { type Database, openDatabase } from './database.ts';
import { blobChunks, blobContents, blobs } from './schema.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 256 * KiB;

/**
 * Deterministic pseudo-random bytes (xorshift32 from `seed`), yielded in pieces of uneven
 * sizes so chunk boundaries never line up with the source's.
 */
async function* generate(size: number, seed: number, pieceSize = 100_003): AsyncGenerator<Buffer> {
  let x = seed >>> 0 || 1;
  for (let done = 0; done < size; ) {
    const n = Math.min(pieceSize, size - done);
    const piece = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      piece[i] = x & 0xff;
    }
    done += n;
    yield piece;
  }
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

async function bytes(size: number, seed: number): Promise<Buffer> {
  return collect(generate(size, seed));
}

function failingAfter(bytesBefore: number): AsyncIterable<Uint8Array> {
  return (async function* () {
    yield* generate(bytesBefore, 99);
    throw new Error('connection reset by EHR');
  })();
}

describe('BlobStore', () => {
  let database: Database;
  let store: BlobStore;

  beforeAll(async () => {
    database = await openTestDatabase();
    store = new BlobStore(database.db, { chunkSize: CHUNK });
  });
  afterAll(async () => database.close());

  async function rowCounts() {
    const [b] = await database.db.select({ n: count() }).from(blobs);
    const [c] = await database.db.select({ n: count() }).from(blobContents);
    const [k] = await database.db.select({ n: count() }).from(blobChunks);
    return { blobs: b?.n, contents: c?.n, chunks: k?.n };
  }

  it.each([
    ['empty', 0],
    ['1 byte', 1],
    ['exactly one chunk', CHUNK],
    ['one chunk + 1', CHUNK + 1],
    ['several MB', 5 * MiB + 17],
  ])('round-trips %s (put, head, read) with the hashes node computes', async (_, size) => {
    const input = await bytes(size, size + 1);
    const stored = await store.put(Readable.from(generate(size, size + 1)), { contentType: 'application/pdf' });
    const expected = {
      sha256: createHash('sha256').update(input).digest('hex'),
      sha1: createHash('sha1').update(input).digest('base64'),
      size,
      contentType: 'application/pdf',
    };
    expect(stored).toEqual({ ...expected, deduplicated: false });
    expect(await store.head(stored.sha256)).toEqual(expected);
    const output = await collect((await store.read(stored.sha256))!);
    expect(output.length).toBe(size);
    expect(output.equals(input)).toBe(true);
  });

  it('answers undefined for an unknown address', async () => {
    expect(await store.head('0'.repeat(64))).toBeUndefined();
    expect(await store.read('0'.repeat(64))).toBeUndefined();
  });

  it('stores identical content once and says so the second time', async () => {
    const first = await store.put(generate(CHUNK * 2 + 5, 7), { contentType: 'image/jpeg' });
    const before = await rowCounts();
    const second = await store.put(generate(CHUNK * 2 + 5, 7, 4096), { contentType: 'application/octet-stream' });
    expect(second).toEqual({ ...first, deduplicated: true }); // content type of the first put is kept
    expect(await rowCounts()).toEqual(before);
  });

  it('keeps one blob when identical content is put concurrently', async () => {
    const before = await rowCounts();
    const results = await Promise.all([1, 2, 3, 4].map(() => store.put(generate(CHUNK + 10, 11), { contentType: 'text/plain' })));
    expect(new Set(results.map((r) => r.sha256)).size).toBe(1);
    expect(results.filter((r) => !r.deduplicated)).toHaveLength(1);
    expect(await rowCounts()).toEqual({ blobs: before.blobs! + 1, contents: before.contents! + 1, chunks: before.chunks! + 2 });
  });

  describe('byte ranges (inclusive ends, HTTP semantics)', () => {
    // Small chunks so ranges cross several boundaries.
    const small = () => new BlobStore(database.db, { chunkSize: 1000, chunksPerRead: 2 });
    const SIZE = 4321;
    let input: Buffer;
    let sha256: string;

    beforeAll(async () => {
      input = await bytes(SIZE, 5);
      sha256 = (await small().put(generate(SIZE, 5, 333), { contentType: 'application/pdf' })).sha256;
    });

    async function readRange(start: number, end?: number) {
      return collect((await small().read(sha256, end === undefined ? { start } : { start, end }))!);
    }

    it('serves the first byte', async () => {
      expect(await readRange(0, 0)).toEqual(input.subarray(0, 1));
    });
    it('serves a span crossing several chunk boundaries', async () => {
      expect(await readRange(999, 3000)).toEqual(input.subarray(999, 3001));
      expect(await readRange(1000, 1999)).toEqual(input.subarray(1000, 2000));
    });
    it('serves from an offset to the end when there is no end', async () => {
      expect(await readRange(4000)).toEqual(input.subarray(4000));
      expect(await readRange(SIZE - 1)).toEqual(input.subarray(SIZE - 1));
    });
    it('clamps an end past the last byte', async () => {
      expect(await readRange(4300, 1_000_000)).toEqual(input.subarray(4300));
    });
    it('reads a blob stored with another chunk size', async () => {
      expect(await collect((await store.read(sha256, { start: 10, end: 2010 }))!)).toEqual(input.subarray(10, 2011));
    });
    it('refuses ranges that cannot be satisfied with BlobRangeError carrying the size', async () => {
      await expect(small().read(sha256, { start: SIZE })).rejects.toEqual(new BlobRangeError(SIZE));
      await expect(small().read(sha256, { start: 10, end: 9 })).rejects.toBeInstanceOf(BlobRangeError);
      await expect(small().read(sha256, { start: -1 })).rejects.toBeInstanceOf(BlobRangeError);
      const empty = await store.put(generate(0, 1), { contentType: 'text/plain' });
      await expect(store.read(empty.sha256, { start: 0 })).rejects.toMatchObject({ name: 'BlobRangeError', size: 0 });
    });
  });

  describe('failures store nothing', () => {
    it('refuses content over maxBytes with BlobTooLargeError', async () => {
      const before = await rowCounts();
      const err = await store.put(generate(3 * CHUNK, 21), { contentType: 'application/pdf', maxBytes: 2 * CHUNK + 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobTooLargeError);
      expect(err).toMatchObject({ maxBytes: 2 * CHUNK + 1 });
      expect(await rowCounts()).toEqual(before);
    });

    it('accepts content of exactly maxBytes', async () => {
      const stored = await store.put(generate(CHUNK, 22), { contentType: 'application/pdf', maxBytes: CHUNK });
      expect(stored.size).toBe(CHUNK);
    });

    it('refuses a size that differs from the declared one with BlobIntegrityError', async () => {
      const before = await rowCounts();
      const err = await store.put(generate(CHUNK + 3, 23), { contentType: 'application/pdf', expected: { size: CHUNK } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobIntegrityError);
      expect(err).toMatchObject({ kind: 'size', expected: CHUNK, actual: CHUNK + 3 });
      expect(await rowCounts()).toEqual(before);
    });

    it('refuses bytes whose SHA-1 differs from the declared one with BlobIntegrityError', async () => {
      const before = await rowCounts();
      const actual = createHash('sha1').update(await bytes(CHUNK + 3, 24)).digest('base64');
      const declared = createHash('sha1').update('something else').digest('base64');
      const err = await store
        .put(generate(CHUNK + 3, 24), { contentType: 'application/pdf', expected: { size: CHUNK + 3, sha1: declared } })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobIntegrityError);
      expect(err).toMatchObject({ kind: 'hash', expected: declared, actual });
      expect(await rowCounts()).toEqual(before);
    });

    it('accepts bytes matching the declared size and SHA-1', async () => {
      const sha1 = createHash('sha1').update(await bytes(1000, 25)).digest('base64');
      expect(await store.put(generate(1000, 25), { contentType: 'text/plain', expected: { size: 1000, sha1 } })).toMatchObject({ sha1, size: 1000 });
    });

    it('rethrows the error of a source that fails midway', async () => {
      const before = await rowCounts();
      await expect(store.put(failingAfter(3 * CHUNK + 7), { contentType: 'application/pdf' })).rejects.toThrow('connection reset by EHR');
      expect(await rowCounts()).toEqual(before);
    });

    it('refuses a source of strings', async () => {
      const before = await rowCounts();
      await expect(store.put(Readable.from(['text']), { contentType: 'text/plain' })).rejects.toBeInstanceOf(TypeError);
      expect(await rowCounts()).toEqual(before);
    });
  });

  it('purges uploads abandoned mid-way, and only those', async () => {
    const before = await rowCounts();
    const past = new Date(Date.now() - 3_600_000);
    // An upload whose process died: its content row and chunks stay with no blob row.
    const abandoned = new BlobStore(database.db, { chunkSize: CHUNK, now: () => past });
    const hang = abandoned.put(
      (async function* () {
        yield* generate(CHUNK * 2, 31);
        await new Promise<never>(() => undefined);
      })(),
      { contentType: 'text/plain' },
    );
    void hang;
    await expect.poll(async () => (await rowCounts()).chunks).toBe(before.chunks! + 2);
    expect(await store.purgeAbandonedUploads(new Date(Date.now() - 60_000))).toBe(1);
    expect(await rowCounts()).toEqual(before);
  });

  /**
   * In-memory PGlite keeps the database itself in the WASM heap, so stored bytes would count
   * as process memory: on PGlite this test stores into a data directory instead.
   */
  async function withStreamingDatabase(fn: (store: BlobStore, kind: string) => Promise<void>) {
    if (database.kind !== 'pglite') return fn(new BlobStore(database.db), database.kind);
    const dir = await mkdtemp(path.join(tmpdir(), 'blob-store-'));
    const onDisk = await openDatabase({ dataDir: dir });
    try {
      await onDisk.migrate();
      await fn(new BlobStore(onDisk.db), 'pglite on disk');
    } finally {
      await onDisk.close();
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('puts and reads 64 MB while memory stays far below 64 MB', async () => {
    await withStreamingDatabase(async (store, kind) => {
    const TOTAL = 64 * MiB;
    // Buffers are what a put or read would retain. PGlite's WASM heap is an ArrayBuffer too,
    // and grows as its buffer pool fills, so there only the JS heap counts as "live".
    const live = (m: NodeJS.MemoryUsage) => m.heapUsed + (kind === 'postgres' ? m.arrayBuffers : 0);
    // Warm up the driver, the JIT and (on PGlite) the WASM heap's buffer pool.
    const warm = await store.put(generate(16 * MiB, 40, 64 * KiB), { contentType: 'application/octet-stream' });
    for await (const _ of (await store.read(warm.sha256))!);
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
    const stored = await store.put(measured(), { contentType: 'application/octet-stream' });
    const putMs = performance.now() - t0;
    expect(stored.size).toBe(TOTAL);
    seen = 0;
    nextSample = 0;
    const hash = createHash('sha256');
    t0 = performance.now();
    for await (const chunk of (await store.read(stored.sha256))!) {
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
    expect(liveGrewMb).toBeLessThan(32);
    expect(rssGrewMb).toBeLessThan(32);
    });
  });
});
