import path from 'node:path';
import { EXAMPLE_NETWORK_FILE, type Network } from '../network/network.ts';
import { splitScopes } from '../auth/scopes.ts';
import { createFhirClient, type FhirClient } from './fhir-client.ts';
import { missingOutboundScopes, outboundScope } from './outbound-scope.ts';
import { loadOutboundKeys, OutboundKeyError, signingKeyAt, type OutboundKeys } from './outbound-keys.ts';
import type { OutageNotices } from './outage-notices.ts';
import { createSmartTokenSource, type TokenSource } from './smart-token-source.ts';

export { loadClientAssertionKey, OutboundKeyError, type ClientAssertionKey } from './outbound-keys.ts';

export interface ParticipantFhirClientOptions {
  /** Directory `privateKeyFile` paths are relative to: the network file's directory. Default: cwd. */
  keyBaseDir?: string;
  /** The outbound keys, already loaded (the service also publishes them); loaded from the network otherwise. */
  keys?: OutboundKeys;
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
  /** Told when a participant's server stops or starts answering (outage-notices.ts). */
  outages?: Pick<OutageNotices, 'failed' | 'answered'>;
}

export interface ScopeReport {
  participantId: string;
  stage: 'requested' | 'granted';
  /** `system/<Type>.<letter>` the service needs and the scope lacks. */
  missing: readonly string[];
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
 * once, at start-up (here, unless `options.keys` brings them), so a missing or malformed key, or
 * an EHR with no key that may sign now, fails the boot rather than the first job. Each client
 * assertion is signed by the key of the moment (outbound-keys.ts: rotation by date).
 * A participant without `tokenUrl` gets a client that sends no Authorization (sandbox EHRs).
 */
export async function createParticipantFhirClients(network: Pick<Network, 'participants'>, options: ParticipantFhirClientOptions = {}): Promise<Map<string, FhirClient>> {
  const clients = new Map<string, FhirClient>();
  const keys = options.keys ?? (await loadOutboundKeys(network, options.keyBaseDir !== undefined ? { keyBaseDir: options.keyBaseDir } : {}));
  const now = options.now ?? Date.now;
  for (const participant of network.participants) {
    const fhir = participant.fhir;
    if (!fhir) continue;
    const timeoutMs = fhir.timeoutMs ?? options.defaultTimeoutMs ?? DEFAULT_OUTBOUND_TIMEOUT_MS;
    let tokenSource: TokenSource | undefined;
    if (fhir.tokenUrl) {
      const own = keys.get(participant.id) ?? [];
      if (!fhir.clientId || own.length === 0) throw new OutboundKeyError(`participant ${participant.id}: fhir.tokenUrl needs clientId and privateKeyFile (or keys)`);
      // A key that may sign now, or the first token request would fail: say so at start-up.
      if (!signingKeyAt(own, now())) throw new OutboundKeyError(`participant ${participant.id}: no key of fhir.keys may sign now (every signFrom is still ahead, or every key is past its retireAfter)`);
      const currentKey = () => {
        const signing = signingKeyAt(own, now());
        if (!signing) throw new OutboundKeyError(`participant ${participant.id}: no key of fhir.keys may sign now (every key is past its retireAfter)`);
        return { privateKey: signing.key, alg: signing.alg, kid: signing.kid };
      };
      const settings = {
        ...(fhir.profiles ? { profiles: fhir.profiles } : {}),
        referrer: participant.roles.includes('referrer'),
        push: participant.recordSet === 'push',
      };
      const scope = fhir.scope ?? options.defaultScope ?? outboundScope(settings);
      const requestedMissing = missingOutboundScopes(splitScopes(scope), settings);
      if (requestedMissing.length > 0) options.onScopeReport?.({ participantId: participant.id, stage: 'requested', missing: requestedMissing });
      let lastGrantedMissing = '';
      tokenSource = createSmartTokenSource({
        tokenUrl: fhir.tokenUrl,
        clientId: fhir.clientId,
        scope,
        onGranted: (granted) => {
          const missing = missingOutboundScopes(granted, settings);
          const key = missing.join(' ');
          if (key === lastGrantedMissing) return;
          lastGrantedMissing = key;
          if (missing.length > 0) options.onScopeReport?.({ participantId: participant.id, stage: 'granted', missing });
        },
        currentKey,
        timeoutMs,
        ...(options.fetch ? { fetch: options.fetch } : {}),
        ...(options.now ? { now: options.now } : {}),
      });
    }
    const outages = options.outages;
    const observer = outages ? { answered: () => outages.answered(participant.id, fhir.baseUrl), failed: (err: unknown) => outages.failed(participant.id, fhir.baseUrl, err) } : undefined;
    clients.set(participant.id, createFhirClient({ baseUrl: fhir.baseUrl, timeoutMs, ...(tokenSource ? { tokenSource } : {}), ...(observer ? { observer } : {}) }, options.fetch ? { fetch: options.fetch } : {}));
  }
  return clients;
}
