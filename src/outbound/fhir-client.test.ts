import type { Bundle, OperationOutcome, OperationOutcomeIssue, Patient } from '@medplum/fhirtypes';
import { delay, http, HttpResponse } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createFhirClient } from './fhir-client.ts';
import { isNotFound, isRetryableError, OutboundHttpError, OutboundUrlError } from './outbound-errors.ts';
import type { TokenSource } from './smart-token-source.ts';

const BASE = 'https://ehr.test/fhir/R4';
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledFrame: 'error' }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

/** Issues `tok-1`, `tok-2`, ... and records invalidations (the real one is tested on its own). */
function countingTokens(): TokenSource & { issued: number; invalidated: string[] } {
  let current: string | undefined;
  const src = {
    issued: 0,
    invalidated: [] as string[],
    async getToken() {
      current ??= `tok-${++src.issued}`;
      return current;
    },
    invalidate(token: string) {
      src.invalidated.push(token);
      if (token === current) current = undefined;
    },
  };
  return src;
}

const patient: Patient = { resourceType: 'Patient', id: 'p1', name: [{ family: 'Test' }] };
const outcome = (code: OperationOutcomeIssue['code'], text: string): OperationOutcome => ({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: text }] });
const searchset = (ids: string[], next?: string): Bundle => ({
  resourceType: 'Bundle',
  type: 'searchset',
  link: next ? [{ relation: 'next', url: next }] : [],
  entry: ids.map((id) => ({ resource: { resourceType: 'Patient', id }, search: { mode: 'match' } })),
});

