import { isIP } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import type { AuditRetention } from '../audit/audit-archive.ts';
import type { TokenLimitSettings } from '../auth/token-limits.ts';
import type { BlobStoreSettings } from '../store/blob-backend.ts';
import type { Rate } from '../limits/rate-limiter.ts';

/** Connection limits of the HTTP server (HTTP_*_TIMEOUT_MS, HTTP_MAX_*). */
export interface HttpServerLimits {
  /** Time to receive a request's headers, from its first byte (or the connection's opening). */
  headersTimeoutMs: number;
  /** Time to receive a whole request, headers and body. */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection is kept after a response. */
  keepAliveTimeoutMs: number;
  /** Requests served on one connection before it is closed (`Connection: close`); 0 = no limit. */
  maxRequestsPerSocket: number;
  /** Open connections at most; further ones are closed at once; 0 = no limit. */
  maxConnections: number;
}

/**
 * Every setting the service reads, as one zod schema over environment variables.
 * Read once at start-up (`loadConfig(process.env)`); every problem is listed at once.
 * The configuration table in docs/configuration.md mirrors the `describe()` texts below.
 */
const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);
/** A limit where 0 switches it off. */
const limit = (fallback: number) => z.coerce.number().int().min(0).default(fallback);

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
    BLOB_STORE: z.enum(['files', 's3']).default('files').describe('Where attachment bytes are kept (the database keeps their metadata): `files` under BLOB_DIR, or `s3`, an S3-compatible bucket (for several replicas; BLOB_S3_*)'),
    BLOB_DIR: z.string().min(1).optional().describe('Directory of the `files` blob store. Default DATA_DIR/blobs'),
    BLOB_S3_BUCKET: z.string().min(1).optional().describe('Bucket of the `s3` blob store (required with BLOB_STORE=s3)'),
    BLOB_S3_PREFIX: z.string().regex(/^$|\/$/, 'must be empty or end with /').default('').describe('Key prefix in the bucket; objects go under PREFIX`blobs/`'),
    BLOB_S3_ENDPOINT: z.url({ protocol: /^https?$/ }).optional().describe('Endpoint of an S3-compatible server (MinIO, Ceph...). Default: AWS S3'),
    BLOB_S3_REGION: z.string().min(1).default('us-east-1').describe('Region of the bucket'),
    BLOB_S3_ACCESS_KEY_ID: z.string().min(1).optional().describe('Access key id; with BLOB_S3_SECRET_ACCESS_KEY. Default: the AWS SDK\'s credential chain (AWS_* variables, profile, instance role)'),
    BLOB_S3_SECRET_ACCESS_KEY: z.string().min(1).optional().describe('Secret access key; with BLOB_S3_ACCESS_KEY_ID'),
    BLOB_S3_FORCE_PATH_STYLE: z.enum(['true', 'false']).default('false').describe('`true` addresses the bucket in the path (`endpoint/bucket/key`), as most S3-compatible servers want'),
    BLOB_SWEEP_INTERVAL_SECONDS: positiveInt(3600).describe('How often bytes no blob row points at (a put that died midway) are looked for and deleted'),
    BLOB_SWEEP_AGE_SECONDS: positiveInt(86_400).describe('The sweep deletes such bytes only once they are this old; keep it well above the longest attachment download'),
    NETWORK_FILE: z.string().min(1).optional().describe('JSON file listing the participants (organizations, roles, client keys, EHR endpoints). Default: the shipped example network'),
    SIGNING_KEY_FILE: z.string().min(1).optional().describe('Private JWK (ES384 or RS384) the service signs its access tokens with. Default: generated into DATA_DIR on first start'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino log level'),
    ACCESS_TOKEN_TTL_SECONDS: z.coerce.number().int().min(30).max(300).default(300).describe('Lifetime of access tokens issued by /auth/token (at most 300)'),
    DUE_DAYS_ROUTINE: positiveInt(7).describe('Days until a routine second opinion is due'),
    DUE_DAYS_URGENT: positiveInt(3).describe('Days until an urgent second opinion is due'),
    DUE_DAYS_ASAP: positiveInt(1).describe('Days until an asap second opinion is due'),
    BODY_LIMIT_BYTES: positiveInt(1_048_576).describe('Largest accepted JSON request body, in bytes'),
    SHUTDOWN_TIMEOUT_SECONDS: positiveInt(10).describe('How long SIGTERM/SIGINT waits for in-flight requests and running jobs before the store is closed: requests still running then are cut, jobs still running are handed back to the queue (retried later, by any replica)'),
    MAX_ATTACHMENT_BYTES: positiveInt(104_857_600).describe('Largest attachment record assembly stores, in bytes; a larger one is reported "too large" and left out of the record set'),
    ATTACHMENT_CONCURRENCY: positiveInt(4).describe('Attachments one record assembly downloads from the referrer\'s EHR at the same time'),
    DELIVERY_RETRY_LIMIT: positiveInt(30).describe('Retries of an opinion\'s post-back to the referring EHR before its Task says delivery failed'),
    DELIVERY_RETRY_DELAY_SECONDS: positiveInt(10).describe('First delay between post-back attempts; doubles each time (with jitter)'),
    DELIVERY_RETRY_MAX_DELAY_SECONDS: positiveInt(3600).describe('Longest delay between post-back attempts (with the defaults: about a day in all)'),
    DELIVERY_CONCURRENCY: positiveInt(16).describe('Post-backs one replica runs at once (each makes one EHR call at a time); more when a burst of opinions waits for a worker, fewer when the referring EHRs limit concurrent calls'),
    DELIVERY_ATTEMPT_TIMEOUT_SECONDS: positiveInt(300).describe('Lease of one post-back attempt: an attempt still running after this (its process died or hung) counts as failed and is retried, possibly by another replica; keep it above 4 x the referrers\' fhir.timeoutMs (warned at start-up)'),
    ASSEMBLY_RETRY_DELAY_SECONDS: positiveInt(5).describe('First delay between record-assembly attempts after a failure (the EHR unreachable or answering 5xx); doubles each time (with jitter), up to ASSEMBLY_RETRY_MAX_DELAY_SECONDS, for 12 retries'),
    ASSEMBLY_RETRY_MAX_DELAY_SECONDS: positiveInt(3600).describe('Longest delay between record-assembly attempts (with the defaults: about three and a half hours in all before the Task fails)'),
    ASSEMBLY_ATTEMPT_TIMEOUT_SECONDS: positiveInt(900).describe('Lease of one record-assembly attempt: an attempt still running after this (its process died or hung) counts as failed and is retried, possibly by another replica; the referral waits that long after a crash, so keep it just above the longest assembly (downloads included)'),
    FOLLOW_UP_LIMIT: positiveInt(3).describe('Follow-up questions a referrer may ask one consultant after its opinion (a participant\'s `followUpLimit` in the network file overrides it for that consultant)'),
    FOLLOW_UP_WINDOW_DAYS: positiveInt(30).describe('Days after a consultant\'s opinion during which the referrer may ask it follow-up questions'),
    JOB_SUPERVISE_INTERVAL_SECONDS: positiveInt(60).describe('How often the job queue looks for attempts whose lease ran out'),
    WEBHOOK_RETRY_LIMIT: positiveInt(20).describe('Retries of a webhook notification before it is given up (listed as a failed job)'),
    WEBHOOK_RETRY_DELAY_SECONDS: positiveInt(5).describe('First delay between webhook attempts; doubles each time (with jitter), up to an hour'),
    WEBHOOK_TIMEOUT_MS: positiveInt(5000).describe('Timeout of one webhook POST (and Subscription notification); an attempt\'s lease is this plus 25 s'),
    SUBSCRIPTION_MIN_HEARTBEAT_SECONDS: positiveInt(60).describe('Shortest heartbeat period a FHIR Subscription may ask for (backport-heartbeat-period), in seconds'),
    SUBSCRIPTION_HEARTBEAT_SWEEP_SECONDS: positiveInt(10).describe('How often due Subscription heartbeats are queued'),
    AUDIT_RETENTION_YEARS: z.coerce.number().int().positive().optional().describe('How long AuditEvents are kept in the store, in years (default 6, as HIPAA expects for audit records); older ones are for `npm run audit:export`, which refuses a newer DATE without `--force`. Or AUDIT_RETENTION_DAYS, not both'),
    AUDIT_RETENTION_DAYS: z.coerce.number().int().positive().optional().describe('The audit retention in days instead of years (AUDIT_RETENTION_YEARS)'),
    AUDIT_RETENTION_CHECK_INTERVAL_SECONDS: positiveInt(3600).describe('How often each replica looks for AuditEvents older than the retention that were not exported yet (a warning in the log while there are some) and deletes coalescing windows of past minutes'),
    OVERDUE_SWEEP_INTERVAL_SECONDS: positiveInt(300).describe('How often open consult Tasks past their due date are marked overdue (business status)'),
    CONSENT_ATTESTATION_ALLOWED: z
      .enum(['true', 'false'])
      .default('false')
      .describe('`true` lets a request without a `consent` reference proceed when the referrer attests consent (`consentAttested: true`); off by default: records are disclosed only on a Consent read from the EHR'),
    CONSENT_RECHECK_SECONDS: z.coerce
      .number()
      .int()
      .min(0)
      .default(30)
      .describe("How long the referring EHR's Consent, found still active, is trusted before it is read again ahead of the next disclosure to a clinic (record-set and Binary reads, pushes); 0 reads it before every one"),
    TRUST_PROXY: z
      .string()
      .default('false')
      .transform((raw, ctx) => {
        const parsed = parseTrustProxy(raw);
        if (typeof parsed === 'string') {
          ctx.addIssue({ code: 'custom', message: parsed });
          return z.NEVER;
        }
        return parsed;
      })
      .describe('Which reverse proxies in front of the service are trusted to say the client address (`X-Forwarded-For`), as Express `trust proxy`: `false` (none: the address is the connection\'s), the number of proxies, or their addresses and subnets (`10.0.0.1, 10.1.0.0/16`, `loopback`, `uniquelocal`); `true` is refused, it would let any client choose its address'),
    TOKEN_RATE_LIMIT_PER_CLIENT: limit(30).describe('Token requests per window one client id may make (a bucket of this many, refilled continuously); over it: 429 `slow_down`; 0 = no limit'),
    TOKEN_RATE_LIMIT_PER_IP: limit(120).describe('Token requests per window from one client address (an IPv6 /64); 0 = no limit'),
    TOKEN_RATE_LIMIT_WINDOW_SECONDS: positiveInt(60).describe('Window of the token request limits, seconds'),
    TOKEN_LOCKOUT_FAILURES: limit(10).describe('Failed client assertions for one client id within TOKEN_LOCKOUT_WINDOW_SECONDS that lock it out of the token endpoint; 0 = no lockout'),
    TOKEN_LOCKOUT_WINDOW_SECONDS: positiveInt(300).describe('Window in which failed client assertions are counted, seconds'),
    TOKEN_LOCKOUT_SECONDS: positiveInt(120).describe('How long a locked-out client id is refused (401 `invalid_client`, with Retry-After), seconds'),
    API_RATE_LIMIT_PER_CLIENT: limit(1200).describe('API requests per window one authenticated client may make (a bucket of this many, refilled continuously); over it: 429 OperationOutcome `throttled`; 0 = no limit'),
    API_RATE_LIMIT_PER_IP: limit(2400).describe('API requests per window from one client address (an IPv6 /64), counted before authentication; health checks and the token endpoint are not counted; 0 = no limit'),
    API_RATE_LIMIT_WINDOW_SECONDS: positiveInt(60).describe('Window of the API request limits, seconds'),
    HTTP_HEADERS_TIMEOUT_MS: positiveInt(10_000).describe('Time a client has to send a request\'s headers (an idle new connection too); then 408 and the connection is closed'),
    HTTP_REQUEST_TIMEOUT_MS: positiveInt(30_000).describe('Time a client has to send a whole request, headers and body (not the response: downloads are not cut); then 408 and the connection is closed'),
    HTTP_KEEP_ALIVE_TIMEOUT_MS: positiveInt(5_000).describe('How long an idle keep-alive connection is kept open after a response; behind a proxy that reuses connections, set it above the proxy\'s idle timeout'),
    HTTP_MAX_REQUESTS_PER_SOCKET: limit(1000).describe('Requests served on one keep-alive connection before it is closed (`Connection: close`); 0 = no limit'),
    HTTP_MAX_CONNECTIONS: limit(1000).describe('Open connections at most; further ones are closed at once; 0 = no limit'),
    METRICS: z
      .enum(['off', 'port', 'bearer'])
      .default('bearer')
      .describe('Prometheus metrics at `/metrics`: `bearer` on the main port for a token with the `operator` role (safe on any network: the default); `port` open, without a token, on METRICS_PORT only (keep that port private); `off`: none'),
    METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9464).describe('Port of the open metrics server (METRICS=port), on HOST; never the main PORT'),
    HSTS_MAX_AGE_SECONDS: limit(31_536_000).describe('`Strict-Transport-Security` max-age, sent only when PUBLIC_URL is https; 0 = not sent'),
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV === 'production') {
      if (!env.NETWORK_FILE) ctx.addIssue({ code: 'custom', path: ['NETWORK_FILE'], message: 'is required when NODE_ENV=production (the example network is for trying the service only)' });
      if (!env.SIGNING_KEY_FILE) ctx.addIssue({ code: 'custom', path: ['SIGNING_KEY_FILE'], message: 'is required when NODE_ENV=production' });
    }
    if (env.BLOB_STORE === 's3' && !env.BLOB_S3_BUCKET) ctx.addIssue({ code: 'custom', path: ['BLOB_S3_BUCKET'], message: 'is required when BLOB_STORE=s3' });
    if (!env.BLOB_S3_ACCESS_KEY_ID !== !env.BLOB_S3_SECRET_ACCESS_KEY) {
      ctx.addIssue({ code: 'custom', path: [env.BLOB_S3_ACCESS_KEY_ID ? 'BLOB_S3_SECRET_ACCESS_KEY' : 'BLOB_S3_ACCESS_KEY_ID'], message: 'BLOB_S3_ACCESS_KEY_ID and BLOB_S3_SECRET_ACCESS_KEY go together' });
    }
    if (env.METRICS === 'port' && env.METRICS_PORT !== 0 && env.METRICS_PORT === env.PORT) {
      ctx.addIssue({ code: 'custom', path: ['METRICS_PORT'], message: 'must differ from PORT (the open metrics port is a server of its own)' });
    }
    if (env.AUDIT_RETENTION_YEARS !== undefined && env.AUDIT_RETENTION_DAYS !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['AUDIT_RETENTION_DAYS'], message: 'set AUDIT_RETENTION_YEARS or AUDIT_RETENTION_DAYS, not both' });
    }
    if (env.HTTP_HEADERS_TIMEOUT_MS > env.HTTP_REQUEST_TIMEOUT_MS) {
      ctx.addIssue({ code: 'custom', path: ['HTTP_HEADERS_TIMEOUT_MS'], message: 'must not be longer than HTTP_REQUEST_TIMEOUT_MS (the headers are part of the request)' });
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
  /** Bound of the graceful drain on SIGTERM/SIGINT (requests, then jobs), seconds. */
  shutdownTimeoutSeconds: number;
  /** Where attachment bytes are kept. */
  blobStore: BlobStoreSettings;
  /** The sweep of bytes no blob row points at: how often, and how old they must be. */
  blobSweep: { intervalSeconds: number; olderThanSeconds: number };
  /** Per-attachment limit of record assembly. */
  maxAttachmentBytes: number;
  /** Attachments one record assembly downloads at the same time. */
  attachmentConcurrency: number;
  consentAttestationAllowed: boolean;
  /** CONSENT_RECHECK_SECONDS: an active Consent is read again after this long (0: before every disclosure). */
  consentRecheckSeconds: number;
  deliveryRetry: { retryLimit: number; retryDelaySeconds: number; retryDelayMaxSeconds: number };
  /** Lease of one delivery attempt, seconds. */
  deliveryAttemptTimeoutSeconds: number;
  /** Lease of one record-assembly attempt, seconds (ASSEMBLY_ATTEMPT_TIMEOUT_SECONDS). */
  assemblyAttemptTimeoutSeconds: number;
  /** Delays between record-assembly attempts, seconds (ASSEMBLY_RETRY_*). */
  assemblyRetry: { retryDelaySeconds: number; retryDelayMaxSeconds: number };
  /** Post-backs one replica runs at once (DELIVERY_CONCURRENCY). */
  deliveryConcurrency: number;
  /** Follow-up questions per consultant after its opinion, and the days after the opinion they may be asked in. */
  followUps: { limit: number; windowDays: number };
  jobSuperviseIntervalSeconds: number;
  webhook: { retryLimit: number; retryDelaySeconds: number; timeoutMs: number };
  overdueSweepIntervalSeconds: number;
  /** How long AuditEvents are kept before `npm run audit:export` may take them (default 6 years). */
  auditRetention: AuditRetention;
  auditRetentionCheckIntervalSeconds: number;
  /** Topic-based Subscriptions: heartbeat floor and the heartbeat sweep's interval, seconds. */
  subscriptions: { minHeartbeatSeconds: number; heartbeatSweepSeconds: number };
  /** Express `trust proxy`: false, a hop count, or the trusted proxies' addresses and subnets. */
  trustProxy: false | number | string[];
  /** Abuse limits per replica; a limit of 0 is off. */
  rateLimits: {
    token: TokenLimitSettings;
    api: { perAddress: Rate; perClient: Rate };
  };
  /** Connection limits of the HTTP server. */
  http: HttpServerLimits;
  /** 0: no Strict-Transport-Security. */
  hstsMaxAgeSeconds: number;
  /** Where /metrics is served: not at all, open on its own port, or on the main port for operators. */
  metrics: { mode: 'off' | 'port' | 'bearer'; port: number };
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * For the command-line entries (the service, `blobs:migrate`, `check-ehr`): the configuration,
 * or, when it is invalid, its problems on stderr and the process ends with `exitCode`.
 */
export function loadConfigOrExit(env: NodeJS.ProcessEnv, exitCode: number): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exit(exitCode);
  }
}

