import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, decodeProtectedHeader, generateSecret, jwtVerify, SignJWT, UnsecuredJWT, type JWK } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CLIENT_ASSERTION_TYPE,
  createTestAuthDeps,
  generateClientKey,
  loadExamplePrivateJwk,
  signClientAssertion,
  type ClientAssertionOptions,
} from '../../test/support/tokens.ts';
import { parseNetwork } from '../network/network.ts';
import type { AuthDeps } from './auth-deps.ts';
import { OAuthError } from './oauth-error.ts';
import { issueAccessToken } from './token-endpoint.ts';

const TOKEN_URL = 'https://so.example/auth/token';

let deps: AuthDeps;
let stOlafKey: JWK;
let lakesideKey: JWK;

beforeAll(async () => {
  stOlafKey = await loadExamplePrivateJwk('st-olaf-ehr');
  lakesideKey = await loadExamplePrivateJwk('lakeside-worklist');
});

beforeEach(async () => {
  deps = await createTestAuthDeps();
});

async function form(overrides: Partial<ClientAssertionOptions> = {}, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const assertion = await signClientAssertion({ clientId: 'st-olaf-ehr', privateJwk: stOlafKey, tokenUrl: TOKEN_URL, ...overrides });
  return { grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion, ...extra };
}

/** The OAuth error a request is refused with: status and the JSON body the endpoint would send. */
async function refusal(f: Record<string, string>, d: AuthDeps = deps): Promise<{ status: number; body: unknown }> {
  try {
    await issueAccessToken(f, d);
  } catch (err) {
    if (err instanceof OAuthError) return { status: err.status, body: err.toJSON() };
    throw err;
  }
  throw new Error('expected the token request to be refused');
}

const invalidClient = (description: string) => ({ status: 401, body: { error: 'invalid_client', error_description: description } });

describe('issueAccessToken: success', () => {
  it('issues a token for an ES384 assertion, granting the registered scopes', async () => {
    const before = Math.floor(Date.now() / 1000);
    const res = await issueAccessToken(await form(), deps);
    expect(res).toEqual({ access_token: expect.any(String), token_type: 'bearer', expires_in: 300, scope: 'system/*.rs system/ServiceRequest.c system/Subscription.cd' });

    expect(decodeProtectedHeader(res.access_token)).toEqual({ alg: 'ES384', kid: deps.signingKey.kid, typ: 'at+jwt' });
    const { payload } = await jwtVerify(res.access_token, deps.signingKey.publicKey, { issuer: 'https://so.example', audience: 'https://so.example' });
    expect(payload).toEqual({
      iss: 'https://so.example',
      aud: 'https://so.example',
      sub: 'st-olaf-ehr',
      client_id: 'st-olaf-ehr',
      participant: 'st-olaf',
      scope: 'system/*.rs system/ServiceRequest.c system/Subscription.cd',
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
      iat: expect.any(Number),
      exp: (payload.iat as number) + 300,
    });
    expect(payload.iat).toBeGreaterThanOrEqual(before);
  });

  it('issues a token for an RS384 assertion with the requested scope', async () => {
    const f = await form({ clientId: 'lakeside-worklist', privateJwk: lakesideKey }, { scope: 'system/Task.rs' });
    expect(decodeProtectedHeader(f.client_assertion as string).alg).toBe('RS384');
    const res = await issueAccessToken(f, deps);
    expect(res).toMatchObject({ token_type: 'bearer', expires_in: 300, scope: 'system/Task.rs' });
    expect(decodeJwt(res.access_token)).toMatchObject({ sub: 'lakeside-worklist', participant: 'lakeside-consults', scope: 'system/Task.rs' });
  });

  it('uses the configured lifetime and never more than 300 s', async () => {
    const short = await createTestAuthDeps({ accessTokenTtlSeconds: 60 });
    expect((await issueAccessToken(await form(), short)).expires_in).toBe(60);
    const long = await createTestAuthDeps({ accessTokenTtlSeconds: 3600 });
    expect((await issueAccessToken(await form(), long)).expires_in).toBe(300);
  });

  it('grants requested ∩ allowed', async () => {
    const res = await issueAccessToken(await form({}, { scope: 'system/Task.cruds system/Patient.read system/Binary.r' }), deps);
    expect(res.scope).toBe('system/Task.rs system/Patient.read system/Binary.r');
  });

  it('accepts a client_id parameter equal to the assertion iss, and an assertion exp within the clock skew', async () => {
    expect((await issueAccessToken(await form({ expiresInSeconds: 330 }, { client_id: 'st-olaf-ehr' }), deps)).token_type).toBe('bearer');
    expect((await issueAccessToken(await form({ expiresInSeconds: -30 }), deps)).token_type).toBe('bearer');
  });

  it('uses the injected clock', async () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const fixed = await createTestAuthDeps({ now: () => now });
    const res = await issueAccessToken(await form({ now }), fixed);
    expect(decodeJwt(res.access_token)).toMatchObject({ iat: 1893456000, exp: 1893456300 });
    // The same assertion is expired for a clock ten minutes later.
    expect(await refusal(await form({ now }), { ...fixed, now: () => new Date(now.getTime() + 600_000) })).toEqual(invalidClient('client_assertion has expired'));
  });
});

