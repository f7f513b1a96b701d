import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, describeConfig, loadConfig } from './config.ts';

describe('loadConfig', () => {
  it('applies defaults: embedded PGlite in ./data, generated signing key, example network', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ nodeEnv: 'development', port: 8080, publicUrl: 'http://localhost:8080', databaseUrl: undefined, networkFile: undefined, signingKeyGenerated: true, accessTokenTtlSeconds: 300, dueDays: { routine: 7, urgent: 3, asap: 1 } });
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

  it('production needs a real network file and signing key: no defaults for secrets', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/NETWORK_FILE: is required[\s\S]*SIGNING_KEY_FILE: is required/);
    const c = loadConfig({ NODE_ENV: 'production', NETWORK_FILE: '/etc/so/network.json', SIGNING_KEY_FILE: '/etc/so/key.json', PUBLIC_URL: 'https://so.example.org/' });
    expect(c).toMatchObject({ signingKeyGenerated: false, signingKeyFile: '/etc/so/key.json', publicUrl: 'https://so.example.org' });
  });

  it('the README documents every setting', () => {
    const readme = readFileSync(path.join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    for (const { name } of describeConfig()) expect(readme).toContain(`\`${name}\``);
  });
});
