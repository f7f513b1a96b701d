import { decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, type CryptoKey, type JWK } from 'jose';
import { http, HttpResponse } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OutboundAuthError } from './outbound-errors.ts';
import { createSmartTokenSource, type SmartAlg } from './smart-token-source.ts';

const TOKEN_URL = 'https://ehr.test/auth/token';
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledFrame: 'error' }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

interface TokenCall {
  form: URLSearchParams;
  contentType: string | null;
}

/** A token endpoint that records every POST and answers with `tok-<n>`. */
function tokenEndpoint(answer?: (n: number) => Response | undefined) {
  const calls: TokenCall[] = [];
  server.use(
    http.post(TOKEN_URL, async ({ request }) => {
      calls.push({ form: new URLSearchParams(await request.text()), contentType: request.headers.get('content-type') });
      const custom = answer?.(calls.length);
      return custom ?? HttpResponse.json({ access_token: `tok-${calls.length}`, token_type: 'Bearer', expires_in: 300, scope: 'system/DocumentReference.rs' });
    }),
  );
  return calls;
}

async function keys(alg: SmartAlg): Promise<{ privateJwk: JWK; publicKey: CryptoKey }> {
  const pair = await generateKeyPair(alg, { extractable: true });
  return { privateJwk: { ...(await exportJWK(pair.privateKey)), kid: `kid-${alg}`, alg }, publicKey: pair.publicKey };
}

function source(privateJwk: JWK, alg: SmartAlg, now: () => number = Date.now) {
  return createSmartTokenSource({ tokenUrl: TOKEN_URL, clientId: 'so-service', scope: 'system/DocumentReference.rs system/Consent.r', privateKey: privateJwk, alg, now, timeoutMs: 2000 });
}

