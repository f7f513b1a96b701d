import { createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, type JSONWebKeySet, type JWK } from 'jose';
import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';
import { parseKeyDate, type Participant } from '../network/network-schema.ts';
import type { SmartAlg } from './smart-token-source.ts';

/**
 * The service's outbound client keys: the private keys it signs SMART Backend Services client
 * assertions with at each EHR, and the public halves it publishes at its client JWK Set URL
 * (`GET /.well-known/client-jwks.json`), which is how EHRs register a backend client
 * (https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html#registering-a-client-communicating-public-keys).
 *
 * Rotation: an EHR's `fhir.keys` may list several keys. A key is published from start-up until
 * its `retireAfter`; it may sign from its `signFrom` (or from the start) until it retires. The
 * key that signs is the newest that may: the latest `signFrom` (none counts as oldest), on a tie
 * the one listed last. So a new key is published before it signs, and the old one stays
 * published after it stops signing, until its date.
 */

/** A private key ready to sign client assertions. */
export interface ClientAssertionKey {
  key: KeyObject;
  alg: SmartAlg;
  /** The JWK's own `kid`, or the RFC 7638 thumbprint of the public key. */
  kid: string;
}

/** One configured outbound key with its rotation dates. */
export interface OutboundKey extends ClientAssertionKey {
  /** Public JWK: `kty`, `kid`, `use: "sig"`, `alg` and the public members only. */
  publicJwk: JWK;
  /** Epoch ms from which it may sign; undefined: from the start. */
  signFrom?: number;
  /** Epoch ms after which it is neither published nor used; undefined: never. */
  retireAfter?: number;
  /** The network entry it comes from, for messages: `fhir.keys[1]` or `fhir.privateKeyFile`. */
  entry: string;
}

/** The outbound keys of every participant (id -> keys in file order). */
export type OutboundKeys = ReadonlyMap<string, readonly OutboundKey[]>;

/**
 * A participant's outbound key cannot be used: start-up stops and says why. The message names
 * network entries and fixed text only, never what the key file holds (a JSON parse error
 * would quote it, private parts included), so logs may carry it.
 */
export class OutboundKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OutboundKeyError';
  }

  [LOG_FIELDS](): LogFields {
    return { message: this.message };
  }
}

/**
 * Reads every outbound key the network names (`fhir.privateKeyFile`, or each `fhir.keys[].file`,
 * relative to `keyBaseDir`), once, at start-up: a file that does not load, two entries of one
 * EHR with the same `kid`, or one `kid` naming two different keys anywhere in the network (the
 * published set could not tell them apart) stops start-up with a message naming the entries.
 */
export async function loadOutboundKeys(network: { participants: readonly Participant[] }, options: { keyBaseDir?: string } = {}): Promise<OutboundKeys> {
  const byParticipant = new Map<string, OutboundKey[]>();
  const kids = new Map<string, { thumbprint: string; where: string }>();
  for (const participant of network.participants) {
    const fhir = participant.fhir;
    if (!fhir) continue;
    const entries = fhir.keys
      ? fhir.keys.map((k, i) => ({ ...k, entry: `fhir.keys[${i}]`, what: `fhir.keys[${i}].file` }))
      : fhir.privateKeyFile
        ? [{ file: fhir.privateKeyFile, entry: 'fhir.privateKeyFile', what: 'fhir.privateKeyFile' }]
        : [];
    const keys: OutboundKey[] = [];
    for (const entry of entries) {
      const file = path.resolve(options.keyBaseDir ?? process.cwd(), entry.file);
      const loaded = await loadClientAssertionKey(file).catch((err: unknown) => {
        throw new OutboundKeyError(`participant ${participant.id}: cannot use ${entry.what} ${file}: ${keyProblem(err)}`);
      });
      const publicJwk = publicJwkOf(loaded);
      const thumbprint = await calculateJwkThumbprint(publicJwk);
      const where = `participant ${participant.id} ${entry.entry}`;
      const same = keys.find((k) => k.kid === loaded.kid);
      if (same) throw new OutboundKeyError(`${where}: kid "${loaded.kid}" is also ${same.entry}'s: each key of an EHR needs its own kid`);
      const seen = kids.get(loaded.kid);
      if (seen && seen.thumbprint !== thumbprint) throw new OutboundKeyError(`${where}: kid "${loaded.kid}" already names another key (${seen.where}): the published key set could not tell them apart`);
      if (!seen) kids.set(loaded.kid, { thumbprint, where });
      const signFrom = 'signFrom' in entry && entry.signFrom ? parseKeyDate(entry.signFrom) : undefined;
      const retireAfter = 'retireAfter' in entry && entry.retireAfter ? parseKeyDate(entry.retireAfter) : undefined;
      keys.push({ ...loaded, publicJwk, entry: entry.entry, ...(signFrom !== undefined ? { signFrom } : {}), ...(retireAfter !== undefined ? { retireAfter } : {}) });
    }
    if (keys.length > 0) byParticipant.set(participant.id, keys);
  }
  return byParticipant;
}

