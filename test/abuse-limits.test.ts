/**
 * Abuse limits over HTTP, against the real service with small limits and long
 * windows (so no bucket refills while a test runs): per-client and per-address limits of the
 * token endpoint (429 `slow_down`) and of the API (429 OperationOutcome `throttled`), both
 * with Retry-After; the lockout after repeated bad client assertions; X-Forwarded-For ignored
 * unless TRUST_PROXY says whom to believe; security headers and the comparison page's CSP.
 * Other addresses are 127.0.0.x loopback addresses (Linux routes all of 127/8 to lo).
 */
import { createHash } from 'node:crypto';
import type { OperationOutcome } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMPARISON_PAGE_CSP } from '../src/retrieval/comparison.ts';
import { clientIdOf } from './support/example-network.ts';
import { rawRequest, rawTokenRequest } from './support/raw-http.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { captureLogs } from './support/log-capture.ts';
import { startTestService, type TestService } from './support/service.ts';
import { CLIENT_ASSERTION_TYPE, clientCredentialsForm, generateClientKey, getAccessToken, loadExamplePrivateJwk, postTokenRequest, signClientAssertion } from './support/tokens.ts';

const LOCKED = /^client authentication for this client_id is temporarily locked after repeated failed client assertions; retry after \d+ s$/;

describe('token endpoint: rate limits and lockout', () => {
  let service: TestService;
  const { log, lines } = captureLogs('warn');

  beforeAll(async () => {
    service = await startTestService(
      {
        TOKEN_RATE_LIMIT_PER_CLIENT: '6',
        TOKEN_RATE_LIMIT_PER_IP: '40',
        TOKEN_RATE_LIMIT_WINDOW_SECONDS: '3600',
        TOKEN_LOCKOUT_FAILURES: '3',
        TOKEN_LOCKOUT_WINDOW_SECONDS: '3600',
        TOKEN_LOCKOUT_SECONDS: '2',
      },
      log,
    );
  });
  afterAll(async () => service?.stop());

  /** A client assertion for `clientId` signed with a key that is not registered for it (the registered kid). */
  async function badAssertionForm(clientId: string): Promise<Record<string, string>> {
    const registered = await loadExamplePrivateJwk(clientId).catch(() => undefined);
    const { privateJwk } = await generateClientKey('ES384', registered?.kid ?? 'k1');
    const assertion = await signClientAssertion({ clientId, privateJwk, tokenUrl: `${service.url}/auth/token` });
    return { grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion };
  }

  it('the (N+1)th token request of one client in the window: 429 slow_down with Retry-After; another client is unaffected', async () => {
    const client = clientIdOf('riverside-imaging');
    for (let i = 0; i < 6; i++) await getAccessToken(service.url, client);
    const refused = await postTokenRequest(service.url, await clientCredentialsForm(service.url, client));
    expect(refused.status).toBe(429);
    expect(refused.body).toEqual({ error: 'slow_down', error_description: expect.stringMatching(/^too many token requests for this client_id; retry after \d+ s$/) });
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(600); // one request's worth of the bucket: 3600 s / 6
    expect(refused.headers.get('cache-control')).toBe('no-store');
    expect(await getAccessToken(service.url, clientIdOf('audit-office'))).toEqual(expect.any(String));
  });

  it('per address, before the body is read: 429 slow_down; X-Forwarded-For is ignored by default (TRUST_PROXY off); another address is unaffected', async () => {
    const noAssertion = { grant_type: 'client_credentials' };
    for (let i = 0; i < 40; i++) {
      const res = await rawTokenRequest(service.url, noAssertion, { localAddress: '127.0.0.3', headers: { 'x-forwarded-for': `198.51.100.${i}` } });
      expect(res.status).toBe(400);
    }
    const refused = await rawTokenRequest(service.url, noAssertion, { localAddress: '127.0.0.3', headers: { 'x-forwarded-for': '198.51.100.200' } });
    expect(refused.status).toBe(429);
    expect(refused.body).toEqual({ error: 'slow_down', error_description: expect.stringMatching(/^too many token requests from this address; retry after \d+ s$/) });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await rawTokenRequest(service.url, noAssertion, { localAddress: '127.0.0.4' })).status).toBe(400);
  });

  it('lockout: after N bad assertions for a client id even a good one is refused (401 invalid_client, Retry-After) until the lockout ends; the same for an unknown client id; other clients unaffected', async () => {
    const victim = clientIdOf('northfield-pathology');
    for (let i = 0; i < 3; i++) {
      const res = await postTokenRequest(service.url, await badAssertionForm(victim));
      expect([res.status, res.body]).toEqual([401, { error: 'invalid_client', error_description: 'client_assertion signature verification failed' }]);
    }
    const locked = await postTokenRequest(service.url, await clientCredentialsForm(service.url, victim));
    expect(locked.status).toBe(401);
    expect(locked.body).toEqual({ error: 'invalid_client', error_description: expect.stringMatching(LOCKED) });
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(lines).toContainEqual(expect.objectContaining({ event: 'token.lockout', clientId: victim, failures: 3, lockoutSeconds: 2 }));

    // An id no one registered: the same three failures, the same answer (nothing says which ids exist).
    for (let i = 0; i < 3; i++) expect((await postTokenRequest(service.url, await badAssertionForm('no-such-client'))).body).toEqual({ error: 'invalid_client', error_description: 'unknown client' });
    const lockedUnknown = await postTokenRequest(service.url, await badAssertionForm('no-such-client'));
    expect(lockedUnknown.status).toBe(401);
    expect(lockedUnknown.body).toEqual({ error: 'invalid_client', error_description: expect.stringMatching(LOCKED) });

    expect(await getAccessToken(service.url, clientIdOf('lakeside-consults'))).toEqual(expect.any(String));

    // Wait the lockout out with good assertions: each refusal is the lockout, then a token.
    let issued: Awaited<ReturnType<typeof postTokenRequest>> | undefined;
    for (let attempt = 0; attempt < 100 && !issued; attempt++) {
      const res = await postTokenRequest(service.url, await clientCredentialsForm(service.url, victim));
      if (res.status === 200) issued = res;
      else {
        expect(res.body).toEqual({ error: 'invalid_client', error_description: expect.stringMatching(LOCKED) });
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    expect(issued?.body).toMatchObject({ token_type: 'bearer', access_token: expect.any(String) });
  }, 60_000);
});

