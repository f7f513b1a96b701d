/**
 * HTTP tests of the auth and directory routers on a small Express app (the real createApp mounts
 * the same routers in the same order): real signed JWTs, a real server on port 0.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { getStatus, OperationOutcomeError } from '@medplum/core';
import express, { type ErrorRequestHandler } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthDeps } from '../src/auth/auth-deps.ts';
import { createGuard } from '../src/access/route-guard.ts';
import { requireRole, requireScope } from '../src/access/caller.ts';
import { createAuthMiddleware, requireCaller } from '../src/auth/middleware.ts';
import { createAuthRouter } from '../src/auth/routes.ts';
import { runWithContext } from '../src/http/context.ts';
import { createParticipantsRouter } from '../src/network/routes.ts';
import { clientCredentialsForm, createTestAuthDeps, getAccessToken, postTokenRequest } from './support/tokens.ts';

let server: http.Server;
let baseUrl: string;
let deps: AuthDeps;

/** Stand-in for the central error handler (src/http/errors.ts): OperationOutcomeError -> status + body. */
const errorHandler: ErrorRequestHandler = (err, _req, res, _next) => {
  if (err instanceof OperationOutcomeError) res.status(getStatus(err.outcome)).json(err.outcome);
  else res.status(500).json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception' }] });
};

