import { readFileSync } from 'node:fs';
import path from 'node:path';

const NETWORK = JSON.parse(readFileSync(path.join(import.meta.dirname, '..', '..', 'examples', 'network.json'), 'utf8')) as {
  participants: { id: string; clients: { clientId: string }[] }[];
};

/** The client id of a participant in the shipped example network. */
export function clientIdOf(participantId: string): string {
  const p = NETWORK.participants.find((x) => x.id === participantId);
  const clientId = p?.clients[0]?.clientId;
  if (!clientId) throw new Error(`example network has no client for ${participantId}`);
  return clientId;
}
