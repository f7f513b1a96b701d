import http from 'node:http';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFhirClient } from './fhir-client.ts';

/**
 * Streaming over a real socket (no msw): a 50 MB body must pass through fetchAttachment without
 * being buffered. RSS is compared before/after with a generous margin; no timing thresholds.
 *
 * Garbage (each 64 KB socket read is a fresh Buffer) is only returned on GC, and V8 lets tens of
 * MB of external memory pile up first, so RSS alone grows with the transfer even when nothing is
 * retained. The test forces a GC every 4 MB: what RSS still holds then is live memory, which
 * buffering would make grow to the size of the body.
 */
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const TOTAL = 50 * 1024 * 1024;
const WARM_UP = 8 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
let server: http.Server;
let base: string;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const size = req.url === '/fhir/R4/Binary/warm-up' ? WARM_UP : TOTAL;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        sent += CHUNK.length;
        if (!res.write(CHUNK)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir/R4`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function drain(body: NodeJS.ReadableStream): Promise<number> {
  let n = 0;
  for await (const chunk of body) n += (chunk as Buffer).length;
  return n;
}

describe('fetchAttachment over a real HTTP server', () => {
  it('streams 50 MB while RSS grows far less than 50 MB', async () => {
    const client = createFhirClient({ baseUrl: base, timeoutMs: 10_000 });
    // Warm up fetch/undici, the JIT and the heap so their one-off growth is not counted.
    expect(await drain((await client.fetchAttachment('Binary/warm-up', { maxBytes: TOTAL })).body)).toBe(WARM_UP);
    gc();
    const before = process.memoryUsage();
    const live = (m: NodeJS.MemoryUsage) => m.heapUsed + m.arrayBuffers;
    let peakRss = before.rss;
    let peakLive = live(before);
    const res = await client.fetchAttachment('Binary/big', { maxBytes: TOTAL });
    expect(res.contentLength).toBe(TOTAL);
    let n = 0;
    let nextSample = 0;
    for await (const chunk of res.body) {
      n += (chunk as Buffer).length;
      if (n >= nextSample) {
        nextSample += 4 * 1024 * 1024;
        gc();
        const m = process.memoryUsage();
        peakRss = Math.max(peakRss, m.rss);
        peakLive = Math.max(peakLive, live(m));
      }
    }
    expect(n).toBe(TOTAL);
    const mb = (bytes: number) => bytes / 1024 / 1024;
    const rssGrewMb = mb(peakRss - before.rss);
    const liveGrewMb = mb(peakLive - live(before));
    console.info(`attachment stream: 50 MB read, RSS grew ${rssGrewMb.toFixed(1)} MB, live JS heap + buffers grew ${liveGrewMb.toFixed(1)} MB`);
    expect(rssGrewMb).toBeLessThan(25);
    // RSS can hide retention (the allocator reuses pages freed earlier); live memory cannot.
    expect(liveGrewMb).toBeLessThan(16);
  });
});
