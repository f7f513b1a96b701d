import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Config } from '../config/config.ts';
import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';

/** The algorithms this service signs and verifies with (the two SMART names). */
export type SigningAlg = 'ES384' | 'RS384';

/** The service's own key: signs access tokens, published at `/.well-known/jwks.json`. */
export interface ServiceSigningKey {
  alg: SigningAlg;
  kid: string;
  privateKey: CryptoKey;
  /** The public half, imported once so verification on every request needs no import. */
  publicKey: CryptoKey;
  /** Public JWK with `kid`, `alg` and `use: "sig"`; no private members. */
  publicJwk: JWK;
}

export class SigningKeyError extends Error {
  readonly file: string;

  constructor(file: string, problem: string) {
    super(`Signing key ${file}: ${problem}`);
    this.name = 'SigningKeyError';
    this.file = file;
  }

  /** The message names the file and what is wrong with it, never the key's contents. */
  [LOG_FIELDS](): LogFields {
    return { message: this.message };
  }
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/**
 * Loads the service's private signing key (a JWK, ES384 or RS384) from `config.signingKeyFile`.
 * When no SIGNING_KEY_FILE was configured (`config.signingKeyGenerated`) and the file does not
 * exist yet, generates an ES384 key there (mode 0600) so `npm start` works with no setup.
 * A configured file that is missing is an error: production must not silently get a fresh key.
 */
export async function loadSigningKey(config: Pick<Config, 'signingKeyFile' | 'signingKeyGenerated'>): Promise<ServiceSigningKey> {
  const file = path.resolve(config.signingKeyFile);
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new SigningKeyError(file, `cannot be read (${code ?? 'unknown error'})`);
    if (!config.signingKeyGenerated) throw new SigningKeyError(file, 'file not found');
  }
  if (text === undefined) text = await generateKeyFile(file);

  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch {
    throw new SigningKeyError(file, 'not valid JSON');
  }
  return importSigningKey(jwk, file);
}

/** Turns a private JWK into a ServiceSigningKey; `source` names it in errors. */
export async function importSigningKey(jwk: JWK, source = 'signing key'): Promise<ServiceSigningKey> {
  if (typeof jwk !== 'object' || jwk === null) throw new SigningKeyError(source, 'must be a JWK object');
  let alg: SigningAlg;
  if (jwk.kty === 'EC' && jwk.crv === 'P-384') alg = 'ES384';
  else if (jwk.kty === 'RSA') alg = 'RS384';
  else throw new SigningKeyError(source, 'must be an EC P-384 (ES384) or RSA (RS384) key');
  if (jwk.alg !== undefined && jwk.alg !== alg) throw new SigningKeyError(source, `alg "${jwk.alg}" does not fit the key type; expected ${alg}`);
  if (typeof jwk.d !== 'string') throw new SigningKeyError(source, 'is not a private key (no "d")');

  const kid = typeof jwk.kid === 'string' && jwk.kid !== '' ? jwk.kid : await calculateJwkThumbprint(jwk, 'sha256');
  const publicJwk: JWK = Object.fromEntries(
    Object.entries(jwk).filter(([k]) => !PRIVATE_MEMBERS.includes(k) && !k.startsWith('_') && k !== 'key_ops' && k !== 'ext'),
  );
  Object.assign(publicJwk, { kid, alg, use: 'sig' });
  try {
    const privateKey = (await importJWK({ ...jwk, alg }, alg)) as CryptoKey;
    const publicKey = (await importJWK(publicJwk, alg)) as CryptoKey;
    return { alg, kid, privateKey, publicKey, publicJwk };
  } catch (err) {
    throw new SigningKeyError(source, `cannot be imported (${(err as Error).message})`);
  }
}

/** Generates an ES384 key into `file`; if another process won the race, reads its key instead. */
async function generateKeyFile(file: string): Promise<string> {
  const { privateKey } = await generateKeyPair('ES384', { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  const text = `${JSON.stringify({ ...jwk, kid, alg: 'ES384', use: 'sig' }, null, 2)}\n`;
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    await writeFile(file, text, { mode: 0o600, flag: 'wx' });
    return text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFile(file, 'utf8');
    throw new SigningKeyError(file, `cannot be written (${(err as NodeJS.ErrnoException).code ?? 'unknown error'})`);
  }
}
