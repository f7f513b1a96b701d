import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../log/logger.ts';
import { OAuthError } from './oauth-error.ts';
import { claimedClientId, TokenLimits } from './token-limits.ts';

const unsigned = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new Uint8Array(32));

function refusal(fn: () => void): OAuthError | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof OAuthError) return err;
    throw err;
  }
}

describe('claimedClientId', () => {
  it("is the assertion's iss, else client_id, and only when it could be a registered client id", async () => {
    expect(claimedClientId({ client_assertion: await unsigned({ iss: 'st-olaf-ehr' }), client_id: 'other' })).toBe('st-olaf-ehr');
    expect(claimedClientId({ client_assertion: 'not-a-jwt', client_id: 'st-olaf-ehr' })).toBe('st-olaf-ehr');
    expect(claimedClientId({ client_assertion: await unsigned({ iss: 'x'.repeat(129) }) })).toBeUndefined();
    expect(claimedClientId({ client_assertion: await unsigned({ iss: 'has space' }) })).toBeUndefined();
    expect(claimedClientId({ grant_type: 'client_credentials' })).toBeUndefined();
  });
});

describe('TokenLimits', () => {
  const log = createLogger({ level: 'silent' });
  const settings = { perAddress: { limit: 2, windowSeconds: 60 }, perClient: { limit: 5, windowSeconds: 60 }, lockout: { failures: 2, windowSeconds: 60, lockoutSeconds: 30 } };

  it('per address: slow_down (429) with Retry-After once the bucket is empty', () => {
    const limits = new TokenLimits(settings, log, { clock: () => 0 });
    expect(refusal(() => limits.admitAddress('192.0.2.1'))).toBeUndefined();
    expect(refusal(() => limits.admitAddress('192.0.2.1'))).toBeUndefined();
    const err = refusal(() => limits.admitAddress('192.0.2.1'));
    expect([err?.status, err?.toJSON(), err?.retryAfterSeconds]).toEqual([429, { error: 'slow_down', error_description: 'too many token requests from this address; retry after 30 s' }, 30]);
    expect(refusal(() => limits.admitAddress('192.0.2.2'))).toBeUndefined();
  });

  it('locks a client id after repeated failed authentications, known or not, with the same answer; a lock is checked before the rate', () => {
    const limits = new TokenLimits(settings, log, { clock: () => 0 });
    for (const id of ['st-olaf-ehr', 'no-such-client']) {
      limits.failedAuthentication(id);
      limits.failedAuthentication(id);
    }
    const [known, unknown] = ['st-olaf-ehr', 'no-such-client'].map((id) => refusal(() => limits.admitClient(id)));
    expect(known?.toJSON()).toEqual({ error: 'invalid_client', error_description: 'client authentication for this client_id is temporarily locked after repeated failed client assertions; retry after 30 s' });
    expect([known?.status, known?.retryAfterSeconds]).toEqual([401, 30]);
    expect(unknown?.toJSON()).toEqual(known?.toJSON());
    expect(refusal(() => limits.admitClient('lakeside-worklist'))).toBeUndefined();
    expect(refusal(() => limits.admitClient(undefined))).toBeUndefined();
  });
});
