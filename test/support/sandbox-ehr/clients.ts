/**
 * Sandbox EHR configuration: the client systems its token endpoint accepts by default.
 *
 * The default client is this service's outbound client (`second-opinion-service`); its EXAMPLE
 * private key is committed at examples/keys/service-outbound.private.jwk.json (never use it in
 * production) and only the public half below is registered with the sandbox.
 */
import type { JSONWebKeySet } from 'jose';

/** A client system registered with the sandbox's token endpoint (SMART Backend Services). */
export interface SandboxClient {
  clientId: string;
  /** Public keys the client's assertions are verified with (RS384 or ES384). */
  jwks: JSONWebKeySet;
  /** Scope granted when the request names none; default `system/*.rs`. */
  scope?: string;
}

/** The service's outbound client id, as the referring EHR knows it. */
export const SERVICE_OUTBOUND_CLIENT_ID = 'second-opinion-service';

/** Path of the service's EXAMPLE outbound private key, relative to the repository root. */
export const SERVICE_OUTBOUND_KEY_FILE = 'examples/keys/service-outbound.private.jwk.json';

/** Public half of examples/keys/service-outbound.private.jwk.json. */
export const SERVICE_OUTBOUND_PUBLIC_JWK = {
  kty: 'EC',
  crv: 'P-384',
  x: 'lQm8fiAT6ijcHo91RFZqtD7Lr5_iInEHvUdibTHjiW17xFZ0tCncVDFTiTazDpfV',
  y: '07Kv3kTYWCK31R1jOvmJSqeUnzGO2dgfxZQCshmL72J7yNN9uDPA0rPMRGuLk3Ud',
  kid: '3x66w7uI91gmY2LEF3o4BGXfG0__BBLjfr4xAWhY9YE',
  alg: 'ES384',
  use: 'sig',
} as const;

/** The clients the sandbox accepts when `startSandboxEhr` is given none. */
export function defaultSandboxClients(): SandboxClient[] {
  return [{ clientId: SERVICE_OUTBOUND_CLIENT_ID, jwks: { keys: [{ ...SERVICE_OUTBOUND_PUBLIC_JWK }] } }];
}
