/**
 * `npm run keys`: makes the keys of a production deployment, writes each private key to its own
 * file (mode 0600, never overwritten) and prints what goes where.
 *
 *   npm run keys                                   # the service's signing key: ./keys/signing-key.private.jwk.json
 *   npm run keys -- --out /etc/second-opinion     # elsewhere
 *   npm run keys -- --outbound                    # also the service's outbound key (client assertions to EHRs)
 *   npm run keys -- --client st-olaf-ehr          # also a client key pair for a participant's system
 *   npm run keys -- --alg RS384                   # RSA instead of EC P-384 (default ES384)
 *
 * The signing key signs the service's access tokens (SIGNING_KEY_FILE). The outbound key signs
 * the service's client assertions to an EHR (a referrer's `fhir.privateKeyFile` in the network
 * file; the EHR trusts its public half through the service's `/.well-known/client-jwks.json`). A
 * client key pair belongs to the participant's system: it keeps the private key, the network file
 * registers only the printed public JWK. Keys shipped in examples/ are refused with
 * NODE_ENV=production: use these instead.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';

const USAGE = `usage: npm run keys -- [--out DIR] [--alg ES384|RS384] [--outbound] [--client CLIENT_ID]...
  --out DIR         where the private key files go (default ./keys); existing files are never overwritten
  --alg ALG         ES384 (default) or RS384
  --outbound        also make the service's outbound key (signs its client assertions to EHRs)
  --client ID       also make a client key pair for a participant's system (repeatable)`;

type Alg = 'ES384' | 'RS384';

async function makeKey(alg: Alg): Promise<{ privateJwk: JWK; publicJwk: JWK; kid: string }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS384' ? { modulusLength: 3072 } : {}) });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, 'sha256');
  return { privateJwk: { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' }, publicJwk: { ...pub, kid, alg, use: 'sig' }, kid };
}

async function writePrivate(file: string, jwk: JWK): Promise<void> {
  try {
    await writeFile(file, `${JSON.stringify(jwk, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`${file} exists already: not overwritten (move it away or choose another --out)`);
    throw err;
  }
}

export async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({ args: argv, options: { out: { type: 'string', default: 'keys' }, alg: { type: 'string', default: 'ES384' }, outbound: { type: 'boolean', default: false }, client: { type: 'string', multiple: true, default: [] }, help: { type: 'boolean', short: 'h', default: false } }, strict: true });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values } = args;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.alg !== 'ES384' && values.alg !== 'RS384') {
    process.stderr.write(`--alg must be ES384 or RS384, not ${values.alg}\n${USAGE}\n`);
    return 2;
  }
  const alg: Alg = values.alg;
  const badClient = values.client.find((c) => !/^[A-Za-z0-9._-]+$/.test(c));
  if (badClient !== undefined) {
    process.stderr.write(`--client ${badClient}: a client id is letters, digits, ".", "_" and "-"\n`);
    return 2;
  }
  const dir = path.resolve(values.out);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const out: string[] = [];
  try {
    const signing = await makeKey(alg);
    const signingFile = path.join(dir, 'signing-key.private.jwk.json');
    await writePrivate(signingFile, signing.privateJwk);
    out.push(`Signing key (kid ${signing.kid}) written to ${signingFile}`, 'Configure the service with:', `  SIGNING_KEY_FILE=${signingFile}`, '');
    if (values.outbound) {
      const outbound = await makeKey(alg);
      const file = path.join(dir, 'outbound.private.jwk.json');
      await writePrivate(file, outbound.privateJwk);
      out.push(
        `Outbound key (kid ${outbound.kid}) written to ${file}`,
        'In the network file, the "fhir" block of each referrer EHR the service calls:',
        `  "privateKeyFile": ${JSON.stringify(file)}`,
        'The EHR registers the service\'s client JWK Set URL, <PUBLIC_URL>/.well-known/client-jwks.json, which publishes its public half.',
        '',
      );
    }
    for (const clientId of values.client) {
      const client = await makeKey(alg);
      const file = path.join(dir, `${clientId}.private.jwk.json`);
      await writePrivate(file, client.privateJwk);
      out.push(
        `Client key pair of ${clientId} (kid ${client.kid}): the private key, for that system only, written to ${file}`,
        `In the network file, the participant's "clients" list:`,
        JSON.stringify({ clientId, jwks: { keys: [client.publicJwk] } }, null, 2)
          .split('\n')
          .map((l) => `  ${l}`)
          .join('\n'),
        '',
      );
    }
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(`${out.join('\n')}`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  process.exitCode = await main(process.argv.slice(2));
}
