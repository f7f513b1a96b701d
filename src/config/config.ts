import path from 'node:path';
import { z } from 'zod';

/**
 * Every setting the service reads, as one zod schema over environment variables.
 * Read once at start-up (`loadConfig(process.env)`); every problem is listed at once.
 * The README's configuration table mirrors the `describe()` texts below.
 */
const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const EnvSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development').describe('`production` refuses to start without NETWORK_FILE and SIGNING_KEY_FILE'),
    PORT: z.coerce.number().int().min(0).max(65535).default(8080).describe('HTTP port'),
    HOST: z.string().min(1).default('0.0.0.0').describe('Interface to listen on'),
    PUBLIC_URL: z.url({ protocol: /^https?$/ }).optional().describe('Base URL clients use to reach the service (token audience, Location headers, Bundle links). Default http://localhost:PORT'),
    DATA_DIR: z.string().min(1).default('./data').describe('Directory of the embedded PGlite database and the generated development signing key'),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
      .optional()
      .describe('PostgreSQL connection string; when set, PostgreSQL is used instead of embedded PGlite'),
    DATABASE_POOL_SIZE: positiveInt(10).describe('PostgreSQL connection pool size'),
    NETWORK_FILE: z.string().min(1).optional().describe('JSON file listing the participants (organizations, roles, client keys, EHR endpoints). Default: the shipped example network'),
    SIGNING_KEY_FILE: z.string().min(1).optional().describe('Private JWK (ES384 or RS384) the service signs its access tokens with. Default: generated into DATA_DIR on first start'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino log level'),
    ACCESS_TOKEN_TTL_SECONDS: z.coerce.number().int().min(30).max(300).default(300).describe('Lifetime of access tokens issued by /auth/token (at most 300)'),
    DUE_DAYS_ROUTINE: positiveInt(7).describe('Days until a routine second opinion is due'),
    DUE_DAYS_URGENT: positiveInt(3).describe('Days until an urgent second opinion is due'),
    DUE_DAYS_ASAP: positiveInt(1).describe('Days until an asap second opinion is due'),
    BODY_LIMIT_BYTES: positiveInt(1_048_576).describe('Largest accepted JSON request body, in bytes'),
    SHUTDOWN_TIMEOUT_MS: positiveInt(10_000).describe('How long SIGTERM waits for in-flight requests before closing the store'),
    MAX_ATTACHMENT_BYTES: positiveInt(104_857_600).describe('Largest attachment record assembly stores, in bytes; a larger one is reported "too large" and left out of the record set'),
    DELIVERY_RETRY_LIMIT: positiveInt(30).describe('Retries of an opinion\'s post-back to the referring EHR before its Task says delivery failed'),
    DELIVERY_RETRY_DELAY_SECONDS: positiveInt(10).describe('First delay between post-back attempts; doubles each time (with jitter)'),
    DELIVERY_RETRY_MAX_DELAY_SECONDS: positiveInt(3600).describe('Longest delay between post-back attempts (with the defaults: about a day in all)'),
    DELIVERY_ATTEMPT_TIMEOUT_SECONDS: positiveInt(300).describe('Lease of one post-back attempt: an attempt still running after this (its process died or hung) counts as failed and is retried, possibly by another replica; keep it above 4 x the referrers\' fhir.timeoutMs (warned at start-up)'),
    JOB_SUPERVISE_INTERVAL_SECONDS: positiveInt(60).describe('How often the job queue looks for attempts whose lease ran out'),
    WEBHOOK_RETRY_LIMIT: positiveInt(20).describe('Retries of a webhook notification before it is given up (listed as a failed job)'),
    WEBHOOK_RETRY_DELAY_SECONDS: positiveInt(5).describe('First delay between webhook attempts; doubles each time (with jitter), up to an hour'),
    WEBHOOK_TIMEOUT_MS: positiveInt(5000).describe('Timeout of one webhook POST'),
    OVERDUE_SWEEP_INTERVAL_SECONDS: positiveInt(300).describe('How often open consult Tasks past their due date are marked overdue (business status)'),
    CONSENT_ATTESTATION_ALLOWED: z
      .enum(['true', 'false'])
      .default('false')
      .describe('`true` lets a request without a `consent` reference proceed when the referrer attests consent (`consentAttested: true`); off by default: records are disclosed only on a Consent read from the EHR'),
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV === 'production') {
      if (!env.NETWORK_FILE) ctx.addIssue({ code: 'custom', path: ['NETWORK_FILE'], message: 'is required when NODE_ENV=production (the example network is for trying the service only)' });
      if (!env.SIGNING_KEY_FILE) ctx.addIssue({ code: 'custom', path: ['SIGNING_KEY_FILE'], message: 'is required when NODE_ENV=production' });
    }
  });