describe('createFhirClient', () => {
  it('reads with the bearer from the token source', async () => {
    const auth: (string | null)[] = [];
    server.use(
      http.get(`${BASE}/Patient/p1`, ({ request }) => {
        auth.push(request.headers.get('authorization'));
        return HttpResponse.json(patient, { headers: { 'content-type': 'application/fhir+json' } });
      }),
    );
    const tokens = countingTokens();
    const client = createFhirClient({ baseUrl: BASE, tokenSource: tokens, timeoutMs: 2000 });
    expect(await client.read('Patient', 'p1')).toEqual(patient);
    expect(await client.read('Patient', 'p1')).toEqual(patient);
    expect(auth).toEqual(['Bearer tok-1', 'Bearer tok-1']);
  });

  it('sends no Authorization without a token source (sandbox)', async () => {
    let auth: string | null = 'unset';
    server.use(http.get(`${BASE}/Patient/p1`, ({ request }) => ((auth = request.headers.get('authorization')), HttpResponse.json(patient))));
    await createFhirClient({ baseUrl: BASE, timeoutMs: 2000 }).read('Patient', 'p1');
    expect(auth).toBeNull();
  });

  it('on 401 invalidates the token and retries once with a fresh one', async () => {
    const auth: (string | null)[] = [];
    server.use(
      http.get(`${BASE}/Patient/p1`, ({ request }) => {
        auth.push(request.headers.get('authorization'));
        return request.headers.get('authorization') === 'Bearer tok-1' ? new HttpResponse(null, { status: 401 }) : HttpResponse.json(patient);
      }),
    );
    const tokens = countingTokens();
    const client = createFhirClient({ baseUrl: BASE, tokenSource: tokens, timeoutMs: 2000 });
    expect(await client.read('Patient', 'p1')).toEqual(patient);
    expect(auth).toEqual(['Bearer tok-1', 'Bearer tok-2']);
    expect(tokens.invalidated).toEqual(['tok-1']);
  });

  it('a second 401 is an OutboundHttpError 401 that names neither token', async () => {
    server.use(http.get(`${BASE}/Patient/p1`, () => HttpResponse.json(outcome('login', 'Unauthorized'), { status: 401 })));
    const logged = vi.spyOn(console, 'log');
    const errored = vi.spyOn(console, 'error');
    const tokens = countingTokens();
    const err = await createFhirClient({ baseUrl: BASE, tokenSource: tokens, timeoutMs: 2000 }).read('Patient', 'p1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundHttpError);
    // Permanent: the one refresh already happened; retrying later will not change the answer.
    expect(err).toMatchObject({ status: 401, failure: 'http', url: `${BASE}/Patient/p1`, outcome: outcome('login', 'Unauthorized'), retryable: false, failureClass: 'permanent' });
    expect((err as Error).message).toBe(`GET ${BASE}/Patient/p1 HTTP 401`);
    expect(tokens.issued).toBe(2);
    expect(tokens.invalidated).toEqual(['tok-1']);
    const everything = JSON.stringify({ err, message: (err as Error).message, stack: (err as Error).stack, logs: [...logged.mock.calls, ...errored.mock.calls] });
    expect(everything).not.toMatch(/tok-\d/);
    logged.mockRestore();
    errored.mockRestore();
  });

  it.each([500, 503, 429])('%i is retryable and keeps the OperationOutcome', async (status) => {
    server.use(http.get(`${BASE}/Patient/p1`, () => HttpResponse.json(outcome('transient', 'down for maintenance'), { status })));
    const err = await createFhirClient({ baseUrl: BASE, timeoutMs: 2000 }).read('Patient', 'p1').catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'OutboundHttpError', status, retryable: true, outcome: outcome('transient', 'down for maintenance') });
    expect(isRetryableError(err)).toBe(true);
    expect(isNotFound(err)).toBe(false);
  });

  it('a 429 or 503 with Retry-After (seconds or HTTP-date) carries the time of the next attempt', async () => {
    const date = new Date(Math.ceil(Date.now() / 1000) * 1000 + 60_000);
    server.use(
      http.get(`${BASE}/Patient/p1`, () => HttpResponse.json(outcome('throttled', 'slow down'), { status: 429, headers: { 'retry-after': '2' } })),
      http.get(`${BASE}/Patient/p2`, () => HttpResponse.json(outcome('transient', 'maintenance'), { status: 503, headers: { 'retry-after': date.toUTCString() } })),
    );
    const client = createFhirClient({ baseUrl: BASE, timeoutMs: 2000 });
    const before = Date.now();
    const throttled = (await client.read('Patient', 'p1').catch((e: unknown) => e)) as OutboundHttpError;
    expect(throttled).toMatchObject({ status: 429, retryable: true });
    expect(throttled.retryAt!.getTime()).toBeGreaterThanOrEqual(before + 2_000);
    expect(throttled.retryAt!.getTime()).toBeLessThanOrEqual(Date.now() + 2_000);
    expect(await client.read('Patient', 'p2').catch((e: unknown) => e)).toMatchObject({ status: 503, retryable: true, retryAt: date });
  });

  it.each([403, 405, 410, 412, 422])('%i is permanent', async (status) => {
    server.use(http.post(`${BASE}/DocumentReference`, () => HttpResponse.json(outcome('forbidden', 'no'), { status })));
    const err = await createFhirClient({ baseUrl: BASE, timeoutMs: 2000 })
      .createIfNoneExist({ resourceType: 'DocumentReference', status: 'current', content: [] } as never, 'identifier=a|b')
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'OutboundHttpError', status, method: 'POST', retryable: false, failureClass: 'permanent' });
  });

  it('404 is distinguishable and not retryable; 400 is not retryable; the query string is not kept', async () => {
    server.use(
      http.get(`${BASE}/Patient/gone`, () => HttpResponse.json(outcome('not-found', 'Not found'), { status: 404 })),
      http.get(`${BASE}/Patient`, () => HttpResponse.json(outcome('invalid', 'bad param'), { status: 400 })),
    );
    const client = createFhirClient({ baseUrl: BASE, timeoutMs: 2000 });
    const missing = await client.read('Patient', 'gone').catch((e: unknown) => e);
    expect(isNotFound(missing)).toBe(true);
    expect(missing).toMatchObject({ status: 404, retryable: false, outcome: outcome('not-found', 'Not found') });
    const bad = await client.search('Patient', { identifier: 'urn:mrn|12345' }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ status: 400, retryable: false, url: `${BASE}/Patient` });
    expect((bad as Error).message).toBe(`GET ${BASE}/Patient HTTP 400`);
  });

  it('times out every call as a retryable error', async () => {
    server.use(http.get(`${BASE}/Patient/p1`, async () => (await delay(2000), HttpResponse.json(patient))));
    const err = await createFhirClient({ baseUrl: BASE, timeoutMs: 100 }).read('Patient', 'p1').catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'OutboundHttpError', status: 0, failure: 'timeout', retryable: true });
    expect((err as Error).message).toBe(`GET ${BASE}/Patient/p1 timed out`);
  });

  it('maps a refused connection to a retryable network error', async () => {
    const refused = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
    const client = createFhirClient({ baseUrl: BASE, timeoutMs: 2000 }, { fetch: async () => Promise.reject(refused) });
    const err = await client.read('Patient', 'p1').catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'OutboundHttpError', status: 0, failure: 'network', retryable: true });
  });

  it('search follows next links verbatim across 3 pages', async () => {
    const seen: string[] = [];
    server.use(
      http.get(`${BASE}/Patient`, ({ request }) => {
        seen.push(new URL(request.url).search);
        return HttpResponse.json(searchset(['a', 'b'], `${BASE}?_getpages=xyz&_getpagesoffset=2`));
      }),
      http.get(BASE, ({ request }) => {
        const url = new URL(request.url);
        seen.push(url.search);
        return url.searchParams.get('_getpagesoffset') === '2' ? HttpResponse.json(searchset(['c', 'd'], `${BASE}?_getpages=xyz&_getpagesoffset=4`)) : HttpResponse.json(searchset(['e']));
      }),
    );
    const client = createFhirClient({ baseUrl: BASE, timeoutMs: 2000 });
    const found = await client.search<Patient>('Patient', { identifier: 'urn:mrn|1', _count: 2 });
    expect(found.map((p) => p.id)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(seen).toEqual(['?identifier=urn%3Amrn%7C1&_count=2', '?_getpages=xyz&_getpagesoffset=2', '?_getpages=xyz&_getpagesoffset=4']);
    await expect(client.search('Patient', {}, { maxPages: 2 })).rejects.toThrow('Search Patient has more than 2 pages');
  });

  it('refuses a next link on another origin without calling it', async () => {
    server.use(http.get(`${BASE}/Patient`, () => HttpResponse.json(searchset(['a'], 'https://elsewhere.test/fhir?page=2'))));
    await expect(createFhirClient({ baseUrl: BASE, timeoutMs: 2000 }).search('Patient')).rejects.toBeInstanceOf(OutboundUrlError);
  });

  it('searchOne returns the first match or undefined', async () => {
    server.use(http.get(`${BASE}/Patient`, ({ request }) => HttpResponse.json(searchset(new URL(request.url).searchParams.get('name') === 'none' ? [] : ['x', 'y']))));
    const client = createFhirClient({ baseUrl: BASE, timeoutMs: 2000 });
    expect((await client.searchOne('Patient', { name: 'some' }))?.id).toBe('x');
    expect(await client.searchOne('Patient', { name: 'none' })).toBeUndefined();
  });

  it('readReference resolves Type/id and same-origin absolute URLs, and refuses other origins', async () => {
    const auth: (string | null)[] = [];
    server.use(http.get(`${BASE}/Patient/p1`, ({ request }) => (auth.push(request.headers.get('authorization')), HttpResponse.json(patient))));
    const client = createFhirClient({ baseUrl: `${BASE}/`, tokenSource: countingTokens(), timeoutMs: 2000 });
    expect(await client.readReference('Patient/p1')).toEqual(patient);
    expect(await client.readReference(`${BASE}/Patient/p1`)).toEqual(patient);
    expect(auth).toEqual(['Bearer tok-1', 'Bearer tok-1']);
    await expect(client.readReference('https://other.test/fhir/R4/Patient/p1')).rejects.toThrow("Refusing to read https://other.test/fhir/R4/Patient/p1: not on the FHIR server's origin https://ehr.test");
  });

  it('createIfNoneExist posts with If-None-Exist and returns the server resource', async () => {
    let seen: { ifNoneExist: string | null; body: unknown } | undefined;
    server.use(
      http.post(`${BASE}/DocumentReference`, async ({ request }) => {
        seen = { ifNoneExist: request.headers.get('if-none-exist'), body: await request.json() };
        return HttpResponse.json({ ...(seen.body as object), id: 'dr1' }, { status: 201 });
      }),
    );
    const doc = { resourceType: 'DocumentReference' as const, status: 'current' as const, identifier: [{ system: 'urn:x', value: '1' }], content: [{ attachment: { url: 'Binary/1' } }] };
    const created = await createFhirClient({ baseUrl: BASE, timeoutMs: 2000 }).createIfNoneExist(doc, 'identifier=urn:x|1');
    expect(created).toEqual({ ...doc, id: 'dr1' });
    expect(seen).toEqual({ ifNoneExist: 'identifier=urn:x|1', body: doc });
  });
});