/** A setting that was renamed, and how an old value becomes a value of the new one. */
export interface RetiredSetting {
  replacement: string;
  /** How the meaning changed, for the message, e.g. "seconds, not milliseconds". */
  change: string;
  /** The old value as a value of the new setting; undefined when it cannot be converted. */
  convert: (old: string) => string | undefined;
}

const msToSeconds = (old: string): string | undefined => {
  const ms = Number(old);
  return old.trim() !== '' && Number.isFinite(ms) && ms > 0 ? String(Math.ceil(ms / 1000)) : undefined;
};

/**
 * Settings that were renamed. Nothing reads the old names any more, so an operator still setting
 * one would silently lose the setting: the service refuses to start instead and names the new one.
 */
export const RETIRED_SETTINGS: Readonly<Record<string, RetiredSetting>> = {
  SHUTDOWN_TIMEOUT_MS: { replacement: 'SHUTDOWN_TIMEOUT_SECONDS', change: 'seconds, not milliseconds', convert: msToSeconds },
};

/** One problem for each retired setting the environment still sets. */
function retiredSettingProblems(env: NodeJS.ProcessEnv): string[] {
  return Object.entries(RETIRED_SETTINGS).flatMap(([name, retired]) => {
    const old = env[name];
    if (old === undefined) return [];
    const value = retired.convert(old);
    const instead = value === undefined ? retired.replacement : `${retired.replacement}=${value}`;
    return [`${name}: no longer read, renamed ${retired.replacement} (${retired.change}); set ${instead} instead and remove ${name}`];
  });
}

