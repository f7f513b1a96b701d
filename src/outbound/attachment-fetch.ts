import { Readable } from 'node:stream';
import { errorFromResponse } from './fhir-http.ts';
import { AttachmentTooLargeError, OutboundHttpError, OutboundUrlError, stripQuery, toTransportError } from './outbound-errors.ts';
import type { TokenSource } from './smart-token-source.ts';

/** Per-call options of {@link fetchAttachment}. */
export interface FetchAttachmentOptions {
  /** Refuse bodies larger than this (declared Content-Length or counted while streaming). */
  maxBytes: number;
  /** Overrides the endpoint's timeout: until response headers, and for each wait on the next body chunk. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The endpoint an attachment belongs to: relative URLs resolve against its base; its origin alone gets the bearer. */
export interface AttachmentSource {
  baseUrl: string;
  tokenSource?: TokenSource;
  timeoutMs: number;
  fetch?: typeof globalThis.fetch;
}

export interface AttachmentResponse {
  /** The bytes, streamed with backpressure; errors with AttachmentTooLargeError or OutboundHttpError. */
  body: Readable;
  contentType?: string;
  /** As declared by the server; the stream enforces maxBytes whatever it says. */
  contentLength?: number;
  /** The URL the bytes came from (after redirects), without query string. */
  url: string;
}

/** Redirects followed at most (the Fetch standard allows 20; storage links need one or two). */
export const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/**
 * Streams an attachment (`Attachment.url`) without holding it in memory.
 *
 * The bearer token is for the EHR's FHIR server only (RFC 6750 §5.3, SMART's "never send the
 * token elsewhere"): relative URLs and absolute URLs on the base's origin get it; URLs on any
 * other origin (pre-signed storage links that carry their own signature) are fetched without it.
 * Redirects are followed by hand (at most {@link MAX_REDIRECTS}, http/https only) so that the
 * bearer is dropped for good once a redirect leaves the origin; fetch's own redirect handling
 * would decide that for us. `data:` and other schemes are refused: inline data is the caller's
 * business, and `file:`/`ftp:` must never be reachable from an EHR's document.
 */
export async function fetchAttachment(url: string, options: FetchAttachmentOptions & AttachmentSource): Promise<AttachmentResponse> {
  const base = new URL(`${options.baseUrl.replace(/\/+$/, '')}/`);
  const fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const timeoutMs = options.timeoutMs;
  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
  const armTimer = () => {
    const t = setTimeout(() => controller.abort(new DOMException('The operation timed out', 'TimeoutError')), timeoutMs);
    return () => clearTimeout(t);
  };

  let current = checkScheme(resolve(url, base));
  const requested = current.toString();
  let bearerAllowed = options.tokenSource !== undefined && current.origin === base.origin;
  let retried401 = false;
  for (let hops = 0; ; ) {
    const clear = armTimer();
    let response: Response;
    let token: string | undefined;
    try {
      token = bearerAllowed ? await options.tokenSource?.getToken() : undefined;
      const headers = new Headers({ accept: '*/*' });
      if (token) headers.set('authorization', `Bearer ${token}`);
      response = await fetchFn(current.toString(), { method: 'GET', headers, signal, redirect: 'manual' });
    } catch (err) {
      clear();
      throw toTransportError(err, 'GET', current.toString());
    }
    clear();

    if (REDIRECT_STATUSES.has(response.status)) {
      await response.body?.cancel().catch(() => undefined);
      const location = response.headers.get('location');
      if (!location) throw new OutboundHttpError({ status: response.status, failure: 'http', method: 'GET', url: current.toString() });
      if (++hops > MAX_REDIRECTS) throw new OutboundUrlError(`Attachment ${stripQuery(requested)}: more than ${MAX_REDIRECTS} redirects`);
      current = checkScheme(resolve(location, current));
      if (current.origin !== base.origin) bearerAllowed = false;
      continue;
    }
    if (response.status === 401 && token && !retried401) {
      await response.body?.cancel().catch(() => undefined);
      options.tokenSource?.invalidate(token);
      retried401 = true;
      continue;
    }
    if (!response.ok) {
      const clearBody = armTimer();
      try {
        throw await errorFromResponse(response, 'GET', current.toString());
      } finally {
        clearBody();
      }
    }

    const contentLength = parseLength(response.headers.get('content-length'));
    if (contentLength !== undefined && contentLength > options.maxBytes) {
      await response.body?.cancel().catch(() => undefined);
      throw new AttachmentTooLargeError(current.toString(), options.maxBytes);
    }
    const contentType = response.headers.get('content-type') ?? undefined;
    return {
      body: limitedStream(response, current.toString(), options.maxBytes, armTimer, controller),
      ...(contentType ? { contentType } : {}),
      ...(contentLength !== undefined ? { contentLength } : {}),
      url: stripQuery(current.toString()),
    };
  }
}

/**
 * A Node Readable over the response body that pulls one chunk per read() (backpressure), counts
 * bytes against maxBytes, and times out only while waiting on the server (a slow consumer is not
 * a stalled server). Destroying it aborts the request.
 */
function limitedStream(response: Response, url: string, maxBytes: number, armTimer: () => () => void, controller: AbortController): Readable {
  const reader = response.body?.getReader();
  let total = 0;
  let ended = false;
  return new Readable({
    highWaterMark: 64 * 1024,
    read() {
      if (!reader) {
        ended = true;
        this.push(null);
        return;
      }
      const clear = armTimer();
      reader.read().then(
        ({ done, value }) => {
          clear();
          if (done) {
            ended = true;
            this.push(null);
            return;
          }
          total += value.byteLength;
          if (total > maxBytes) this.destroy(new AttachmentTooLargeError(url, maxBytes));
          else this.push(value);
        },
        (err: unknown) => {
          clear();
          this.destroy(toTransportError(err, 'GET', url));
        },
      );
    },
    destroy(err, callback) {
      if (!ended) {
        controller.abort();
        reader?.cancel().catch(() => undefined);
      }
      callback(err);
    },
  });
}

function resolve(url: string, against: URL): URL {
  try {
    return new URL(url, against);
  } catch {
    throw new OutboundUrlError('Attachment URL is not a valid URL');
  }
}

function checkScheme(url: URL): URL {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new OutboundUrlError(`Attachment URL scheme ${url.protocol} is not allowed (http and https only)`);
  }
  return url;
}

function parseLength(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value);
}
