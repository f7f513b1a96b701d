import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { abandon, attachmentBody, discard, getAttachment, isDecodable } from './attachment-http.ts';
import { errorFromResponse } from './fhir-http.ts';
import { AttachmentTooLargeError, type OutboundError, OutboundHttpError, OutboundUrlError, stripQuery, toTransportError } from './outbound-errors.ts';
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
 * Streams an attachment (`Attachment.url`) without holding it in memory, over `node:http`
 * (attachment-http.ts: Buffers from the socket to the caller, connections kept alive).
 *
 * The bearer token is for the EHR's FHIR server only (RFC 6750 §5.3, SMART's "never send the
 * token elsewhere"): relative URLs and absolute URLs on the base's origin get it; URLs on any
 * other origin (pre-signed storage links that carry their own signature) are fetched without it.
 * Redirects are followed by hand (at most {@link MAX_REDIRECTS}, http/https only) so that the
 * bearer is dropped for good once a redirect leaves the origin. `data:` and other schemes are refused: inline data is the caller's
 * business, and `file:`/`ftp:` must never be reachable from an EHR's document.
 */
export async function fetchAttachment(url: string, options: FetchAttachmentOptions & AttachmentSource): Promise<AttachmentResponse> {
  const base = new URL(`${options.baseUrl.replace(/\/+$/, '')}/`);
  const timeoutMs = options.timeoutMs;

  let current = checkScheme(resolve(url, base));
  const requested = current.toString();
  let bearerAllowed = options.tokenSource !== undefined && current.origin === base.origin;
  let retried401 = false;
  for (let hops = 0; ; ) {
    let token: string | undefined;
    try {
      token = bearerAllowed ? await options.tokenSource?.getToken() : undefined;
    } catch (err) {
      throw toTransportError(err, 'GET', current.toString());
    }
    // identity: the bytes hashed and stored are the attachment's own, not a compressed form of them.
    const headers: Record<string, string> = { accept: '*/*', 'accept-encoding': 'identity' };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await getAttachment(current, headers, timeoutMs, options.signal);
    const status = res.statusCode ?? 0;

    if (REDIRECT_STATUSES.has(status)) {
      discard(res);
      const location = res.headers.location;
      if (!location) throw new OutboundHttpError({ status, failure: 'http', method: 'GET', url: current.toString() });
      if (++hops > MAX_REDIRECTS) throw new OutboundUrlError(`Attachment ${stripQuery(requested)}: more than ${MAX_REDIRECTS} redirects`);
      current = checkScheme(resolve(location, current));
      if (current.origin !== base.origin) bearerAllowed = false;
      continue;
    }
    if (status === 401 && token && !retried401) {
      discard(res);
      options.tokenSource?.invalidate(token);
      retried401 = true;
      continue;
    }
    if (status < 200 || status >= 300) throw await errorOf(res, current.toString(), timeoutMs);

    const contentLength = parseLength(res.headers['content-length']);
    if (contentLength !== undefined && contentLength > options.maxBytes) {
      abandon(res);
      throw new AttachmentTooLargeError(current.toString(), options.maxBytes);
    }
    const coding = (res.headers['content-encoding'] ?? '').trim().toLowerCase();
    if (!isDecodable(coding)) {
      abandon(res);
      throw new OutboundUrlError(`Attachment ${stripQuery(current.toString())}: content coding ${coding.slice(0, 40)} is not supported`);
    }
    const contentType = res.headers['content-type'];
    return {
      body: attachmentBody(res, current.toString(), options.maxBytes, timeoutMs, options.signal),
      ...(contentType ? { contentType } : {}),
      ...(contentLength !== undefined ? { contentLength } : {}),
      url: stripQuery(current.toString()),
    };
  }
}

/** A non-2xx response as an OutboundHttpError (its OperationOutcome kept), its body read within the timeout. */
async function errorOf(res: IncomingMessage, url: string, timeoutMs: number): Promise<OutboundError> {
  const headers = new Headers();
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
  const status = res.statusCode ?? 0;
  if (status < 200 || status > 599) {
    abandon(res);
    return new OutboundHttpError({ status, failure: 'http', method: 'GET', url });
  }
  const body = attachmentBody(res, url, 1_000_000, timeoutMs);
  try {
    return await errorFromResponse(new Response(Readable.toWeb(body) as ReadableStream<Uint8Array>, { status, headers }), 'GET', url);
  } catch (err) {
    return toTransportError(err, 'GET', url);
  } finally {
    body.destroy();
  }
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

function parseLength(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value);
}
