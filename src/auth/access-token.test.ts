import { OperationOutcomeError } from '@medplum/core';
import { SignJWT } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import { CLIENT_ASSERTION_TYPE, createTestAuthDeps, generateServiceSigningKey, loadExamplePrivateJwk, signClientAssertion } from '../../test/support/tokens.ts';
import { loadNetwork, parseNetwork } from '../network/network.ts';
import { verifyAccessToken } from './access-token.ts';
import type { AuthDeps } from './auth-deps.ts';
import { issueAccessToken } from './token-endpoint.ts';

let deps: AuthDeps;

beforeEach(async () => {
  deps = await createTestAuthDeps();
});

async function tokenFor(clientId: string, scope?: string, d: AuthDeps = deps): Promise<string> {
  const assertion = await signClientAssertion({ clientId, privateJwk: await loadExamplePrivateJwk(clientId), tokenUrl: 'https://so.example/auth/token' });
  const form: Record<string, string> = { grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion };
  if (scope) form.scope = scope;
  return (await issueAccessToken(form, d)).access_token;
}

async function outcomeOf(promise: Promise<unknown>): Promise<unknown> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OperationOutcomeError);
  return (err as OperationOutcomeError).outcome;
}

const invalidToken = {
  resourceType: 'OperationOutcome',
  id: 'unauthorized',
  issue: [{ severity: 'error', code: 'login', details: { text: 'Invalid access token' } }],
};

describe('verifyAccessToken', () => {
  it('resolves the caller from a token we issued', async () => {
    const caller = await verifyAccessToken(await tokenFor('st-olaf-ehr'), deps);
    expect(caller).toEqual({ clientId: 'st-olaf-ehr', participantId: 'st-olaf', roles: ['referrer'], scopes: ['system/*.rs', 'system/ServiceRequest.c', 'system/Subscription.cd'], referrals: { referrer: 'st-olaf' } });
  });

  it('returns the cached caller for a token seen before', async () => {
    const token = await tokenFor('lakeside-worklist', 'system/Task.rus');
    const first = await verifyAccessToken(token, deps);
    expect(first).toEqual({ clientId: 'lakeside-worklist', participantId: 'lakeside-consults', roles: ['consultant'], scopes: ['system/Task.rus'] });
    expect(await verifyAccessToken(token, deps)).toBe(first);
  });

  it('takes roles from the current network and narrows scopes to the current registration', async () => {
    const token = await tokenFor('st-olaf-ehr');
    await verifyAccessToken(token, deps);
    const raw = JSON.parse(JSON.stringify({ participants: (await loadNetwork()).participants }));
    raw.participants[0].roles = ['referrer', 'physician'];
    raw.participants[0].clients[0].scope = 'system/*.r';
    const changed = parseNetwork(raw, 'changed');
    expect(await verifyAccessToken(token, { ...deps, network: changed })).toEqual({
      clientId: 'st-olaf-ehr',
      participantId: 'st-olaf',
      roles: ['referrer', 'physician'],
      scopes: ['system/*.r'],
      referrals: { referrer: 'st-olaf' },
    });
  });

  it('refuses a token whose client left the network', async () => {
    const token = await tokenFor('st-olaf-ehr');
    // Without St Olaf (and the physicians' portal acting for it).
    const raw = JSON.parse(JSON.stringify({ participants: (await loadNetwork()).participants.filter((p) => p.id !== 'st-olaf' && p.id !== 'st-olaf-physicians') }));
    expect(await outcomeOf(verifyAccessToken(token, { ...deps, network: parseNetwork(raw, 'smaller') }))).toEqual({
      resourceType: 'OperationOutcome',
      id: 'unauthorized',
      issue: [{ severity: 'error', code: 'login', details: { text: 'The client of this access token is not registered in the network' } }],
    });
  });

  it('refuses an expired token, also from the cache', async () => {
    const token = await tokenFor('st-olaf-ehr');
    await verifyAccessToken(token, deps);
    const later = { ...deps, now: () => new Date(Date.now() + 301_000) };
    const expired = {
      resourceType: 'OperationOutcome',
      id: 'unauthorized',
      issue: [
        { severity: 'error', code: 'login', details: { text: 'Unauthorized' } },
        { severity: 'error', code: 'expired', details: { text: 'Token expired' } },
      ],
    };
    expect(await outcomeOf(verifyAccessToken(token, later))).toEqual(expired);
    // Not cached any more: verification itself says expired.
    expect(await outcomeOf(verifyAccessToken(token, later))).toEqual(expired);
  });

  it('refuses tokens signed by another key, for another audience, of another type, or garbage', async () => {
    const token = await tokenFor('st-olaf-ehr');
    expect(await outcomeOf(verifyAccessToken(token, { ...deps, signingKey: await generateServiceSigningKey() }))).toEqual(invalidToken);
    expect(await outcomeOf(verifyAccessToken(token, { ...deps, config: { ...deps.config, publicUrl: 'https://other.example' } }))).toEqual(invalidToken);
    expect(await outcomeOf(verifyAccessToken('garbage', deps))).toEqual(invalidToken);

    const claims = { client_id: 'st-olaf-ehr', participant: 'st-olaf', scope: 'system/*.rs' };
    const sign = (typ: string) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES384', typ })
        .setIssuer('https://so.example')
        .setAudience('https://so.example')
        .setSubject('st-olaf-ehr')
        .setJti('j')
        .setIssuedAt()
        .setExpirationTime('2m')
        .sign(deps.signingKey.privateKey);
    // A plain JWT (e.g. a client assertion shape) signed by our key is still not an access token.
    expect(await outcomeOf(verifyAccessToken(await sign('JWT'), deps))).toEqual(invalidToken);
    expect(await verifyAccessToken(await sign('at+jwt'), deps)).toMatchObject({ clientId: 'st-olaf-ehr' });
  });
});
