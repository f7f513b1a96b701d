import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeProtectedHeader, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseNetwork } from '../network/network.ts';
import { PRIVATE_JWK_MEMBERS } from '../network/network-schema.ts';
import { createParticipantFhirClients } from './endpoints.ts';
import { loadOutboundKeys, publishedKeySet, signingKeyAt, type OutboundKeys } from './outbound-keys.ts';

const KEYS_DIR = path.join(import.meta.dirname, '..', '..', 'examples', 'keys');
const CURRENT = path.join(KEYS_DIR, 'service-outbound.private.jwk.json');
const NEXT = path.join(KEYS_DIR, 'service-outbound-next.private.jwk.json');

/** The public JWK a private example key file should be published as: no private member, no comment. */
function expectedPublic(file: string): JWK {
  const jwk = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const drop = new Set<string>(['_comment', ...PRIVATE_JWK_MEMBERS]);
  return Object.fromEntries(Object.entries(jwk).filter(([k]) => !drop.has(k))) as JWK;
}
const CURRENT_PUBLIC = expectedPublic(CURRENT);
const NEXT_PUBLIC = expectedPublic(NEXT);

const DAY = 24 * 3600_000;
const T0 = Date.parse('2027-03-01T00:00:00Z');

const referrer = (id: string, fhir: Record<string, unknown>) => ({ id, name: id, roles: ['referrer'], organization: { reference: `Organization/${id}` }, clients: [], fhir: { baseUrl: `https://${id}.test/fhir`, ...fhir } });
const networkOf = (...participants: unknown[]) => parseNetwork({ participants }, 'network.json');
const kids = (keys: OutboundKeys, at: number) => publishedKeySet(keys, at).keys.map((k) => k.kid);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'outbound-key-set-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe('the client JWK Set', () => {
  it('publishes the public half of each key (kty, kid, use sig, alg, key members; nothing private), each kid once', async () => {
    const keys = await loadOutboundKeys(
      networkOf(
        referrer('st-olaf', { keys: [{ file: CURRENT }, { file: NEXT, signFrom: '2027-03-08' }] }),
        // The same key registered at a second EHR is published once.
        referrer('harbor', { privateKeyFile: CURRENT }),
        referrer('anonymous', {}),
      ),
    );
    const set = publishedKeySet(keys, T0);
    expect(set).toEqual({ keys: [CURRENT_PUBLIC, NEXT_PUBLIC] });
    expect(CURRENT_PUBLIC).toEqual({ kty: 'EC', crv: 'P-384', x: expect.any(String), y: expect.any(String), kid: expect.any(String), alg: 'ES384', use: 'sig' });
    expect(NEXT_PUBLIC).toEqual({ kty: 'RSA', n: expect.any(String), e: 'AQAB', kid: expect.any(String), alg: 'RS384', use: 'sig' });
    expect([...keys.keys()]).toEqual(['st-olaf', 'harbor']);
  });

  it('a key file without a kid is published under its RFC 7638 thumbprint', async () => {
    const { kid: _kid, ...noKid } = JSON.parse(readFileSync(CURRENT, 'utf8')) as Record<string, unknown>;
    await writeFile(path.join(dir, 'no-kid.jwk.json'), JSON.stringify(noKid));
    const keys = await loadOutboundKeys(networkOf(referrer('st-olaf', { privateKeyFile: 'no-kid.jwk.json' })), { keyBaseDir: dir });
    // The example kids are thumbprints too.
    expect(publishedKeySet(keys, T0)).toEqual({ keys: [CURRENT_PUBLIC] });
  });
});