describe('issueAccessToken: refusals', () => {
  it('wrong aud', async () => {
    expect(await refusal(await form({ tokenUrl: 'https://elsewhere.example/auth/token' }))).toEqual(
      invalidClient('client_assertion aud must be the token endpoint URL https://so.example/auth/token'),
    );
  });

  it('exp more than 5 minutes ahead', async () => {
    expect(await refusal(await form({ expiresInSeconds: 600 }))).toEqual(invalidClient('client_assertion exp must be no more than 5 minutes in the future'));
  });

  it('expired assertion', async () => {
    expect(await refusal(await form({ expiresInSeconds: -120 }))).toEqual(invalidClient('client_assertion has expired'));
  });

  it('missing exp or jti', async () => {
    expect(await refusal(await form({ claims: { exp: undefined } }))).toEqual(invalidClient('client_assertion exp claim is missing or invalid'));
    expect(await refusal(await form({ claims: { jti: undefined } }))).toEqual(invalidClient('client_assertion jti claim is missing or invalid'));
  });

  it('jti replay, per client', async () => {
    const f = await form({ jti: 'once' });
    await issueAccessToken(f, deps);
    expect(await refusal(f)).toEqual(invalidClient('client_assertion jti has already been used'));
    expect(await refusal(await form({ jti: 'once' }))).toEqual(invalidClient('client_assertion jti has already been used'));
    // Another client may use the same jti value.
    await issueAccessToken(await form({ clientId: 'lakeside-worklist', privateJwk: lakesideKey, jti: 'once' }), deps);
  });

  it('does not burn the jti of an assertion that fails verification', async () => {
    const other = await generateClientKey('ES384', stOlafKey.kid);
    expect(await refusal(await form({ privateJwk: other.privateJwk, jti: 'j1' }))).toEqual(invalidClient('client_assertion signature verification failed'));
    expect((await issueAccessToken(await form({ jti: 'j1' }), deps)).token_type).toBe('bearer');
  });

  it('unknown client, iss ≠ sub, client_id ≠ iss', async () => {
    expect(await refusal(await form({ clientId: 'nobody' }))).toEqual(invalidClient('unknown client'));
    expect(await refusal(await form({ claims: { sub: 'lakeside-worklist' } }))).toEqual(invalidClient('client_assertion iss and sub must both be the client_id'));
    expect(await refusal(await form({}, { client_id: 'lakeside-worklist' }))).toEqual(invalidClient('client_id does not match the client_assertion iss'));
  });

  it('another client signing as st-olaf-ehr (bad signature), or with a kid that is not registered', async () => {
    expect(await refusal(await form({ privateJwk: lakesideKey, kid: stOlafKey.kid, alg: 'RS384' }))).toEqual(
      invalidClient('no key registered for this client matches the client_assertion kid and alg'),
    );
    const forged = await generateClientKey('ES384', stOlafKey.kid);
    expect(await refusal(await form({ privateJwk: forged.privateJwk }))).toEqual(invalidClient('client_assertion signature verification failed'));
    expect(await refusal(await form({ kid: 'not-registered' }))).toEqual(invalidClient('no key registered for this client matches the client_assertion kid and alg'));
    expect(await refusal(await form({ kid: '' }))).toEqual(invalidClient('client_assertion header must carry the kid of the signing key'));
  });

  it('algorithms other than RS384 and ES384: HS256, none, RS256', async () => {
    const claims = { iss: 'st-olaf-ehr', sub: 'st-olaf-ehr', aud: TOKEN_URL, exp: Math.floor(Date.now() / 1000) + 60, jti: 'x' };
    const secret = await generateSecret('HS256');
    const hs256 = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: stOlafKey.kid as string }).sign(secret);
    const none = new UnsecuredJWT(claims).encode();
    const rs256 = await signClientAssertion({ clientId: 'lakeside-worklist', privateJwk: lakesideKey, tokenUrl: TOKEN_URL, alg: 'RS256' });
    for (const assertion of [hs256, none, rs256]) {
      expect(await refusal({ ...(await form()), client_assertion: assertion })).toEqual(invalidClient('client_assertion alg must be RS384 or ES384'));
    }
  });

  it('a typ other than JWT, a jku that is not registered', async () => {
    expect(await refusal(await form({ header: { typ: 'at+jwt' } }))).toEqual(invalidClient('client_assertion typ must be JWT'));
    expect(await refusal(await form({ header: { jku: 'https://evil.example/jwks' } }))).toEqual(
      invalidClient('client_assertion jku does not match the JWK Set URL registered for this client'),
    );
  });

  it('a typ that is not text (null, a number, a list): refused like any other typ, not a 500', async () => {
    for (const typ of [null, 5, ['JWT'], { JWT: true }]) {
      expect(await refusal(await form({ header: { typ } }))).toEqual(invalidClient('client_assertion typ must be JWT'));
    }
  });

  it('grant type and client authentication parameters', async () => {
    const f = await form();
    expect(await refusal({ ...f, grant_type: 'authorization_code' })).toEqual({
      status: 400,
      body: { error: 'unsupported_grant_type', error_description: 'only grant_type=client_credentials is supported' },
    });
    const { grant_type: _g, ...noGrant } = f;
    expect(await refusal(noGrant)).toEqual({ status: 400, body: { error: 'invalid_request', error_description: 'grant_type is required' } });
    const { client_assertion: _a, ...noAssertion } = f;
    expect(await refusal(noAssertion)).toEqual({
      status: 400,
      body: { error: 'invalid_request', error_description: 'client_assertion_type and client_assertion are required (private_key_jwt client authentication)' },
    });
    expect(await refusal({ ...f, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer' })).toEqual(
      invalidClient(`client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`),
    );
    expect(await refusal({ ...f, client_assertion: 'not-a-jwt' })).toEqual(invalidClient('client_assertion is not a signed JWT'));
  });

  it('invalid_scope: malformed, or nothing allowed', async () => {
    expect(await refusal(await form({}, { scope: 'system/Task.rs launch' }))).toEqual({
      status: 400,
      body: { error: 'invalid_scope', error_description: 'not a supported SMART system scope: launch' },
    });
    expect(await refusal(await form({}, { scope: 'system/Task.d system/Patient.c' }))).toEqual({
      status: 400,
      body: { error: 'invalid_scope', error_description: 'none of the requested scopes is allowed for this client; allowed: system/*.rs system/ServiceRequest.c system/Task.rs system/Subscription.cd' },
    });
  });

  it('never logs the assertion or the token', async () => {
    const lines: string[] = [];
    const logged = await createTestAuthDeps({ logLines: lines });
    const f = await form();
    const res = await issueAccessToken(f, logged);
    await refusal(f, logged); // replay
    const output = lines.join('\n');
    expect(lines.map((l) => JSON.parse(l)).map(({ event, clientId, error }) => ({ event, clientId, error }))).toEqual([
      { event: 'token.issued', clientId: 'st-olaf-ehr', error: undefined },
      { event: 'token.refused', clientId: 'st-olaf-ehr', error: 'invalid_client' },
    ]);
    for (const secret of [f.client_assertion as string, res.access_token]) {
      for (const part of secret.split('.')) expect(output).not.toContain(part);
    }
  });
});

