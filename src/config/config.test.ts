import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, describeConfig, loadConfig, RETIRED_SETTINGS } from './config.ts';

describe('loadConfig', () => {
  it('applies defaults: embedded PGlite in ./data, generated signing key, example network', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ nodeEnv: 'development', port: 8080, publicUrl: 'http://localhost:8080', databaseUrl: undefined, networkFile: undefined, signingKeyGenerated: true, accessTokenTtlSeconds: 300, dueDays: { routine: 7, urgent: 3, asap: 1 }, attachmentConcurrency: 4 });
    expect(loadConfig({ ATTACHMENT_CONCURRENCY: '8' }).attachmentConcurrency).toBe(8);
    expect(() => loadConfig({ ATTACHMENT_CONCURRENCY: '0' })).toThrow(/ATTACHMENT_CONCURRENCY/);
    expect(c.dataDir).toBe(path.resolve('./data'));
    expect(c.signingKeyFile).toBe(path.join(path.resolve('./data'), 'signing-key.json'));
  });

  it('lists every problem at once, naming each variable', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'eighty', DATABASE_URL: 'mysql://x', ACCESS_TOKEN_TTL_SECONDS: '3600', LOG_LEVEL: 'chatty' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.map((p) => p.split(':')[0]).sort();
    expect(problems).toEqual(['ACCESS_TOKEN_TTL_SECONDS', 'DATABASE_URL', 'LOG_LEVEL', 'PORT']);
    expect((error as ConfigError).message).toContain('DATABASE_URL: must be a postgres:// or postgresql:// URL');
  });

  it('refuses a retired setting at start-up, naming its replacement and the converted value', () => {
    const problemsOf = (env: NodeJS.ProcessEnv): string[] => {
      try {
        loadConfig(env);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as ConfigError).problems;
      }
      return [];
    };
    expect(problemsOf({ SHUTDOWN_TIMEOUT_MS: '30000' })).toEqual([
      'SHUTDOWN_TIMEOUT_MS: no longer read, renamed SHUTDOWN_TIMEOUT_SECONDS (seconds, not milliseconds); set SHUTDOWN_TIMEOUT_SECONDS=30 instead and remove SHUTDOWN_TIMEOUT_MS',
    ]);
    // Rounded up, so a short budget never becomes 0; a value that is no number gets no suggestion.
    expect(problemsOf({ SHUTDOWN_TIMEOUT_MS: '2500' })[0]).toContain('set SHUTDOWN_TIMEOUT_SECONDS=3 instead');
    expect(problemsOf({ SHUTDOWN_TIMEOUT_MS: 'soon' })[0]).toContain('set SHUTDOWN_TIMEOUT_SECONDS instead');
    // Refused even beside the new name, and listed with the other problems.
    expect(problemsOf({ SHUTDOWN_TIMEOUT_MS: '30000', SHUTDOWN_TIMEOUT_SECONDS: '30', PORT: 'eighty' }).map((p) => p.split(':')[0])).toEqual(['SHUTDOWN_TIMEOUT_MS', 'PORT']);
    // Unset, or set to the new name only: no problem.
    expect(loadConfig({ SHUTDOWN_TIMEOUT_SECONDS: '30' }).shutdownTimeoutSeconds).toBe(30);
  });

  it('no retired setting name is still a setting, and each replacement is one', () => {
    const names = new Set(describeConfig().map((s) => s.name));
    for (const [old, retired] of Object.entries(RETIRED_SETTINGS)) {
      expect(names.has(old), old).toBe(false);
      expect(names.has(retired.replacement), retired.replacement).toBe(true);
    }
  });

  it('production needs a real network file and signing key: no defaults for secrets', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/NETWORK_FILE: is required[\s\S]*SIGNING_KEY_FILE: is required/);
    const c = loadConfig({ NODE_ENV: 'production', NETWORK_FILE: '/etc/so/network.json', SIGNING_KEY_FILE: '/etc/so/key.json', PUBLIC_URL: 'https://so.example.org/' });
    expect(c).toMatchObject({ signingKeyGenerated: false, signingKeyFile: '/etc/so/key.json', publicUrl: 'https://so.example.org' });
  });

  it('TRUST_PROXY: off by default; a hop count or the proxies\' addresses; true and non-addresses refused', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: '0' }).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: '1' }).trustProxy).toBe(1);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8, 2001:db8::/32, 192.0.2.7' }).trustProxy).toEqual(['loopback', '10.0.0.0/8', '2001:db8::/32', '192.0.2.7']);
    expect(() => loadConfig({ TRUST_PROXY: 'true' })).toThrow(/TRUST_PROXY: true would trust any X-Forwarded-For/);
    expect(() => loadConfig({ TRUST_PROXY: '10.0.0.0/33,proxy.example' })).toThrow(/TRUST_PROXY: not an address, subnet or one of loopback, linklocal, uniquelocal: "10.0.0.0\/33", "proxy.example"/);
  });

  it('abuse limits: defaults for a hospital network, 0 switches a limit off, the headers timeout fits in the request timeout', () => {
    const c = loadConfig({});
    expect(c.rateLimits).toEqual({
      token: { perAddress: { limit: 120, windowSeconds: 60 }, perClient: { limit: 30, windowSeconds: 60 }, lockout: { failures: 10, windowSeconds: 300, lockoutSeconds: 120 } },
      api: { perAddress: { limit: 2400, windowSeconds: 60 }, perClient: { limit: 1200, windowSeconds: 60 } },
    });
    expect(c.http).toEqual({ headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 5_000, maxRequestsPerSocket: 1000, maxConnections: 1000 });
    expect(c.hstsMaxAgeSeconds).toBe(31_536_000);
    expect(loadConfig({ API_RATE_LIMIT_PER_CLIENT: '0', TOKEN_LOCKOUT_FAILURES: '0' }).rateLimits).toMatchObject({ api: { perClient: { limit: 0 } }, token: { lockout: { failures: 0 } } });
    expect(() => loadConfig({ API_RATE_LIMIT_PER_IP: '-1' })).toThrow(/API_RATE_LIMIT_PER_IP/);
    expect(() => loadConfig({ HTTP_HEADERS_TIMEOUT_MS: '60000' })).toThrow(/HTTP_HEADERS_TIMEOUT_MS: must not be longer than HTTP_REQUEST_TIMEOUT_MS/);
  });

  it('metrics: bearer on the main port by default; an open port of its own must not be PORT; unknown modes refused', () => {
    expect(loadConfig({}).metrics).toEqual({ mode: 'bearer', port: 9464 });
    expect(loadConfig({ METRICS: 'port', METRICS_PORT: '9100' }).metrics).toEqual({ mode: 'port', port: 9100 });
    expect(loadConfig({ METRICS: 'off' }).metrics.mode).toBe('off');
    expect(() => loadConfig({ METRICS: 'port', PORT: '9100', METRICS_PORT: '9100' })).toThrow(/METRICS_PORT: must differ from PORT/);
    expect(() => loadConfig({ METRICS: 'open' })).toThrow(/METRICS/);
  });

  it('blob store: files under DATA_DIR/blobs by default; s3 needs a bucket, and both keys or none', () => {
    expect(loadConfig({ DATA_DIR: '/var/so' }).blobStore).toEqual({ kind: 'files', dir: '/var/so/blobs' });
    expect(loadConfig({ BLOB_DIR: '/mnt/blobs' }).blobStore).toEqual({ kind: 'files', dir: '/mnt/blobs' });
    expect(loadConfig({}).blobSweep).toEqual({ intervalSeconds: 3600, olderThanSeconds: 86_400 });
    expect(
      loadConfig({
        BLOB_STORE: 's3',
        BLOB_S3_BUCKET: 'attachments',
        BLOB_S3_PREFIX: 'so/',
        BLOB_S3_ENDPOINT: 'http://minio:9000',
        BLOB_S3_ACCESS_KEY_ID: 'id',
        BLOB_S3_SECRET_ACCESS_KEY: 'secret',
        BLOB_S3_FORCE_PATH_STYLE: 'true',
      }).blobStore,
    ).toEqual({ kind: 's3', bucket: 'attachments', prefix: 'so/', endpoint: 'http://minio:9000', region: 'us-east-1', credentials: { accessKeyId: 'id', secretAccessKey: 'secret' }, forcePathStyle: true });
    expect(loadConfig({ BLOB_STORE: 's3', BLOB_S3_BUCKET: 'b' }).blobStore).toEqual({ kind: 's3', bucket: 'b', prefix: '', region: 'us-east-1', forcePathStyle: false });
    expect(() => loadConfig({ BLOB_STORE: 's3' })).toThrow(/BLOB_S3_BUCKET: is required when BLOB_STORE=s3/);
    expect(() => loadConfig({ BLOB_STORE: 's3', BLOB_S3_BUCKET: 'b', BLOB_S3_ACCESS_KEY_ID: 'id' })).toThrow(/BLOB_S3_SECRET_ACCESS_KEY: BLOB_S3_ACCESS_KEY_ID and BLOB_S3_SECRET_ACCESS_KEY go together/);
    expect(() => loadConfig({ BLOB_STORE: 's3', BLOB_S3_BUCKET: 'b', BLOB_S3_PREFIX: 'no-slash' })).toThrow(/BLOB_S3_PREFIX: must be empty or end with \//);
    expect(() => loadConfig({ BLOB_STORE: 'database' })).toThrow(/BLOB_STORE/);
  });

  it('audit retention: 6 years by default, in years or days, not both', () => {
    expect(loadConfig({}).auditRetention).toEqual({ years: 6 });
    expect(loadConfig({ AUDIT_RETENTION_YEARS: '10' }).auditRetention).toEqual({ years: 10 });
    expect(loadConfig({ AUDIT_RETENTION_DAYS: '400' }).auditRetention).toEqual({ days: 400 });
    expect(() => loadConfig({ AUDIT_RETENTION_YEARS: '6', AUDIT_RETENTION_DAYS: '400' })).toThrow(/AUDIT_RETENTION_DAYS: set AUDIT_RETENTION_YEARS or AUDIT_RETENTION_DAYS, not both/);
    expect(() => loadConfig({ AUDIT_RETENTION_YEARS: '0' })).toThrow(/AUDIT_RETENTION_YEARS/);
  });

  it('docs/configuration.md documents every setting', () => {
    const page = readFileSync(path.join(import.meta.dirname, '..', '..', 'docs', 'configuration.md'), 'utf8');
    for (const { name } of describeConfig()) expect(page).toContain(`| \`${name}\` |`);
  });
});