beforeAll(async () => {
  server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  deps = await createTestAuthDeps({ publicUrl: baseUrl });

  const app = express();
  app.use((_req, _res, next) => runWithContext({ requestId: randomUUID(), traceId: randomUUID().replaceAll('-', ''), log: deps.log }, next));
  app.use(createAuthRouter(deps)); // public: token endpoint and discovery
  app.use(createAuthMiddleware(deps)); // everything below needs a bearer token
  // /participants reads no PHI: its guard never audits.
  app.use(createParticipantsRouter({ guard: createGuard({ record: () => Promise.reject(new Error('not audited')) }), network: deps.network }));
  app.get('/whoami', (_req, res) => {
    res.json({ context: requireCaller(), locals: res.locals.caller });
  });
  app.post('/referrals', (_req, res) => {
    const caller = requireCaller();
    requireRole(caller, 'referrer');
    requireScope(caller, 'ServiceRequest', 'c');
    res.status(201).json({ ok: true });
  });
  app.use(errorHandler);
  server.on('request', app);
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const get = (path: string, token?: string) => fetch(`${baseUrl}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

describe('discovery', () => {
  it('GET /.well-known/smart-configuration (and under /fhir) advertises backend services', async () => {
    const expected = {
      issuer: baseUrl,
      jwks_uri: `${baseUrl}/.well-known/jwks.json`,
      token_endpoint: `${baseUrl}/auth/token`,
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      grant_types_supported: ['client_credentials'],
      scopes_supported: [
        'system/*.rs',
        'system/AuditEvent.rs',
        'system/Binary.r',
        'system/Bundle.rs',
        'system/Communication.rs',
        'system/DiagnosticReport.rs',
        'system/DocumentReference.crs',
        'system/Endpoint.rs',
        'system/ImagingStudy.rs',
        'system/Organization.rs',
        'system/Provenance.rs',
        'system/ServiceRequest.c',
        'system/ServiceRequest.rs',
        'system/Subscription.cd',
        'system/Subscription.crds',
        'system/Task.rs',
        'system/Task.rus',
      ],
      capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
    };
    for (const path of ['/.well-known/smart-configuration', '/fhir/.well-known/smart-configuration']) {
      const res = await get(path);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual(expected);
    }
  });

  it('GET /.well-known/jwks.json publishes the public signing key only', async () => {
    const res = await get('/.well-known/jwks.json');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { keys: Record<string, unknown>[] };
    expect(body).toEqual({ keys: [deps.signingKey.publicJwk] });
    expect(body.keys[0]).toEqual({ kty: 'EC', crv: 'P-384', x: expect.any(String), y: expect.any(String), kid: deps.signingKey.kid, alg: 'ES384', use: 'sig' });
  });
});

describe('POST /auth/token', () => {
  it('issues a token (200, no-store, expires_in ≤ 300)', async () => {
    const res = await postTokenRequest(baseUrl, await clientCredentialsForm(baseUrl, 'st-olaf-ehr', { scope: 'system/ServiceRequest.c system/Task.rs' }));
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.body).toEqual({ access_token: expect.any(String), token_type: 'bearer', expires_in: 300, scope: 'system/ServiceRequest.c system/Task.rs' });
  });

  it('answers OAuth errors as JSON with 400/401', async () => {
    const good = await clientCredentialsForm(baseUrl, 'st-olaf-ehr');
    const cases: [string, Record<string, string>, number, Record<string, string>][] = [
      ['unsupported grant', { ...good, grant_type: 'password' }, 400, { error: 'unsupported_grant_type', error_description: 'only grant_type=client_credentials is supported' }],
      [
        'wrong aud',
        await clientCredentialsForm(baseUrl, 'st-olaf-ehr', { tokenUrl: 'https://elsewhere.example/token' }),
        401,
        { error: 'invalid_client', error_description: `client_assertion aud must be the token endpoint URL ${baseUrl}/auth/token` },
      ],
      [
        'scope not allowed',
        await clientCredentialsForm(baseUrl, 'audit-office-siem', { scope: 'system/ServiceRequest.c' }),
        400,
        { error: 'invalid_scope', error_description: 'none of the requested scopes is allowed for this client; allowed: system/AuditEvent.rs system/Provenance.rs' },
      ],
      ['missing assertion', { grant_type: 'client_credentials' }, 400, { error: 'invalid_request', error_description: 'client_assertion_type and client_assertion are required (private_key_jwt client authentication)' }],
    ];
    for (const [, form, status, body] of cases) {
      const res = await postTokenRequest(baseUrl, form);
      expect({ status: res.status, body: res.body, cacheControl: res.headers.get('cache-control') }).toEqual({ status, body, cacheControl: 'no-store' });
    }
  });

  it('refuses a replayed assertion with 401 invalid_client', async () => {
    const form = await clientCredentialsForm(baseUrl, 'northfield-lis');
    expect((await postTokenRequest(baseUrl, form)).status).toBe(200);
    const replay = await postTokenRequest(baseUrl, form);
    expect({ status: replay.status, body: replay.body }).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'client_assertion jti has already been used' } });
  });

  it('takes only application/x-www-form-urlencoded, parameters once, small bodies', async () => {
    const form = await clientCredentialsForm(baseUrl, 'st-olaf-ehr');
    const post = async (body: string, contentType: string) => {
      const res = await fetch(`${baseUrl}/auth/token`, { method: 'POST', headers: { 'content-type': contentType }, body });
      return { status: res.status, body: await res.json(), cacheControl: res.headers.get('cache-control') };
    };
    const invalidRequest = (description: string) => ({ status: 400, body: { error: 'invalid_request', error_description: description }, cacheControl: 'no-store' });

    expect(await post(JSON.stringify(form), 'application/json')).toEqual(invalidRequest('the token request must be sent as application/x-www-form-urlencoded'));
    expect(await post(`${new URLSearchParams(form)}&scope=system/Task.rs&scope=system/Task.r`, 'application/x-www-form-urlencoded')).toEqual(
      invalidRequest('parameter scope must not be repeated'),
    );
    expect(await post(`${new URLSearchParams(form)}&pad=${'x'.repeat(20_000)}`, 'application/x-www-form-urlencoded')).toEqual(
      invalidRequest('the token request body is larger than 16kb'),
    );
  });
});

describe('auth middleware', () => {
  it('no token: 401 OperationOutcome with WWW-Authenticate', async () => {
    const res = await get('/whoami');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="second-opinion"');
    expect(await res.json()).toEqual({
      resourceType: 'OperationOutcome',
      id: 'unauthorized',
      issue: [{ severity: 'error', code: 'login', details: { text: 'An access token is required (Authorization: Bearer <token>); get one from /auth/token' } }],
    });
  });

  it('invalid token: 401 with error="invalid_token"', async () => {
    const res = await get('/whoami', 'not.a.token');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="second-opinion", error="invalid_token", error_description="The access token is invalid"');
    expect(await res.json()).toEqual({
      resourceType: 'OperationOutcome',
      id: 'unauthorized',
      issue: [{ severity: 'error', code: 'login', details: { text: 'Invalid access token' } }],
    });
  });

  it('another scheme: 401 with error="invalid_request"', async () => {
    const res = await fetch(`${baseUrl}/whoami`, { headers: { authorization: 'Basic c3Q6b2xhZg==' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="second-opinion", error="invalid_request", error_description="expected Authorization: Bearer <token>"');
    expect(await res.json()).toEqual({
      resourceType: 'OperationOutcome',
      id: 'unauthorized',
      issue: [{ severity: 'error', code: 'login', details: { text: 'The Authorization header must be "Bearer <access token>"' } }],
    });
  });

  it('valid token: the caller, with the request it belongs to, is in the request context and res.locals', async () => {
    const token = await getAccessToken(baseUrl, 'st-olaf-ehr');
    const res = await get('/whoami', token);
    expect(res.status).toBe(200);
    const caller = { clientId: 'st-olaf-ehr', participantId: 'st-olaf', roles: ['referrer'], scopes: ['system/*.rs', 'system/ServiceRequest.c', 'system/Subscription.cd'], referrals: { referrer: 'st-olaf' }, requestId: expect.stringMatching(/^[0-9a-f-]{36}$/) };
    const body = (await res.json()) as { context: { requestId: string }; locals: { requestId: string } };
    expect(body).toEqual({ context: caller, locals: caller });
    // A second request is another act: another request id on its caller.
    const again = (await (await get('/whoami', token)).json()) as { context: { requestId: string } };
    expect(again.context.requestId).not.toBe(body.context.requestId);
  });

  it('requireRole and requireScope answer 403 saying what is needed', async () => {
    const consultant = await getAccessToken(baseUrl, 'lakeside-worklist');
    const byConsultant = await fetch(`${baseUrl}/referrals`, { method: 'POST', headers: { authorization: `Bearer ${consultant}` } });
    expect(byConsultant.status).toBe(403);
    expect(await byConsultant.json()).toEqual({
      resourceType: 'OperationOutcome',
      id: 'forbidden',
      issue: [{ severity: 'error', code: 'forbidden', details: { text: 'This operation requires the referrer role; participant lakeside-consults has consultant' } }],
    });

    const readOnly = await getAccessToken(baseUrl, 'st-olaf-ehr', { scope: 'system/*.rs' });
    const withoutScope = await fetch(`${baseUrl}/referrals`, { method: 'POST', headers: { authorization: `Bearer ${readOnly}` } });
    expect(withoutScope.status).toBe(403);
    expect(await withoutScope.json()).toEqual({
      resourceType: 'OperationOutcome',
      id: 'forbidden',
      issue: [
        {
          severity: 'error',
          code: 'forbidden',
          details: { text: 'This operation requires scope system/ServiceRequest.c (or a scope that includes it, e.g. system/*.c); granted: system/*.rs' },
        },
      ],
    });

    const referrer = await getAccessToken(baseUrl, 'st-olaf-ehr');
    const ok = await fetch(`${baseUrl}/referrals`, { method: 'POST', headers: { authorization: `Bearer ${referrer}` } });
    expect({ status: ok.status, body: await ok.json() }).toEqual({ status: 201, body: { ok: true } });
  });
});

describe('GET /participants', () => {
  it('lists the consultants for a pick-list', async () => {
    const token = await getAccessToken(baseUrl, 'st-olaf-ehr');
    const res = await get('/participants?role=consultant', token);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      participants: [
        {
          id: 'lakeside-consults',
          name: 'Lakeside Clinic (example)',
          roles: ['consultant'],
          specialties: [{ system: 'http://snomed.info/sct', code: '394611003', display: 'Plastic surgery' }],
          organization: { reference: 'Organization/lakeside', display: 'Lakeside Clinic (example)', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-2001' }] },
        },
        {
          id: 'northfield-pathology',
          name: 'Northfield Pathology Laboratory (example)',
          roles: ['consultant'],
          specialties: [{ system: 'http://snomed.info/sct', code: '394915009', display: 'General pathology' }],
          organization: { reference: 'Organization/northfield-pathology', display: 'Northfield Pathology Laboratory (example)', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-2002' }] },
        },
        {
          id: 'riverside-imaging',
          name: 'Riverside Imaging Centre (example)',
          roles: ['consultant'],
          specialties: [{ system: 'http://snomed.info/sct', code: '394914008', display: 'Radiology' }],
          organization: { reference: 'Organization/riverside-imaging', display: 'Riverside Imaging Centre (example)', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-2003' }] },
        },
      ],
    });
  });

  it('lists everyone without a role filter, with no keys or endpoints', async () => {
    const token = await getAccessToken(baseUrl, 'audit-office-siem');
    const body = (await (await get('/participants', token)).json()) as { participants: { id: string }[] };
    expect(body.participants.map((p) => p.id)).toEqual(['st-olaf', 'lakeside-consults', 'northfield-pathology', 'riverside-imaging', 'audit-office', 'st-olaf-physicians', 'operations']);
    expect(body.participants[0]).toEqual({
      id: 'st-olaf',
      name: 'St Olaf Hospital (example)',
      roles: ['referrer'],
      specialties: [],
      organization: { reference: 'Organization/st-olaf', display: 'St Olaf Hospital (example)', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-1001' }] },
    });
  });

  it('refuses an unknown role with a 400 naming role', async () => {
    const token = await getAccessToken(baseUrl, 'st-olaf-ehr');
    for (const query of ['role=janitor', 'role=consultant&role=referrer']) {
      const res = await get(`/participants?${query}`, token);
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: 'invalid', details: { text: 'role must be one of referrer, consultant, physician, auditor, admin, operator' }, expression: ['role'] }],
      });
    }
  });

  it('needs a token', async () => {
    expect((await get('/participants?role=consultant')).status).toBe(401);
  });
});