describe('createSmartTokenSource', () => {
  it('tells what each token was granted: the response\'s scope, or the requested one when the response names none (RFC 6749 §5.1)', async () => {
    const { privateJwk } = await keys('ES384');
    tokenEndpoint((n) => (n === 1 ? undefined : HttpResponse.json({ access_token: 'tok-2', token_type: 'Bearer', expires_in: 1 })));
    const granted: (readonly string[])[] = [];
    const tokens = createSmartTokenSource({ tokenUrl: TOKEN_URL, clientId: 'so-service', scope: 'system/DocumentReference.rs system/Consent.r', privateKey: privateJwk, alg: 'ES384', timeoutMs: 2000, onGranted: (s) => granted.push(s) });
    await tokens.getToken();
    tokens.invalidate('tok-1');
    await tokens.getToken();
    expect(granted).toEqual([['system/DocumentReference.rs'], ['system/DocumentReference.rs', 'system/Consent.r']]);
  });

  it('caches the token and reuses it', async () => {
    const calls = tokenEndpoint();
    const { privateJwk } = await keys('ES384');
    const tokens = source(privateJwk, 'ES384');
    expect(await tokens.getToken()).toBe('tok-1');
    expect(await tokens.getToken()).toBe('tok-1');
    expect(calls.length).toBe(1);
  });

  it('refreshes single-flight: 100 parallel getToken() calls make exactly 1 token request', async () => {
    const calls = tokenEndpoint();
    const { privateJwk } = await keys('ES384');
    const tokens = source(privateJwk, 'ES384');
    const results = await Promise.all(Array.from({ length: 100 }, () => tokens.getToken()));
    expect(new Set(results)).toEqual(new Set(['tok-1']));
    expect(calls.length).toBe(1);
  });

  it('refreshes once the token is within the skew of expiry', async () => {
    const calls = tokenEndpoint();
    const { privateJwk } = await keys('ES384');
    let clock = 1_800_000_000_000;
    const tokens = source(privateJwk, 'ES384', () => clock);
    expect(await tokens.getToken()).toBe('tok-1');
    clock += 269_000; // expires_in 300 - skew 30 = 270 s
    expect(await tokens.getToken()).toBe('tok-1');
    clock += 1_000;
    expect(await tokens.getToken()).toBe('tok-2');
    expect(calls.length).toBe(2);
  });

  it('invalidate() drops only the cached token it names', async () => {
    const calls = tokenEndpoint();
    const { privateJwk } = await keys('ES384');
    const tokens = source(privateJwk, 'ES384');
    await tokens.getToken();
    tokens.invalidate('some-older-token');
    expect(await tokens.getToken()).toBe('tok-1');
    tokens.invalidate('tok-1');
    expect(await tokens.getToken()).toBe('tok-2');
    expect(calls.length).toBe(2);
  });

  it.each(['ES384', 'RS384'] as const)('posts a form with a %s client assertion whose claims and signature check out', async (alg) => {
    const calls = tokenEndpoint();
    const { privateJwk, publicKey } = await keys(alg);
    const tokens = source(privateJwk, alg);
    await tokens.getToken();
    tokens.invalidate('tok-1');
    await tokens.getToken();
    expect(calls.length).toBe(2);
    const jtis = new Set<string>();
    for (const { form, contentType } of calls) {
      expect(contentType).toBe('application/x-www-form-urlencoded');
      expect(form.get('grant_type')).toBe('client_credentials');
      expect(form.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      expect(form.get('scope')).toBe('system/DocumentReference.rs system/Consent.r');
      const assertion = form.get('client_assertion') ?? '';
      expect(decodeProtectedHeader(assertion)).toEqual({ alg, kid: `kid-${alg}`, typ: 'JWT' });
      const { payload } = await jwtVerify(assertion, publicKey, { algorithms: [alg], issuer: 'so-service', subject: 'so-service', audience: TOKEN_URL });
      const nowS = Math.floor(Date.now() / 1000);
      expect(payload.exp).toBeGreaterThan(nowS);
      expect(payload.exp! - nowS).toBeLessThanOrEqual(300);
      expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
      jtis.add(payload.jti!);
    }
    expect(jtis.size).toBe(2);
  });

  it('does not cache a failed refresh and keeps status and OAuth error, never the assertion', async () => {
    const calls = tokenEndpoint((n) => (n === 1 ? HttpResponse.json({ error: 'temporarily_unavailable' }, { status: 503 }) : undefined));
    const { privateJwk } = await keys('ES384');
    const tokens = source(privateJwk, 'ES384');
    const err = await tokens.getToken().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundAuthError);
    expect(err).toMatchObject({ status: 503, oauthError: 'temporarily_unavailable', retryable: true, tokenUrl: TOKEN_URL });
    expect((err as Error).message).toBe(`Token request to ${TOKEN_URL} failed: HTTP 503 temporarily_unavailable`);
    expect((err as Error).message).not.toContain(calls[0]!.form.get('client_assertion')!.slice(0, 20));
    expect(await tokens.getToken()).toBe('tok-2');
  });

  it('reports a refused client as not retryable, keeping the error_description (RFC 6749 §5.2)', async () => {
    tokenEndpoint(() => HttpResponse.json({ error: 'invalid_client', error_description: 'Invalid client assertion audience' }, { status: 401 }));
    const { privateJwk } = await keys('ES384');
    const err = await source(privateJwk, 'ES384').getToken().catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'OutboundAuthError', status: 401, oauthError: 'invalid_client', oauthErrorDescription: 'Invalid client assertion audience', retryable: false });
    expect((err as Error).message).toBe(`Token request to ${TOKEN_URL} failed: HTTP 401 invalid_client: Invalid client assertion audience`);
  });

  it('an error_description that quotes our client assertion back keeps none of it', async () => {
    const calls = tokenEndpoint(() => undefined);
    server.use(
      http.post(TOKEN_URL, async ({ request }) => {
        const assertion = new URLSearchParams(await request.text()).get('client_assertion') as string;
        calls.push({ form: new URLSearchParams({ client_assertion: assertion }), contentType: null });
        return HttpResponse.json({ error: 'invalid_client', error_description: `assertion ${assertion} rejected; header ${assertion.split('.')[0]}` }, { status: 400 });
      }),
    );
    const { privateJwk } = await keys('ES384');
    const err = (await source(privateJwk, 'ES384').getToken().catch((e: unknown) => e)) as OutboundAuthError;
    expect(err.oauthErrorDescription).toBe('assertion [redacted] rejected; header [redacted]');
    const sent = calls.at(-1)?.form.get('client_assertion') as string;
    for (const part of sent.split('.')) expect(`${err.message} ${err.oauthErrorDescription}`).not.toContain(part);
  });

  it('a 429 with Retry-After says when to try again', async () => {
    tokenEndpoint(() => HttpResponse.json({ error: 'slow_down' }, { status: 429, headers: { 'retry-after': '7' } }));
    const { privateJwk } = await keys('ES384');
    const clock = 1_800_000_000_000;
    const err = await source(privateJwk, 'ES384', () => clock).getToken().catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 429, retryable: true, retryAt: new Date(clock + 7_000) });
  });

  it.each(['https://ehr.test/auth/token', 'https://ehr.test/auth/token/', 'https://ehr.test'])('signs `aud` exactly as the tokenUrl is written: %s', async (tokenUrl) => {
    const { privateJwk, publicKey } = await keys('ES384');
    const seen: string[] = [];
    server.use(
      http.post(tokenUrl, async ({ request }) => {
        seen.push(new URLSearchParams(await request.text()).get('client_assertion') as string);
        return HttpResponse.json({ access_token: 'tok', token_type: 'Bearer' });
      }),
    );
    await createSmartTokenSource({ tokenUrl, clientId: 'so-service', scope: 'system/Patient.r', privateKey: privateJwk, alg: 'ES384', timeoutMs: 2000 }).getToken();
    const { payload } = await jwtVerify(seen[0] as string, publicKey);
    expect(payload.aud).toBe(tokenUrl);
  });

  it('refuses a response without an access token', async () => {
    tokenEndpoint(() => HttpResponse.json({ token_type: 'Bearer' }));
    const { privateJwk } = await keys('ES384');
    const err = await source(privateJwk, 'ES384').getToken().catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'OutboundAuthError', status: 200, oauthError: 'invalid_token_response', retryable: false });
  });

  it('turns a network failure into a retryable OutboundAuthError', async () => {
    server.use(http.post(TOKEN_URL, () => HttpResponse.error()));
    const { privateJwk } = await keys('ES384');
    const err = await source(privateJwk, 'ES384').getToken().catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'OutboundAuthError', status: 0, retryable: true });
    expect((err as Error).message).toBe(`Token request to ${TOKEN_URL} failed: connection failed`);
  });
});
