import { text } from 'node:stream/consumers';
import { gzipSync } from 'node:zlib';
import { http, HttpResponse } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFhirClient } from './fhir-client.ts';
import { AttachmentTooLargeError, isNotFound, OutboundUrlError } from './outbound-errors.ts';
import type { TokenSource } from './smart-token-source.ts';

const BASE = 'https://ehr.test/fhir/R4';
const STORAGE = 'https://storage.test';
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledFrame: 'error' }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const tokens: TokenSource = { getToken: async () => 'tok-secret', invalidate: () => undefined };
const client = () => createFhirClient({ baseUrl: BASE, tokenSource: tokens, timeoutMs: 2000 });

/** Records the Authorization header each URL was called with (`null` when absent). */
function recordAuth() {
  const seen: Record<string, string | null> = {};
  const note = (request: Request) => {
    const u = new URL(request.url);
    seen[u.origin + u.pathname] = request.headers.get('authorization');
  };
  return { seen, note };
}

const pdf = (body = '%PDF-1.4 hello') => new HttpResponse(body, { headers: { 'content-type': 'application/pdf', 'content-length': String(Buffer.byteLength(body)) } });

describe('fetchAttachment', () => {
  it('sends the bearer to the FHIR origin (relative and absolute URLs) and streams the body', async () => {
    const { seen, note } = recordAuth();
    server.use(http.get(`${BASE}/Binary/:id`, ({ request }) => (note(request), pdf())));
    const rel = await client().fetchAttachment('Binary/1', { maxBytes: 1000 });
    expect(rel).toMatchObject({ contentType: 'application/pdf', contentLength: 14, url: `${BASE}/Binary/1` });
    expect(await text(rel.body)).toBe('%PDF-1.4 hello');
    await text((await client().fetchAttachment(`${BASE}/Binary/2`, { maxBytes: 1000 })).body);
    expect(seen).toEqual({ [`${BASE}/Binary/1`]: 'Bearer tok-secret', [`${BASE}/Binary/2`]: 'Bearer tok-secret' });
  });

  it('fetches a URL on another origin WITHOUT the Authorization header', async () => {
    const { seen, note } = recordAuth();
    server.use(http.get(`${STORAGE}/bucket/doc.pdf`, ({ request }) => (note(request), pdf())));
    const res = await client().fetchAttachment(`${STORAGE}/bucket/doc.pdf?X-Signature=abc`, { maxBytes: 1000 });
    expect(await text(res.body)).toBe('%PDF-1.4 hello');
    expect(res.url).toBe(`${STORAGE}/bucket/doc.pdf`);
    expect(seen).toEqual({ [`${STORAGE}/bucket/doc.pdf`]: null });
  });

  it('drops the bearer for good when a redirect leaves the origin', async () => {
    const { seen, note } = recordAuth();
    server.use(
      http.get(`${BASE}/Binary/r`, ({ request }) => (note(request), new HttpResponse(null, { status: 302, headers: { location: `${STORAGE}/hop` } }))),
      http.get(`${STORAGE}/hop`, ({ request }) => (note(request), new HttpResponse(null, { status: 307, headers: { location: `${BASE}/Binary/back` } }))),
      http.get(`${BASE}/Binary/back`, ({ request }) => (note(request), pdf('bytes'))),
    );
    const res = await client().fetchAttachment('Binary/r', { maxBytes: 1000 });
    expect(await text(res.body)).toBe('bytes');
    expect(res.url).toBe(`${BASE}/Binary/back`);
    expect(seen).toEqual({ [`${BASE}/Binary/r`]: 'Bearer tok-secret', [`${STORAGE}/hop`]: null, [`${BASE}/Binary/back`]: null });
  });

  it('keeps the bearer on a same-origin redirect', async () => {
    const { seen, note } = recordAuth();
    server.use(
      http.get(`${BASE}/Binary/old`, ({ request }) => (note(request), new HttpResponse(null, { status: 301, headers: { location: '/fhir/R4/Binary/new' } }))),
      http.get(`${BASE}/Binary/new`, ({ request }) => (note(request), pdf())),
    );
    await text((await client().fetchAttachment('Binary/old', { maxBytes: 1000 })).body);
    expect(seen).toEqual({ [`${BASE}/Binary/old`]: 'Bearer tok-secret', [`${BASE}/Binary/new`]: 'Bearer tok-secret' });
  });

  it.each(['ftp://ehr.test/doc.pdf', 'data:application/pdf;base64,JVBERi0=', 'file:///etc/passwd', 'javascript:alert(1)'])('refuses %s without a request', async (url) => {
    const err = await client().fetchAttachment(url, { maxBytes: 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundUrlError);
    expect((err as Error).message).toMatch(/^Attachment URL scheme [a-z]+: is not allowed \(http and https only\)$/);
  });

  it('refuses a redirect to a non-http scheme and more than 5 redirects', async () => {
    let hops = 0;
    server.use(
      http.get(`${BASE}/Binary/ftp`, () => new HttpResponse(null, { status: 302, headers: { location: 'ftp://storage.test/x' } })),
      http.get(`${BASE}/Binary/loop`, () => (hops++, new HttpResponse(null, { status: 302, headers: { location: `${BASE}/Binary/loop` } }))),
    );
    await expect(client().fetchAttachment('Binary/ftp', { maxBytes: 1000 })).rejects.toThrow('Attachment URL scheme ftp: is not allowed');
    await expect(client().fetchAttachment('Binary/loop', { maxBytes: 1000 })).rejects.toThrow(`Attachment ${BASE}/Binary/loop: more than 5 redirects`);
    expect(hops).toBe(6);
  });

  it('refuses a body over maxBytes by Content-Length, before reading it', async () => {
    server.use(http.get(`${BASE}/Binary/big`, () => pdf('x'.repeat(2000))));
    const err = await client().fetchAttachment('Binary/big', { maxBytes: 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AttachmentTooLargeError);
    expect(err).toMatchObject({ maxBytes: 1000, retryable: false, message: `Attachment ${BASE}/Binary/big is larger than 1000 bytes` });
  });

  it('refuses a body over maxBytes counted while streaming (no Content-Length)', async () => {
    server.use(
      http.get(`${STORAGE}/chunked`, () => {
        const chunk = new Uint8Array(400);
        let sent = 0;
        const stream = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent++ < 5) controller.enqueue(chunk);
            else controller.close();
          },
        });
        return new HttpResponse(stream, { headers: { 'content-type': 'image/png' } });
      }),
    );
    const res = await client().fetchAttachment(`${STORAGE}/chunked`, { maxBytes: 1000 });
    expect(res.contentLength).toBeUndefined();
    await expect(text(res.body)).rejects.toBeInstanceOf(AttachmentTooLargeError);
  });

  it('keeps upstream errors typed: 404 is not found, 503 retryable', async () => {
    server.use(
      http.get(`${BASE}/Binary/gone`, () => HttpResponse.json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] }, { status: 404 })),
      http.get(`${STORAGE}/down`, () => new HttpResponse('busy', { status: 503 })),
    );
    const gone = await client().fetchAttachment('Binary/gone', { maxBytes: 1000 }).catch((e: unknown) => e);
    expect(isNotFound(gone)).toBe(true);
    expect(gone).toMatchObject({ outcome: { resourceType: 'OperationOutcome' } });
    const down = await client().fetchAttachment(`${STORAGE}/down?sig=1`, { maxBytes: 1000 }).catch((e: unknown) => e);
    expect(down).toMatchObject({ status: 503, retryable: true, url: `${STORAGE}/down`, message: `GET ${STORAGE}/down HTTP 503` });
  });

  it('retries a same-origin 401 once with a fresh token', async () => {
    let issued = 0;
    const rotating: TokenSource = { getToken: async () => `tok-${issued || ++issued}`, invalidate: () => void (issued = issued + 1) };
    const auth: (string | null)[] = [];
    server.use(http.get(`${BASE}/Binary/1`, ({ request }) => (auth.push(request.headers.get('authorization')), auth.length === 1 ? new HttpResponse(null, { status: 401 }) : pdf())));
    const res = await createFhirClient({ baseUrl: BASE, tokenSource: rotating, timeoutMs: 2000 }).fetchAttachment('Binary/1', { maxBytes: 1000 });
    expect(await text(res.body)).toBe('%PDF-1.4 hello');
    expect(auth).toEqual(['Bearer tok-1', 'Bearer tok-2']);
  });

  it('times out a body the server stops sending, with a typed timeout', async () => {
    server.use(
      http.get(`${STORAGE}/stalls`, () => {
        let sent = false;
        const stream = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (!sent) controller.enqueue(new TextEncoder().encode('%PDF-1.4 first bytes'));
            sent = true; // then nothing more, and no end
          },
        });
        return new HttpResponse(stream, { headers: { 'content-type': 'application/pdf' } });
      }),
    );
    const res = await client().fetchAttachment(`${STORAGE}/stalls`, { maxBytes: 1000, timeoutMs: 200 });
    const err = await text(res.body).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 0, failure: 'timeout', retryable: true, url: `${STORAGE}/stalls` });
  });

  it('asks for the bytes as they are, and decodes a gzip body sent anyway (hash and size are of the attachment)', async () => {
    let asked: string | null = null;
    const body = '%PDF-1.4 '.padEnd(3000, 'z');
    server.use(
      http.get(`${STORAGE}/gz`, ({ request }) => {
        asked = request.headers.get('accept-encoding');
        return new HttpResponse(gzipSync(body), { headers: { 'content-type': 'application/pdf', 'content-encoding': 'gzip' } });
      }),
      http.get(`${STORAGE}/zstd`, () => new HttpResponse('x', { headers: { 'content-encoding': 'zstd-unknown' } })),
    );
    expect(await text((await client().fetchAttachment(`${STORAGE}/gz`, { maxBytes: 5000 })).body)).toBe(body);
    expect(asked).toBe('identity');
    await expect(client().fetchAttachment(`${STORAGE}/gz`, { maxBytes: 2000 }).then((r) => text(r.body))).rejects.toBeInstanceOf(AttachmentTooLargeError);
    await expect(client().fetchAttachment(`${STORAGE}/zstd`, { maxBytes: 5000 })).rejects.toThrow(`Attachment ${STORAGE}/zstd: content coding zstd-unknown is not supported`);
  });
});
