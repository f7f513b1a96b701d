import { createPrivateKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';
import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';
import { EXAMPLE_NETWORK_FILE, type Network } from '../network/network.ts';
import { splitScopes } from '../auth/scopes.ts';
import { createFhirClient, type FhirClient } from './fhir-client.ts';
import { DEFAULT_OUTBOUND_SCOPE, missingOutboundScopes } from './outbound-scope.ts';
import { createSmartTokenSource, type SmartAlg, type TokenSource } from './smart-token-source.ts';

export interface ParticipantFhirClientOptions {
  /** Directory `privateKeyFile` paths are relative to: the network file's directory. Default: cwd. */
  keyBaseDir?: string;
  /** Timeout for participants whose `fhir` block sets none. Default 30 s. */
  defaultTimeoutMs?: number;
  /** Used when a participant's `fhir` block names no `scope`. */
  defaultScope?: string;
  /**
   * Told when a participant's scope leaves out something the service needs there
   * (outbound-scope.ts): the requested scope, at start-up; the granted scope, when a token
   * arrives (reported again only when what is missing changes).
   */
  onScopeReport?: (report: ScopeReport) => void;
  fetch?: typeof globalThis.fetch;
  now?: () => number;
}

export interface ScopeReport {
  participantId: string;
  stage: 'requested' | 'granted';
  /** `system/<Type>.<letter>` the service needs and the scope lacks. */
  missing: readonly string[];
}

/** A private key ready to sign client assertions. */
export interface ClientAssertionKey {
  key: KeyObject;
  alg: SmartAlg;
  /** The JWK's own `kid`, or the RFC 7638 thumbprint of the public key. */
  kid: string;
}

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

export const DEFAULT_OUTBOUND_TIMEOUT_MS = 30_000;

/**
 * The directory participants' `fhir.privateKeyFile` paths are relative to: the network file's
 * (NETWORK_FILE), or the repository root for the shipped example network (its keys live in
 * examples/keys). The service and the connection check read keys the same way.
 */
export function outboundKeyBaseDir(networkFile: string | undefined): string {
  return networkFile ? path.dirname(path.resolve(networkFile)) : path.resolve(path.dirname(EXAMPLE_NETWORK_FILE), '..');
}

/**
 * One FHIR client per participant that has a `fhir` block, keyed by participant id. Keys are read
 * once here, at start-up, so a missing or malformed key fails the boot rather than the first job.
 * A participant without `tokenUrl` gets a client that sends no Authorization (sandbox EHRs).
 */
export async function createParticipantFhirClients(network: Pick<Network, 'participants'>, options: ParticipantFhirClientOptions = {}): Promise<Map<string, FhirClient>> {
  const clients = new Map<string, FhirClient>();
  for (const participant of network.participants) {
    const fhir = participant.fhir;
    if (!fhir) continue;
    const timeoutMs = fhir.timeoutMs ?? options.defaultTimeoutMs ?? DEFAULT_OUTBOUND_TIMEOUT_MS;
    let tokenSource: TokenSource | undefined;
    if (fhir.tokenUrl) {
      if (!fhir.clientId || !fhir.privateKeyFile) throw new OutboundKeyError(`participant ${participant.id}: fhir.tokenUrl needs clientId and privateKeyFile`);
      const file = path.resolve(options.keyBaseDir ?? process.cwd(), fhir.privateKeyFile);
      const signing = await loadClientAssertionKey(file).catch((err: unknown) => {
        throw new OutboundKeyError(`participant ${participant.id}: cannot use fhir.privateKeyFile ${file}: ${keyProblem(err)}`);
      });
      const scope = fhir.scope ?? options.defaultScope ?? DEFAULT_OUTBOUND_SCOPE;
      const requestedMissing = missingOutboundScopes(splitScopes(scope));
      if (requestedMissing.length > 0) options.onScopeReport?.({ participantId: participant.id, stage: 'requested', missing: requestedMissing });
      let lastGrantedMissing = '';
      tokenSource = createSmartTokenSource({
        tokenUrl: fhir.tokenUrl,
        clientId: fhir.clientId,
        scope,
        onGranted: (granted) => {
          const missing = missingOutboundScopes(granted);
          const key = missing.join(' ');
          if (key === lastGrantedMissing) return;
          lastGrantedMissing = key;
          if (missing.length > 0) options.onScopeReport?.({ participantId: participant.id, stage: 'granted', missing });
        },
        privateKey: signing.key,
        alg: signing.alg,
        kid: signing.kid,
        timeoutMs,
        ...(options.fetch ? { fetch: options.fetch } : {}),
        ...(options.now ? { now: options.now } : {}),
      });
    }
    clients.set(participant.id, createFhirClient({ baseUrl: fhir.baseUrl, timeoutMs, ...(tokenSource ? { tokenSource } : {}) }, options.fetch ? { fetch: options.fetch } : {}));
  }
  return clients;
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
  const kid = typeof jwk?.kid === 'string' && jwk.kid !== '' ? jwk.kid : await publicThumbprint(key);
  return { key, alg, kid };
}

/** Why a key file failed, without quoting it: our own reason, the system error code, or a fixed text. */
function keyProblem(err: unknown): string {
  if (err instanceof OutboundKeyError) return err.message;
  if (err instanceof SyntaxError) return 'not valid JSON';
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'not a usable private key';
}

async function publicThumbprint(key: KeyObject): Promise<string> {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = await exportJWK(key);
  return calculateJwkThumbprint(pub);
}