/** Parses the environment; throws ConfigError listing every problem (retired settings first). */
export function loadConfig(env: NodeJS.ProcessEnv): Config {
  const retired = retiredSettingProblems(env);
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success || retired.length > 0) {
    const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.') || 'environment'}: ${i.message}`);
    throw new ConfigError([...retired, ...problems]);
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
    shutdownTimeoutSeconds: e.SHUTDOWN_TIMEOUT_SECONDS,
    maxAttachmentBytes: e.MAX_ATTACHMENT_BYTES,
    attachmentConcurrency: e.ATTACHMENT_CONCURRENCY,
    blobStore:
      e.BLOB_STORE === 'files'
        ? { kind: 'files', dir: path.resolve(e.BLOB_DIR ?? path.join(dataDir, 'blobs')) }
        : {
            kind: 's3',
            bucket: e.BLOB_S3_BUCKET as string,
            prefix: e.BLOB_S3_PREFIX,
            ...(e.BLOB_S3_ENDPOINT ? { endpoint: e.BLOB_S3_ENDPOINT } : {}),
            region: e.BLOB_S3_REGION,
            ...(e.BLOB_S3_ACCESS_KEY_ID && e.BLOB_S3_SECRET_ACCESS_KEY ? { credentials: { accessKeyId: e.BLOB_S3_ACCESS_KEY_ID, secretAccessKey: e.BLOB_S3_SECRET_ACCESS_KEY } } : {}),
            forcePathStyle: e.BLOB_S3_FORCE_PATH_STYLE === 'true',
          },
    blobSweep: { intervalSeconds: e.BLOB_SWEEP_INTERVAL_SECONDS, olderThanSeconds: e.BLOB_SWEEP_AGE_SECONDS },
    consentAttestationAllowed: e.CONSENT_ATTESTATION_ALLOWED === 'true',
    consentRecheckSeconds: e.CONSENT_RECHECK_SECONDS,
    deliveryRetry: { retryLimit: e.DELIVERY_RETRY_LIMIT, retryDelaySeconds: e.DELIVERY_RETRY_DELAY_SECONDS, retryDelayMaxSeconds: e.DELIVERY_RETRY_MAX_DELAY_SECONDS },
    deliveryAttemptTimeoutSeconds: e.DELIVERY_ATTEMPT_TIMEOUT_SECONDS,
    assemblyAttemptTimeoutSeconds: e.ASSEMBLY_ATTEMPT_TIMEOUT_SECONDS,
    assemblyRetry: { retryDelaySeconds: e.ASSEMBLY_RETRY_DELAY_SECONDS, retryDelayMaxSeconds: e.ASSEMBLY_RETRY_MAX_DELAY_SECONDS },
    deliveryConcurrency: e.DELIVERY_CONCURRENCY,
    followUps: { limit: e.FOLLOW_UP_LIMIT, windowDays: e.FOLLOW_UP_WINDOW_DAYS },
    jobSuperviseIntervalSeconds: e.JOB_SUPERVISE_INTERVAL_SECONDS,
    webhook: { retryLimit: e.WEBHOOK_RETRY_LIMIT, retryDelaySeconds: e.WEBHOOK_RETRY_DELAY_SECONDS, timeoutMs: e.WEBHOOK_TIMEOUT_MS },
    overdueSweepIntervalSeconds: e.OVERDUE_SWEEP_INTERVAL_SECONDS,
    auditRetention: e.AUDIT_RETENTION_DAYS !== undefined ? { days: e.AUDIT_RETENTION_DAYS } : { years: e.AUDIT_RETENTION_YEARS ?? 6 },
    auditRetentionCheckIntervalSeconds: e.AUDIT_RETENTION_CHECK_INTERVAL_SECONDS,
    subscriptions: { minHeartbeatSeconds: e.SUBSCRIPTION_MIN_HEARTBEAT_SECONDS, heartbeatSweepSeconds: e.SUBSCRIPTION_HEARTBEAT_SWEEP_SECONDS },
    trustProxy: e.TRUST_PROXY,
    rateLimits: {
      token: {
        perAddress: { limit: e.TOKEN_RATE_LIMIT_PER_IP, windowSeconds: e.TOKEN_RATE_LIMIT_WINDOW_SECONDS },
        perClient: { limit: e.TOKEN_RATE_LIMIT_PER_CLIENT, windowSeconds: e.TOKEN_RATE_LIMIT_WINDOW_SECONDS },
        lockout: { failures: e.TOKEN_LOCKOUT_FAILURES, windowSeconds: e.TOKEN_LOCKOUT_WINDOW_SECONDS, lockoutSeconds: e.TOKEN_LOCKOUT_SECONDS },
      },
      api: {
        perAddress: { limit: e.API_RATE_LIMIT_PER_IP, windowSeconds: e.API_RATE_LIMIT_WINDOW_SECONDS },
        perClient: { limit: e.API_RATE_LIMIT_PER_CLIENT, windowSeconds: e.API_RATE_LIMIT_WINDOW_SECONDS },
      },
    },
    http: {
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      maxRequestsPerSocket: e.HTTP_MAX_REQUESTS_PER_SOCKET,
      maxConnections: e.HTTP_MAX_CONNECTIONS,
    },
    hstsMaxAgeSeconds: e.HSTS_MAX_AGE_SECONDS,
    metrics: { mode: e.METRICS, port: e.METRICS_PORT },
  };
}

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * TRUST_PROXY as Express `trust proxy` takes it, or a message saying what is wrong. `true`
 * (trust every hop) is refused: the client would then choose its own address with
 * X-Forwarded-For and step around every per-address limit.
 */
