import type { Config } from '../config/config.ts';
import type { ServiceMetrics } from '../metrics/metrics.ts';
import type { Logger } from '../log/logger.ts';
import type { Network } from '../network/network.ts';
import type { JtiStore } from './jti-store.ts';
import type { ServiceSigningKey } from './signing-key.ts';
import type { TokenLimits } from './token-limits.ts';

/** What the auth use cases, middleware and routes need; built once by createApp's caller. */
export interface AuthDeps {
  config: Pick<Config, 'publicUrl' | 'accessTokenTtlSeconds'>;
  network: Network;
  signingKey: ServiceSigningKey;
  jtiStore: JtiStore;
  /** The clock; tests pass a fixed one. */
  now?: () => Date;
  log: Logger;
  /** Rate limits and lockout of the token endpoint; none when absent (unit tests). */
  tokenLimits?: TokenLimits;
  /** Where issued tokens and refusals are counted. */
  metrics?: Pick<ServiceMetrics, 'tokenIssued' | 'tokenRefused'>;
}

/** The token endpoint URL: the `aud` every client assertion must carry. */
export function tokenEndpointUrl(config: Pick<Config, 'publicUrl'>): string {
  return `${config.publicUrl}/auth/token`;
}
