/**
 * What the benches hand the service they measure: its environment (config keys of
 * src/config/config.ts) and a sandbox token signed as the service signs its own.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from '../../../test/support/sandbox-ehr/clients.ts';
import { CLIENT_ASSERTION_TYPE, signClientAssertion } from '../../../test/support/tokens.ts';
import { BENCH_LIMITS_ENV } from '../limits.ts';

const ROOT = path.join(import.meta.dirname, '..', '..', '..');

export interface ServiceEnvOptions {
  port: number;
  dataDir: string;
  /** PostgreSQL; absent: the service's embedded PGlite in `dataDir`. */
  databaseUrl?: string;
  logLevel: 'silent' | 'warn' | 'info';
  networkFile?: string;
}

/** The service's environment for a bench: development mode on 127.0.0.1, abuse limits off. */
export function serviceEnv(o: ServiceEnvOptions): Record<string, string> {
  return {
    NODE_ENV: 'development',
    HOST: '127.0.0.1',
    PORT: String(o.port),
    PUBLIC_URL: `http://127.0.0.1:${o.port}`, // the token audience
    DATA_DIR: o.dataDir, // the generated signing key goes here
    ...(o.databaseUrl ? { DATABASE_URL: o.databaseUrl } : {}),
    LOG_LEVEL: o.logLevel,
    ...(o.networkFile ? { NETWORK_FILE: o.networkFile } : {}),
    ...BENCH_LIMITS_ENV,
  };
}

/** `process.env` with `env` over it, less what would change the measured process or its config. */
export function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const key of ['SIGNING_KEY_FILE', 'DATABASE_POOL_SIZE', 'NODE_OPTIONS']) delete out[key];
  if (!env.NETWORK_FILE) delete out.NETWORK_FILE; // the shipped example network
  if (!env.DATABASE_URL) delete out.DATABASE_URL; // PGlite
  return out;
}

/** A sandbox access token, signed with the service's outbound example key as the service does. */
export async function sandboxToken(tokenUrl: string): Promise<string> {
  const jwk = JSON.parse(readFileSync(path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), 'utf8')) as Record<string, unknown>;
  delete jwk._comment;
  const assertion = await signClientAssertion({ clientId: SERVICE_OUTBOUND_CLIENT_ID, privateJwk: jwk, tokenUrl });
  const res = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion }).toString(),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!res.ok || !body.access_token) throw new Error(`sandbox token: HTTP ${res.status}`);
  return body.access_token;
}
