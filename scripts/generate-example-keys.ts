/**
 * Generates the EXAMPLE client key pairs of the shipped example network and writes their public
 * halves into examples/network.json.
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
};

export const EXAMPLE_KEY_COMMENT = 'EXAMPLE KEY – never use in production';
const PRIVATE_MEMBERS = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']);

async function main(): Promise<void> {
  const force = process.argv.includes('--force');
  await mkdir(keysDir, { recursive: true });
  const publicKeys = new Map<string, JWK>();

  for (const [clientId, alg] of Object.entries(CLIENTS)) {
    const file = `${keysDir}${clientId}.private.jwk.json`;
    let jwk: JWK;
    if (!force && existsSync(file)) {
      jwk = JSON.parse(await readFile(file, 'utf8')) as JWK;
    } else {
      const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS384' ? { modulusLength: 2048 } : {}) });
      const exported = await exportJWK(privateKey);
      const kid = await calculateJwkThumbprint(exported, 'sha256');
      jwk = { _comment: EXAMPLE_KEY_COMMENT, ...exported, kid, alg, use: 'sig' } as JWK;
      await writeFile(file, `${JSON.stringify(jwk, null, 2)}\n`, { mode: 0o644 });
      console.log(`wrote ${file}`);
    }
    publicKeys.set(clientId, Object.fromEntries(Object.entries(jwk).filter(([k]) => !PRIVATE_MEMBERS.has(k) && !k.startsWith('_'))) as JWK);
  }

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

await main();
