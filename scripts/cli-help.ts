/**
 * What the try-it scripts (`npm run token`, `npm run try`) share: the example clients they can
 * sign for, and one-line errors instead of stack traces when the service or the sandbox is not
 * running.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { EXAMPLE_NETWORK_FILE } from '../src/network/network.ts';
import { EXAMPLE_KEYS_DIR } from '../test/support/tokens.ts';

/** A client of the example network whose EXAMPLE private key ships in examples/keys/. */
export interface ExampleClient {
  clientId: string;
  participant: string;
  roles: string[];
}

/** The example network's clients that have a key in examples/keys/, in the network file's order. */
export function exampleClients(): ExampleClient[] {
  const network = JSON.parse(readFileSync(EXAMPLE_NETWORK_FILE, 'utf8')) as { participants: { id: string; roles: string[]; clients: { clientId: string }[] }[] };
  return network.participants.flatMap((p) =>
    p.clients.filter((c) => existsSync(path.join(EXAMPLE_KEYS_DIR, `${c.clientId}.private.jwk.json`))).map((c) => ({ clientId: c.clientId, participant: p.id, roles: p.roles })),
  );
}

/** The client ids, one per line, with whom they act for. */
export function clientList(): string {
  return exampleClients()
    .map((c) => `  ${c.clientId.padEnd(26)} ${c.participant} (${c.roles.join(', ')})`)
    .join('\n');
}

/** True when `err` is fetch failing to connect (nothing listening, host unknown, refused). */
export function isUnreachable(err: unknown): boolean {
  return err instanceof TypeError && err.message === 'fetch failed';
}

/** Prints one line to stderr and exits with `code`. */
export function fail(line: string, code = 1): never {
  process.stderr.write(`${line}\n`);
  process.exit(code);
}

export const SERVICE_URL = (process.env.SERVICE_URL ?? 'http://localhost:8080').replace(/\/+$/, '');
export const SANDBOX_URL = (process.env.SANDBOX_URL ?? 'http://127.0.0.1:8090').replace(/\/+$/, '');

export const SERVICE_UNREACHABLE = `cannot reach ${SERVICE_URL}: is the service running? start it with npm start (or set SERVICE_URL)`;
export const SANDBOX_UNREACHABLE = `cannot reach the sandbox EHR at ${SANDBOX_URL}: start it with npm run sandbox (or set SANDBOX_URL)`;
