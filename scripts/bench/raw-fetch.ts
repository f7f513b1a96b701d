/**
 * The raw baseline of `npm run bench:records`, run as its own process so that it
 * gets a core of its own as the service does (the sandbox EHR serving the bytes lives in the
 * parent): GET every attachment over keep-alive HTTP (node:http), `concurrency` at a time,
 * each streamed through SHA-1 and SHA-256 and appended to a file (one file per slot), with
 * backpressure. The declared size and SHA-1 are checked, as the service does.
 *
 * Reads one JSON job ({@link RawFetchJob}) on stdin; writes one line `RAW_FETCH_RESULT {json}`.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { Agent, get, type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import path from 'node:path';

export interface RawFetchJob {
  attachments: { url: string; size: number; sha1: string }[];
  /** Bearer for the EHR origin. */
  token: string;
  concurrency: number;
  /** Directory the slot files go into (the parent deletes them). */
  dir: string;
}

export interface RawFetchResult {
  bytes: number;
  documents: number;
  ms: number;
  /** User + system CPU of this process during the fetch, ms. */
  cpuMs: number;
  /** Peak RSS of this process, bytes. */
  maxRss: number;
  mismatches: number;
}

function request(agent: Agent, url: string, token: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent, headers: { accept: '*/*', authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
      } else resolve(res);
    });
    req.on('error', reject);
  });
}

async function run(job: RawFetchJob): Promise<RawFetchResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: job.concurrency });
  const files: WriteStream[] = Array.from({ length: job.concurrency }, (_, i) => createWriteStream(path.join(job.dir, `baseline-${i}.bin`)));
  let next = 0;
  let bytes = 0;
  let mismatches = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const slot = async (file: WriteStream) => {
    while (next < job.attachments.length) {
      const a = job.attachments[next++]!;
      const res = await request(agent, a.url, job.token);
      const sha1 = createHash('sha1');
      const sha256 = createHash('sha256');
      let size = 0;
      for await (const chunk of res as AsyncIterable<Buffer>) {
        size += chunk.length;
        sha1.update(chunk);
        sha256.update(chunk);
        if (!file.write(chunk)) await once(file, 'drain');
      }
      sha256.digest('hex');
      if (size !== a.size || sha1.digest('base64') !== a.sha1) mismatches++;
      bytes += size;
    }
  };
  await Promise.all(files.map(slot));
  await Promise.all(files.map((f) => new Promise<void>((resolve, reject) => f.end((err?: Error | null) => (err ? reject(err) : resolve())))));
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  agent.destroy();
  return { bytes, documents: job.attachments.length, ms, cpuMs: (used.user + used.system) / 1000, maxRss: process.resourceUsage().maxRSS * 1024, mismatches };
}

const chunks: Buffer[] = [];
for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
const result = await run(JSON.parse(Buffer.concat(chunks).toString('utf8')) as RawFetchJob);
process.stdout.write(`RAW_FETCH_RESULT ${JSON.stringify(result)}\n`);