describe('API: rate limits, TRUST_PROXY, security headers', () => {
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService({
      TRUST_PROXY: 'loopback',
      API_RATE_LIMIT_PER_CLIENT: '8',
      API_RATE_LIMIT_PER_IP: '30',
      API_RATE_LIMIT_WINDOW_SECONDS: '3600',
    });
  });
  afterAll(async () => service?.stop());

  const throttled = (whose: string): OperationOutcome => ({
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code: 'throttled', details: { text: expect.stringMatching(new RegExp(`^Too many requests ${whose}; retry after \\d+ s$`)) as unknown as string } }],
  });

  it('per client, after authentication: the (N+1)th request is 429 with Retry-After and an OperationOutcome throttled; another client is unaffected', async () => {
    const token = await getAccessToken(service.url, clientIdOf('riverside-imaging'));
    const get = () => fetch(`${service.url}/participants`, { headers: { authorization: `Bearer ${token}` } });
    for (let i = 0; i < 8; i++) expect((await get()).status).toBe(200);
    const refused = await get();
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(450); // 3600 s / 8
    expect(await refused.json()).toEqual(throttled('from this client'));
    const other = await getAccessToken(service.url, clientIdOf('audit-office'));
    expect((await fetch(`${service.url}/participants`, { headers: { authorization: `Bearer ${other}` } })).status).toBe(200);
  });

  it('per address, before authentication; with TRUST_PROXY the address is the one the trusted proxy forwards', async () => {
    const from = (address: string) => rawRequest(service.url, 'GET', '/participants', { 'x-forwarded-for': address });
    for (let i = 0; i < 30; i++) expect((await from('203.0.113.10')).status).toBe(401);
    const refused = await from('203.0.113.10');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.body).toEqual(throttled('from this address'));
    expect((await from('203.0.113.11')).status).toBe(401);
    // Health checks are never throttled.
    expect((await rawRequest(service.url, 'GET', '/healthz', { 'x-forwarded-for': '203.0.113.10' })).status).toBe(200);
  });

  it('security headers on JSON, FHIR and OAuth responses, errors included; no X-Powered-By; no HSTS over http', async () => {
    const token = await getAccessToken(service.url, clientIdOf('st-olaf'));
    const auth = { authorization: `Bearer ${token}` };
    const responses: [string, Response][] = [
      ['health JSON', await fetch(`${service.url}/healthz`)],
      ['FHIR CapabilityStatement', await fetch(`${service.url}/fhir/metadata`)],
      ['401 OperationOutcome', await fetch(`${service.url}/participants`)],
      ['JSON API', await fetch(`${service.url}/participants`, { headers: auth })],
      ['FHIR search', await fetch(`${service.url}/fhir/ServiceRequest?status=active`, { headers: auth })],
      ['404 OperationOutcome', await fetch(`${service.url}/no-such-route`, { headers: auth })],
      ['OAuth error', await fetch(`${service.url}/auth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=password' })],
      ['discovery', await fetch(`${service.url}/.well-known/smart-configuration`)],
    ];
    for (const [what, res] of responses) {
      const headers = Object.fromEntries(res.headers);
      expect(headers, what).toMatchObject({
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'x-frame-options': 'DENY',
        'content-security-policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        'cross-origin-resource-policy': 'same-origin',
        'cross-origin-opener-policy': 'same-origin',
        'cache-control': what === 'discovery' ? 'public, max-age=300' : 'no-store',
      });
      expect(headers['x-powered-by'], what).toBeUndefined();
      expect(headers['strict-transport-security'], what).toBeUndefined();
      await res.arrayBuffer();
    }
  });

  it('the comparison page: a CSP that allows only its own inline style, by hash; no script, frame, form or base', async () => {
    const token = await getAccessToken(service.url, clientIdOf('st-olaf'));
    const created = await fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(makeSecondOpinionRequest({ consultants: ['lakeside-consults'] })),
    });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };
    const res = await fetch(`${service.url}/second-opinions/${id}/comparison`, { headers: { authorization: `Bearer ${token}`, accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const page = await res.text();
    const style = /<style>([^<]*)<\/style>/.exec(page)?.[1] as string;
    const hash = createHash('sha256').update(style).digest('base64');
    expect(res.headers.get('content-security-policy')).toBe(`default-src 'none'; style-src 'sha256-${hash}'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`);
    expect(res.headers.get('content-security-policy')).toBe(COMPARISON_PAGE_CSP);
    expect(page.match(/<style>/g)).toHaveLength(1);
    expect(page).not.toMatch(/<script|\sstyle=|<iframe|<form|<base/i);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-powered-by')).toBeNull();
  });
});
