import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { outboundScope } from '../../src/outbound/outbound-scope.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE, SERVICE_OUTBOUND_PUBLIC_JWK } from './sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './sandbox-ehr/server.ts';

const ROOT = path.join(import.meta.dirname, '..', '..');
const EXAMPLE_NETWORK = path.join(ROOT, 'examples', 'network.json');

export interface ExampleParticipant {
  id: string;
  clients: { clientId: string }[];
  fhir?: unknown;
  notify?: unknown;
  [key: string]: unknown;
}

const NETWORK = JSON.parse(readFileSync(EXAMPLE_NETWORK, 'utf8')) as { participants: ExampleParticipant[] };

/** The client id of a participant in the shipped example network. */
export function clientIdOf(participantId: string): string {
  const p = NETWORK.participants.find((x) => x.id === participantId);
  const clientId = p?.clients[0]?.clientId;
  if (!clientId) throw new Error(`example network has no client for ${participantId}`);
  return clientId;
}

/**
 * Writes a copy of the example network, its referrer (st-olaf) pointed at the sandbox EHR, into
 * a temp directory (or `dir`); `edit` changes participants further (webhooks, ...). Returns the file path.
 * Given the sandbox's `seeded` ids, the physician portal acts for the sandbox's practitioner
 * (the EHR's own id, as a real network file would name it).
 */
export async function writeSandboxNetwork(
  ehr: Pick<SandboxEhr, 'baseUrl' | 'tokenUrl'> & Partial<Pick<SandboxEhr, 'seeded'>>,
  options: {
    timeoutMs?: number;
    edit?: (byId: (id: string) => ExampleParticipant) => void;
    /** Participants to add to the example network (built from an existing one, e.g. a second referrer). */
    add?: (byId: (id: string) => ExampleParticipant) => ExampleParticipant[];
    /** Write into this directory instead of a new temp one. */
    dir?: string;
  } = {},
): Promise<string> {
  const network = JSON.parse(readFileSync(EXAMPLE_NETWORK, 'utf8')) as { participants: ExampleParticipant[] };
  const byId = (id: string) => {
    const found = network.participants.find((p) => p.id === id);
    if (!found) throw new Error(`example network lacks ${id}`);
    return found;
  };
  byId('st-olaf').fhir = { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: options.timeoutMs ?? 30_000 };
  if (ehr.seeded) {
    const physicians = byId('st-olaf-physicians') as ExampleParticipant & { actsFor: { practitioners: string[] } };
    physicians.actsFor.practitioners = [`Practitioner/${ehr.seeded.practitionerId}`];
  }
  options.edit?.(byId);
  network.participants.push(...(options.add?.(byId) ?? []));
  const file = path.join(options.dir ?? (await mkdtemp(path.join(tmpdir(), 'so-network-'))), 'network.json');
  await writeFile(file, JSON.stringify(network));
  return file;
}

/** The service's outbound connection to a sandbox FHIR server, as a network file names it. */
export function outboundTo(server: Pick<SandboxEhr, 'baseUrl' | 'tokenUrl'>, timeoutMs = 30_000) {
  return { baseUrl: server.baseUrl, tokenUrl: server.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs };
}

/**
 * A second sandbox FHIR server standing in for a clinic's own server, which accepts the record
 * sets the service pushes to it (the service's client holds only the push scopes there), and
 * the example network with `clinicId` set to `recordSet: push` to it and st-olaf pointed at `ehr`.
 */
export async function startPushClinic(ehr: Pick<SandboxEhr, 'baseUrl' | 'tokenUrl'>, clinicId: string, timeoutMs = 5_000): Promise<{ clinic: SandboxEhr; networkFile: string }> {
  const clinic = await startSandboxEhr({
    port: 0,
    storagePort: 0,
    clients: [{ clientId: SERVICE_OUTBOUND_CLIENT_ID, jwks: { keys: [{ ...SERVICE_OUTBOUND_PUBLIC_JWK }] }, scope: outboundScope({ referrer: false, push: true }) }],
  });
  const networkFile = await writeSandboxNetwork(
    { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl },
    { timeoutMs, edit: (byId) => Object.assign(byId(clinicId), { recordSet: 'push', fhir: outboundTo(clinic, timeoutMs) }) },
  );
  return { clinic, networkFile };
}
