import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { pipeline, Readable } from 'node:stream';
import zlib from 'node:zlib';
import { AttachmentTooLargeError, toTransportError } from './outbound-errors.ts';

/**
 * The transport under fetchAttachment: `node:http`/`node:https` GETs over keep-alive agents.
 * Attachments are the bulk of what the service downloads; fetch's WHATWG streams cost about as
 * much CPU per MiB as hashing the bytes twice, so the bytes stay Node Buffers from the socket to
 * the blob store (no web-stream conversion, no copy).
 */

/** One pool of kept-alive connections per scheme, shared by every attachment download. */
const agents = {
  'http:': new http.Agent({ keepAlive: true }),
  'https:': new https.Agent({ keepAlive: true }),
};

/** Content codings decoded when a server compresses although asked for `identity`. */
const DECODERS: Record<string, () => NodeJS.ReadWriteStream> = {
  gzip: () => zlib.createGunzip(),
  'x-gzip': () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
  br: () => zlib.createBrotliDecompress(),
};

export function isDecodable(coding: string): boolean {
  return coding === '' || coding === 'identity' || coding in DECODERS;
}

const timeoutError = () => new DOMException('The operation timed out', 'TimeoutError');

/**
 * GETs `url` and resolves with the response once its headers arrive. Rejects with a typed
 * transport error (OutboundHttpError, status 0: `timeout` when no headers came within
 * `timeoutMs`, else `network`). Redirects are not followed.
 */
export function getAttachment(url: URL, headers: Record<string, string>, timeoutMs: number, signal?: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(toTransportError(signal.reason, 'GET', url.toString()));
    const req = (url.protocol === 'https:' ? https : http).request(url, { method: 'GET', headers, agent: agents[url.protocol as 'http:' | 'https:'] });
    const timer = setTimeout(() => req.destroy(timeoutError()), timeoutMs);
    const onAbort = () => req.destroy(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const settle = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    req.once('response', (res) => {
      settle();
      resolve(res);
    });
    req.once('error', (err) => {
      settle();
      reject(toTransportError(err, 'GET', url.toString()));
    });
    req.end();
  });
}

/** Bodies up to this size are read and dropped so that their connection is reused; larger or unsized ones close it. */
const DRAINED_BYTES = 64 * 1024;

/** Drops the body of a response nobody reads (a redirect, a 401): reads it out when it is small, else closes the connection. */
export function discard(res: IncomingMessage): void {
  res.on('error', () => undefined);
  const length = Number(res.headers['content-length'] ?? Number.NaN);
  if (length >= 0 && length <= DRAINED_BYTES) res.resume();
  else res.destroy();
}

/** Closes the connection instead of reading a body nobody wants (one too large). */
export function abandon(res: IncomingMessage): void {
  res.on('error', () => undefined);
  res.destroy();
}

/**
 * The response body as a Node Readable with backpressure: counts the (decoded) bytes against
 * `maxBytes` (AttachmentTooLargeError), and fails with a `timeout` transport error when the
 * server sends nothing for `timeoutMs` while the reader is waiting for bytes (a slow reader is
 * not a stalled server). Destroying it closes the connection.
 */
export function attachmentBody(res: IncomingMessage, url: string, maxBytes: number, timeoutMs: number, signal?: AbortSignal): Readable {
  return new AttachmentBody(res, url, maxBytes, timeoutMs, signal);
}

class AttachmentBody extends Readable {
  private readonly res: IncomingMessage;
  private readonly source: Readable;
  private readonly url: string;
  private readonly maxBytes: number;
  private readonly timer: NodeJS.Timeout;
  private readonly signal: AbortSignal | undefined;
  private total = 0;
  /** The reader wants bytes and the source had none: the server is being waited on. */
  private waiting = false;
  private ended = false;

  constructor(res: IncomingMessage, url: string, maxBytes: number, timeoutMs: number, signal?: AbortSignal) {
    super({ highWaterMark: 256 * 1024 });
    this.res = res;
    this.url = url;
    this.maxBytes = maxBytes;
    this.signal = signal;
    const coding = String(res.headers['content-encoding'] ?? '').trim().toLowerCase();
    const decoder = DECODERS[coding]?.();
    this.source = decoder ? (pipeline(res, decoder, (err) => err && this.fail(err)) as unknown as Readable) : res;
    this.timer = setTimeout(() => this.waiting && this.fail(timeoutError()), timeoutMs);
    this.source.on('readable', () => {
      if (this.waiting) this.pull();
    });
    this.source.once('end', () => {
      this.ended = true;
      clearTimeout(this.timer);
      this.signal?.removeEventListener('abort', this.onAbort);
      this.push(null);
    });
    this.source.on('error', (err) => this.fail(err));
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  private readonly onAbort = () => this.fail(this.signal?.reason);

  private fail(err: unknown): void {
    if (err instanceof AttachmentTooLargeError) this.destroy(err);
    else this.destroy(toTransportError(err, 'GET', this.url));
  }

  override _read(): void {
    this.pull();
  }

  private pull(): void {
    this.waiting = false;
    let chunk: Buffer | null;
    while ((chunk = this.source.read() as Buffer | null) !== null) {
      this.total += chunk.byteLength;
      if (this.total > this.maxBytes) return this.fail(new AttachmentTooLargeError(this.url, this.maxBytes));
      if (!this.push(chunk)) return;
    }
    if (this.ended) return;
    this.waiting = true;
    this.timer.refresh();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this.onAbort);
    if (!this.ended) {
      this.source.on('error', () => undefined);
      this.res.destroy();
      if (this.source !== this.res) this.source.destroy();
    }
    callback(err);
  }
}
