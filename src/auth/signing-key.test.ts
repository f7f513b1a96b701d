import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSigningKey } from './signing-key.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'signing-key-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadSigningKey', () => {
  it('generates an ES384 key into the data directory on first start (0600) and reuses it', async () => {
    const file = path.join(dir, 'data', 'nested', 'signing-key.json');
    const key = await loadSigningKey({ signingKeyFile: file, signingKeyGenerated: true });
    expect(key.alg).toBe('ES384');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const stored = JSON.parse(await readFile(file, 'utf8'));
    expect(stored).toMatchObject({ kty: 'EC', crv: 'P-384', alg: 'ES384', use: 'sig', kid: key.kid, d: expect.any(String) });
    expect(key.publicJwk).toEqual({ kty: 'EC', crv: 'P-384', x: stored.x, y: stored.y, kid: key.kid, alg: 'ES384', use: 'sig' });

    const again = await loadSigningKey({ signingKeyFile: file, signingKeyGenerated: true });
    expect(again.kid).toBe(key.kid);
    const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'ES384' }).sign(key.privateKey);
    await expect(jwtVerify(jwt, again.publicKey)).resolves.toBeDefined();
  });

  it('reads an RS384 key without kid, deriving the kid from the thumbprint', async () => {
    const { privateKey } = await generateKeyPair('RS384', { extractable: true });
    const jwk = await exportJWK(privateKey);
    const file = path.join(dir, 'rsa.json');
    await writeFile(file, JSON.stringify(jwk));
    const key = await loadSigningKey({ signingKeyFile: file, signingKeyGenerated: false });
    expect(key.alg).toBe('RS384');
    expect(key.kid).toBe(await calculateJwkThumbprint(jwk, 'sha256'));
    expect(Object.keys(key.publicJwk).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
  });

  it('refuses a configured file that is missing, a public key, or a key of another kind', async () => {
    const missing = path.join(dir, 'missing.json');
    await expect(loadSigningKey({ signingKeyFile: missing, signingKeyGenerated: false })).rejects.toThrow(`Signing key ${missing}: file not found`);

    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const pub = path.join(dir, 'public.json');
    await writeFile(pub, JSON.stringify({ ...(await exportJWK(publicKey)), crv: 'P-384' }));
    await expect(loadSigningKey({ signingKeyFile: pub, signingKeyGenerated: false })).rejects.toThrow(`Signing key ${pub}: is not a private key (no "d")`);

    const p256 = path.join(dir, 'p256.json');
    await writeFile(p256, JSON.stringify(await exportJWK(privateKey)));
    await expect(loadSigningKey({ signingKeyFile: p256, signingKeyGenerated: false })).rejects.toThrow(
      `Signing key ${p256}: must be an EC P-384 (ES384) or RSA (RS384) key`,
    );

    const notJson = path.join(dir, 'not.json');
    await writeFile(notJson, 'nope');
    await expect(loadSigningKey({ signingKeyFile: notJson, signingKeyGenerated: true })).rejects.toThrow(`Signing key ${notJson}: not valid JSON`);
  });
});