describe('rotation windows', () => {
  // The whole procedure in one edit: the next key signs from day 7, the current one is published until day 14.
  const rotation = () => loadOutboundKeys(networkOf(referrer('st-olaf', { keys: [{ file: CURRENT, retireAfter: '2027-03-15T00:00:00Z' }, { file: NEXT, signFrom: '2027-03-08T00:00:00Z' }] })));

  it('publishes the next key before it signs, signs with it from signFrom, drops the old key after retireAfter', async () => {
    const keys = await rotation();
    const own = keys.get('st-olaf')!;
    const at = (ms: number) => ({ published: kids(keys, ms), signs: signingKeyAt(own, ms)?.kid });
    expect(at(T0)).toEqual({ published: [CURRENT_PUBLIC.kid, NEXT_PUBLIC.kid], signs: CURRENT_PUBLIC.kid });
    expect(at(T0 + 7 * DAY - 1)).toEqual({ published: [CURRENT_PUBLIC.kid, NEXT_PUBLIC.kid], signs: CURRENT_PUBLIC.kid });
    expect(at(T0 + 7 * DAY)).toEqual({ published: [CURRENT_PUBLIC.kid, NEXT_PUBLIC.kid], signs: NEXT_PUBLIC.kid });
    expect(at(T0 + 14 * DAY)).toEqual({ published: [CURRENT_PUBLIC.kid, NEXT_PUBLIC.kid], signs: NEXT_PUBLIC.kid });
    expect(at(T0 + 14 * DAY + 1)).toEqual({ published: [NEXT_PUBLIC.kid], signs: NEXT_PUBLIC.kid });
  });

  it('the newest key that may sign signs: latest signFrom, on a tie the one listed last; none once all retired', async () => {
    const keys = await loadOutboundKeys(networkOf(referrer('st-olaf', { keys: [{ file: NEXT, retireAfter: '2027-03-02' }, { file: CURRENT, retireAfter: '2027-03-03' }] })));
    const own = keys.get('st-olaf')!;
    expect(signingKeyAt(own, T0)?.kid).toBe(CURRENT_PUBLIC.kid);
    expect(signingKeyAt(own, T0 + 1.5 * DAY)?.kid).toBe(CURRENT_PUBLIC.kid);
    expect(signingKeyAt(own, T0 + 3 * DAY)).toBeUndefined();
    expect(publishedKeySet(keys, T0 + 3 * DAY)).toEqual({ keys: [] });
  });

  it('the token source signs each assertion with the key of the moment (injected clock)', async () => {
    let now = T0;
    const signedWith: string[] = [];
    const fetch: typeof globalThis.fetch = async (input, init) => {
      const url = String(input);
      if (url === 'https://st-olaf.test/token') {
        signedWith.push(decodeProtectedHeader(new URLSearchParams(String(init?.body)).get('client_assertion')!).kid as string);
        return Response.json({ access_token: `at-${signedWith.length}`, token_type: 'bearer', expires_in: 300 });
      }
      return Response.json({ resourceType: 'Patient', id: '1' }, { headers: { 'content-type': 'application/fhir+json' } });
    };
    const network = networkOf(referrer('st-olaf', { tokenUrl: 'https://st-olaf.test/token', clientId: 'so', keys: [{ file: CURRENT, retireAfter: '2027-03-15' }, { file: NEXT, signFrom: '2027-03-08' }] }));
    const client = (await createParticipantFhirClients(network, { keys: await loadOutboundKeys(network), fetch, now: () => now })).get('st-olaf')!;
    for (const day of [0, 7, 20]) {
      now = T0 + day * DAY;
      await client.read('Patient', '1');
    }
    expect(signedWith).toEqual([CURRENT_PUBLIC.kid, NEXT_PUBLIC.kid, NEXT_PUBLIC.kid]);
  });

  it('start-up stops when no key of an EHR may sign yet', async () => {
    const network = networkOf(referrer('st-olaf', { tokenUrl: 'https://st-olaf.test/token', clientId: 'so', keys: [{ file: NEXT, signFrom: '2027-03-08' }] }));
    await expect(createParticipantFhirClients(network, { now: () => T0 })).rejects.toThrow(
      'participant st-olaf: no key of fhir.keys may sign now (every signFrom is still ahead, or every key is past its retireAfter)',
    );
  });
});

describe('start-up refuses keys it cannot publish or tell apart, naming the entry', () => {
  it('a key file that does not load', async () => {
    const missing = path.join(dir, 'missing.jwk.json');
    await expect(loadOutboundKeys(networkOf(referrer('st-olaf', { keys: [{ file: CURRENT }, { file: missing }] })))).rejects.toThrow(`participant st-olaf: cannot use fhir.keys[1].file ${missing}: ENOENT`);
    await writeFile(path.join(dir, 'public.jwk.json'), JSON.stringify(CURRENT_PUBLIC));
    await expect(loadOutboundKeys(networkOf(referrer('st-olaf', { keys: [{ file: 'public.jwk.json' }] })), { keyBaseDir: dir })).rejects.toThrow(
      `participant st-olaf: cannot use fhir.keys[0].file ${path.join(dir, 'public.jwk.json')}: the JWK has no private part`,
    );
  });

  it('two keys of one EHR with the same kid', async () => {
    await writeFile(path.join(dir, 'copy.jwk.json'), readFileSync(CURRENT));
    await expect(loadOutboundKeys(networkOf(referrer('st-olaf', { keys: [{ file: CURRENT }, { file: 'copy.jwk.json' }] })), { keyBaseDir: dir })).rejects.toThrow(
      `participant st-olaf fhir.keys[1]: kid "${CURRENT_PUBLIC.kid}" is also fhir.keys[0]'s: each key of an EHR needs its own kid`,
    );
  });

  it('one kid naming two different keys in the network', async () => {
    const impostor = { ...(JSON.parse(readFileSync(NEXT, 'utf8')) as Record<string, unknown>), kid: CURRENT_PUBLIC.kid };
    await writeFile(path.join(dir, 'impostor.jwk.json'), JSON.stringify(impostor));
    await expect(loadOutboundKeys(networkOf(referrer('st-olaf', { privateKeyFile: CURRENT }), referrer('harbor', { keys: [{ file: 'impostor.jwk.json' }] })), { keyBaseDir: dir })).rejects.toThrow(
      `participant harbor fhir.keys[0]: kid "${CURRENT_PUBLIC.kid}" already names another key (participant st-olaf fhir.privateKeyFile): the published key set could not tell them apart`,
    );
  });
});