/** Whether `key` is published at `nowMs`: until its `retireAfter`. */
export function isPublished(key: OutboundKey, nowMs: number): boolean {
  return key.retireAfter === undefined || nowMs <= key.retireAfter;
}

/**
 * The key that signs at `nowMs`: of the keys published and past their `signFrom`, the one with
 * the latest `signFrom` (a key without one counts as the oldest), on a tie the one listed last.
 * Undefined when none may sign.
 */
export function signingKeyAt(keys: readonly OutboundKey[], nowMs: number): OutboundKey | undefined {
  let best: OutboundKey | undefined;
  for (const key of keys) {
    if (!isPublished(key, nowMs) || (key.signFrom !== undefined && nowMs < key.signFrom)) continue;
    if (!best || (key.signFrom ?? -Infinity) >= (best.signFrom ?? -Infinity)) best = key;
  }
  return best;
}

/**
 * The client JWK Set at `nowMs`: the public half of every key of every EHR that is published,
 * each `kid` once (one key may serve several EHRs), in file order.
 */
export function publishedKeySet(keys: OutboundKeys, nowMs: number): JSONWebKeySet {
  const out = new Map<string, JWK>();
  for (const list of keys.values()) for (const key of list) if (isPublished(key, nowMs) && !out.has(key.kid)) out.set(key.kid, key.publicJwk);
  return { keys: [...out.values()] };
}

/**
 * Reads a private key file: a JWK (JSON) or a PKCS#8/SEC1/PKCS#1 PEM. The algorithm follows from
 * the key (RSA → RS384, EC P-384 → ES384, the two SMART Backend Services requires servers to
 * support); a JWK `alg` that disagrees, or any other key type, is refused.
 */
export async function loadClientAssertionKey(file: string): Promise<ClientAssertionKey> {
  const text = await readFile(file, 'utf8');
  let key: KeyObject;
  let jwk: JWK | undefined;
  if (text.trimStart().startsWith('{')) {
    jwk = JSON.parse(text) as JWK;
    if (typeof jwk.d !== 'string') throw new OutboundKeyError('the JWK has no private part');
    key = createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } else {
    key = createPrivateKey(text);
  }
  let alg: SmartAlg;
  if (key.asymmetricKeyType === 'rsa') alg = 'RS384';
  else if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'secp384r1') alg = 'ES384';
  else throw new OutboundKeyError('the key must be RSA (RS384) or EC P-384 (ES384)');
  if (jwk?.alg && jwk.alg !== alg) throw new OutboundKeyError(`the JWK says alg ${String(jwk.alg).slice(0, 20)} but the key is for ${alg}`);
  const kid = typeof jwk?.kid === 'string' && jwk.kid !== '' ? jwk.kid : await calculateJwkThumbprint(bareKeyMembers(key));
  return { key, alg, kid };
}

/** The public JWK SMART asks for: `kty`, `kid`, `use`, `alg` and the key members (nothing private, nothing else). */
function publicJwkOf(key: ClientAssertionKey): JWK {
  return { ...bareKeyMembers(key.key), kid: key.kid, use: 'sig', alg: key.alg };
}

/** `kty` and the public members (`n`, `e` or `crv`, `x`, `y`) of a private key's public half. */
function bareKeyMembers(key: KeyObject): JWK {
  const { kty, n, e, crv, x, y } = createPublicKey(key).export({ format: 'jwk' });
  return (kty === 'RSA' ? { kty, n, e } : { kty, crv, x, y }) as JWK;
}

/** Why a key file failed, without quoting it: our own reason, the system error code, or a fixed text. */
function keyProblem(err: unknown): string {
  if (err instanceof OutboundKeyError) return err.message;
  if (err instanceof SyntaxError) return 'not valid JSON';
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'not a usable private key';
}
