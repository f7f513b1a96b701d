/**
 * Generates the EXAMPLE client key pairs of the shipped example network and writes their public
 * halves into examples/network.json; and the service's own EXAMPLE outbound keys (the keys it
 * signs its client assertions to EHRs with, published at its client JWK Set URL, never written
 * into network.json).
 *
 *   npx tsx scripts/generate-example-keys.ts           # create missing keys, refresh network.json
 *   npx tsx scripts/generate-example-keys.ts --force   # replace every example key
 *
 * The private keys are committed on purpose (examples/keys/<clientId>.private.jwk.json) so anyone
 * can try the service; they are marked as examples and must never be used in production.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';

const examplesDir = fileURLToPath(new URL('../examples/', import.meta.url));
const keysDir = `${examplesDir}keys/`;
const networkFile = `${examplesDir}network.json`;

/** Which algorithm each example client signs with (both SMART algorithms are exercised). */
const CLIENTS: Record<string, 'ES384' | 'RS384'> = {
  'st-olaf-ehr': 'ES384',
  'lakeside-worklist': 'RS384',
  'northfield-lis': 'ES384',
  'riverside-pacs': 'ES384',
  'audit-office-siem': 'ES384',
  'st-olaf-physician-portal': 'ES384',
  'operations-monitor': 'ES384',
};

/** The service's outbound keys: the current one and the next, for key rotation. */
const OUTBOUND: Record<string, 'ES384' | 'RS384'> = {
  'service-outbound': 'ES384',
  'service-outbound-next': 'RS384',
};

export const EXAMPLE_KEY_COMMENT = 'EXAMPLE KEY – never use in production';
const PRIVATE_MEMBERS = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']);

async function main(): Promise<void> {
  const force = process.argv.includes('--force');
  await mkdir(keysDir, { recursive: true });
  const publicKeys = new Map<string, JWK>();

  for (const [clientId, alg] of Object.entries(CLIENTS)) {
    const jwk = await exampleKey(clientId, alg, force);
    publicKeys.set(clientId, Object.fromEntries(Object.entries(jwk).filter(([k]) => !PRIVATE_MEMBERS.has(k) && !k.startsWith('_'))) as JWK);
  }
  for (const [name, alg] of Object.entries(OUTBOUND)) await exampleKey(name, alg, force);

  const network = JSON.parse(await readFile(networkFile, 'utf8')) as {
    participants: { clients: { clientId: string; jwks?: { keys: JWK[] } }[] }[];
  };
  for (const participant of network.participants) {
    for (const client of participant.clients) {
      const key = publicKeys.get(client.clientId);
      if (key) client.jwks = { keys: [key] };
    }
  }
  await writeFile(networkFile, `${JSON.stringify(network, null, 2)}\n`);
  console.log(`updated public keys in ${networkFile}`);
}

/** The example key `examples/keys/<name>.private.jwk.json`, generated when missing (or with --force). */
async function exampleKey(name: string, alg: 'ES384' | 'RS384', force: boolean): Promise<JWK> {
  const file = `${keysDir}${name}.private.jwk.json`;
  if (!force && existsSync(file)) return JSON.parse(await readFile(file, 'utf8')) as JWK;
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS384' ? { modulusLength: 2048 } : {}) });
  const exported = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(exported, 'sha256');
  const jwk = { _comment: EXAMPLE_KEY_COMMENT, ...exported, kid, alg, use: 'sig' } as JWK;
  await writeFile(file, `${JSON.stringify(jwk, null, 2)}\n`, { mode: 0o644 });
  console.log(`wrote ${file}`);
  return jwk;
}

await main();
