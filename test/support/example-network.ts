import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from './sandbox-ehr/clients.ts';
import type { SandboxEhr } from './sandbox-ehr/server.ts';

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