export interface Config {
  nodeEnv: 'development' | 'production' | 'test';
  port: number;
  host: string;
  /** Base URL without trailing slash. */
  publicUrl: string;
  dataDir: string;
  databaseUrl?: string;
  databasePoolSize: number;
  networkFile?: string;
  signingKeyFile: string;
  /** True when no SIGNING_KEY_FILE was given: the key is generated into DATA_DIR. */
  signingKeyGenerated: boolean;
  logLevel: string;
  accessTokenTtlSeconds: number;
  dueDays: { routine: number; urgent: number; asap: number };
  bodyLimitBytes: number;
  shutdownTimeoutMs: number;
  /** Per-attachment limit of record assembly. */
  maxAttachmentBytes: number;
  consentAttestationAllowed: boolean;
  deliveryRetry: { retryLimit: number; retryDelaySeconds: number; retryDelayMaxSeconds: number };
  /** Lease of one delivery attempt, seconds. */
  deliveryAttemptTimeoutSeconds: number;
  jobSuperviseIntervalSeconds: number;
  webhook: { retryLimit: number; retryDelaySeconds: number; timeoutMs: number };
  overdueSweepIntervalSeconds: number;
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Parses the environment; throws ConfigError listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.') || 'environment'}: ${i.message}`));
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.DATA_DIR);
  return {
    nodeEnv: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST,
    publicUrl: (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, ''),
    dataDir,
    databaseUrl: e.DATABASE_URL,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    networkFile: e.NETWORK_FILE,
    signingKeyFile: e.SIGNING_KEY_FILE ?? path.join(dataDir, 'signing-key.json'),
    signingKeyGenerated: !e.SIGNING_KEY_FILE,
    logLevel: e.LOG_LEVEL,
    accessTokenTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
    dueDays: { routine: e.DUE_DAYS_ROUTINE, urgent: e.DUE_DAYS_URGENT, asap: e.DUE_DAYS_ASAP },
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    maxAttachmentBytes: e.MAX_ATTACHMENT_BYTES,
    consentAttestationAllowed: e.CONSENT_ATTESTATION_ALLOWED === 'true',
    deliveryRetry: { retryLimit: e.DELIVERY_RETRY_LIMIT, retryDelaySeconds: e.DELIVERY_RETRY_DELAY_SECONDS, retryDelayMaxSeconds: e.DELIVERY_RETRY_MAX_DELAY_SECONDS },
    deliveryAttemptTimeoutSeconds: e.DELIVERY_ATTEMPT_TIMEOUT_SECONDS,
    jobSuperviseIntervalSeconds: e.JOB_SUPERVISE_INTERVAL_SECONDS,
    webhook: { retryLimit: e.WEBHOOK_RETRY_LIMIT, retryDelaySeconds: e.WEBHOOK_RETRY_DELAY_SECONDS, timeoutMs: e.WEBHOOK_TIMEOUT_MS },
    overdueSweepIntervalSeconds: e.OVERDUE_SWEEP_INTERVAL_SECONDS,
  };
}

/** The documented settings, for the README table and `--help`. */
export function describeConfig(): { name: string; default: string; description: string }[] {
  return Object.entries(EnvSchema.shape as Record<string, z.ZodType>).map(([name, schema]) => {
    let def = '';
    const parsed = schema.safeParse(undefined);
    if (parsed.success && parsed.data !== undefined) def = String(parsed.data);
    return { name, default: def, description: schema.description ?? '' };
  });
}