export function parseTrustProxy(raw: string): false | number | string[] | string {
  const value = raw.trim();
  if (value === '' || value === 'false') return false;
  if (value === 'true') return 'true would trust any X-Forwarded-For a client sends; give the number of proxies in front of the service (e.g. 1) or their addresses';
  if (/^\d+$/.test(value)) return Number(value) === 0 ? false : Number(value);
  const entries = value.split(',').map((v) => v.trim());
  const bad = entries.filter((entry) => {
    if (PROXY_NAMES.has(entry)) return false;
    const [address = '', prefix, ...rest] = entry.split('/');
    const family = isIP(address);
    if (family === 0 || rest.length > 0) return true;
    return prefix !== undefined && !(/^\d+$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
  });
  if (bad.length > 0) return `not an address, subnet or one of loopback, linklocal, uniquelocal: ${bad.map((b) => JSON.stringify(b.slice(0, 60))).join(', ')}`;
  return entries;
}

/** The documented settings, for the table in docs/configuration.md and `--help`. */
export function describeConfig(): { name: string; default: string; description: string }[] {
  return Object.entries(EnvSchema.shape as Record<string, z.ZodType>).map(([name, schema]) => {
    let def = '';
    const parsed = schema.safeParse(undefined);
    if (parsed.success && parsed.data !== undefined) def = String(parsed.data);
    return { name, default: def, description: schema.description ?? '' };
  });
}
