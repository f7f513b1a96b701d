import { calculateJwkThumbprint, type JWK } from 'jose';
import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';

/**
 * The keys shipped in examples/ (their private halves are published there), by RFC 7638 SHA-256
 * thumbprint of the public key, so a copy under any file name or `kid` is still recognised.
 * test/production-start.test.ts checks this list against the files in examples/keys/.
 */
export const EXAMPLE_KEY_THUMBPRINTS: ReadonlyMap<string, string> = new Map([
  ['RZPsHRtvnf7JP0q1Gdt14mBIbFq-vGXLHEM2ppOfL4I', 'audit-office-siem'],
  ['ntU0F5iJoymROHpD09eCyISPtoaQPep5npPsNIlj808', 'operations-monitor'],
  ['sFqcah3dv0v6NJx2Kj2TyKMKRzi1EYit7KOBi3Wyrd8', 'lakeside-worklist'],
  ['1MG2Kor6QPgzC-Hrdh9u42uCQyA1GkDnc6p6SHcyBOo', 'northfield-lis'],
  ['jH_4VPvw93qT2Aumgyj2uUUNJFFJpMKdmMpFM0C-oDc', 'riverside-pacs'],
  ['fGo_0Yo4w9YY2rvNI171YiUKqUXTDxxyQdgg0pES5H4', 'service-outbound-next'],
  ['3x66w7uI91gmY2LEF3o4BGXfG0__BBLjfr4xAWhY9YE', 'service-outbound'],
  ['jEDt9aue7Bq5bpziqXH96WCoHXu-u4HDxeFydBoLfGg', 'st-olaf-ehr'],
  ['uFhGktQOKD_x5AnWW44eOdoJISHDxQo6rFWXIIrR5uo', 'st-olaf-physician-portal'],
]);

/** A key in use and where it is configured (`SIGNING_KEY_FILE`, a network file entry). */
export interface KeyInUse {
  where: string;
  jwk: JWK;
}

/** Start-up refusal: example keys configured with NODE_ENV=production. */
export class ExampleKeyError extends Error {
  readonly found: readonly string[];

  constructor(found: readonly string[]) {
    super(
      `NODE_ENV=production refuses the EXAMPLE keys shipped in examples/keys/ (their private halves are public):\n${found.map((f) => `  - ${f}`).join('\n')}\n` +
        'Make your own keys with `npm run keys` and register their public halves in your network file.',
    );
    this.name = 'ExampleKeyError';
    this.found = found;
  }

  /** Names where each example key is configured and which example it is; never key material. */
  [LOG_FIELDS](): LogFields {
    return { message: this.message };
  }
}

/** The keys among `keys` that are example keys, as "<where>: the example key of <name>". */
export async function findExampleKeys(keys: readonly KeyInUse[]): Promise<string[]> {
  const found: string[] = [];
  for (const { where, jwk } of keys) {
    let thumbprint: string;
    try {
      thumbprint = await calculateJwkThumbprint(jwk, 'sha256');
    } catch {
      continue; // not a key jose can fingerprint: the loaders report it
    }
    const name = EXAMPLE_KEY_THUMBPRINTS.get(thumbprint);
    if (name) found.push(`${where}: the example key of ${name}`);
  }
  return found;
}