describe('issueAccessToken: client keys from a jwksUri', () => {
  let server: http.Server;
  let jwksUri: string;
  let key: { privateJwk: JWK; publicJwk: JWK };
  let fetches = 0;
  let respond: (res: http.ServerResponse) => void;

  beforeAll(async () => {
    key = await generateClientKey('RS384', 'remote-1');
    server = http.createServer((req, res) => {
      fetches++;
      respond(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    jwksUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const serveJwks = (cacheControl?: string) => (res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json', ...(cacheControl ? { 'cache-control': cacheControl } : {}) });
    res.end(JSON.stringify({ keys: [key.publicJwk] }));
  };

  async function remoteDeps(): Promise<AuthDeps> {
    const network = parseNetwork(
      {
        participants: [
          {
            id: 'remote-clinic',
            name: 'Remote clinic',
            roles: ['consultant'],
            organization: { reference: 'Organization/remote', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-7001' }] },
            clients: [{ clientId: 'remote-client', jwksUri, scope: 'system/Task.rs' }],
          },
        ],
      },
      'test',
    );
    return createTestAuthDeps({ network });
  }

  const remoteForm = async (header: Record<string, unknown> = {}) => ({
    grant_type: 'client_credentials',
    client_assertion_type: CLIENT_ASSERTION_TYPE,
    client_assertion: await signClientAssertion({ clientId: 'remote-client', privateJwk: key.privateJwk, tokenUrl: TOKEN_URL, header }),
  });

  it('fetches the JWK Set once and caches it', async () => {
    respond = serveJwks('max-age=600');
    fetches = 0;
    const d = await remoteDeps();
    expect((await issueAccessToken(await remoteForm(), d)).scope).toBe('system/Task.rs');
    expect((await issueAccessToken(await remoteForm({ jku: jwksUri }), d)).scope).toBe('system/Task.rs');
    expect(fetches).toBe(1);
  });

  it('re-fetches when the client says no-store', async () => {
    respond = serveJwks('no-store');
    fetches = 0;
    const d = await remoteDeps();
    await issueAccessToken(await remoteForm(), d);
    await issueAccessToken(await remoteForm(), d);
    expect(fetches).toBe(2);
  });

  it('refuses with invalid_client when the JWK Set cannot be fetched', async () => {
    respond = (res) => {
      res.writeHead(500).end();
    };
    const d = await remoteDeps();
    expect(await refusal(await remoteForm(), d)).toEqual(invalidClient("the client's JWK Set could not be retrieved from its registered jwksUri"));
  });
});
