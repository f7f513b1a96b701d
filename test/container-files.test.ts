import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUILD_ASSETS, RUNTIME_FILES } from '../scripts/build.ts';
import { describeConfig, loadConfig } from '../src/config/config.ts';

const ROOT = path.join(import.meta.dirname, '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

/** The Dockerfile's stages: instructions (continuation lines joined), per `FROM`. */
function stages(): { from: string; lines: string[] }[] {
  const lines = read('Dockerfile')
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const out: { from: string; lines: string[] }[] = [];
  for (const line of lines) {
    if (line.startsWith('FROM ')) out.push({ from: line, lines: [] });
    else out.at(-1)?.lines.push(line);
  }
  return out;
}

/** The sources of `COPY` lines (without --from) and the destinations of `COPY --from=build`. */
function copies(lines: string[]): { sources: string[]; fromBuild: string[] } {
  const sources: string[] = [];
  const fromBuild: string[] = [];
  for (const line of lines.filter((l) => l.startsWith('COPY '))) {
    const parts = line.split(/\s+/).slice(1);
    if (parts[0]?.startsWith('--from=')) fromBuild.push((parts[1] as string).replace(/^\/app\//, ''));
    else sources.push(...parts.slice(0, -1));
  }
  return { sources, fromBuild };
}

describe('the container files mirror the build', () => {
  it('the build stage copies what `npm run build` reads and runs it; the runtime stage copies what the compiled service reads, and no examples', () => {
    const [build, runtime] = stages();
    expect(build?.from).toMatch(/^FROM node:24-slim AS build$/);
    expect(runtime?.from).toMatch(/^FROM node:24-slim$/);
    const built = copies(build?.lines ?? []);
    // npm run build = tsx scripts/build.ts: tsc over src/ with these configs, then the assets.
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.build).toBe('tsx scripts/build.ts');
    for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'scripts/tsconfig.build.json', 'scripts/build.ts', 'src', 'profiles/generated']) expect(built.sources).toContain(needed);
    for (const { from } of BUILD_ASSETS) expect(built.sources.some((s) => from === s || from.startsWith(`${s}/`))).toBe(true);
    expect(build?.lines).toContain('RUN npm run build && npm prune --omit=dev --no-audit --no-fund');

    const run = copies(runtime?.lines ?? []);
    expect(run.sources).toEqual([]);
    expect([...run.fromBuild].sort()).toEqual([...RUNTIME_FILES].sort());
    expect(runtime?.lines).toContain('USER node');
    expect(runtime?.lines).toContain('CMD ["node", "dist/main.js"]');
    expect(runtime?.lines.find((l) => l.startsWith('ENV '))).toContain('NODE_ENV=production');
    // Liveness on /healthz: a database outage makes /readyz fail, and must not restart the container.
    const health = runtime?.lines.find((l) => l.startsWith('HEALTHCHECK ')) as string;
    expect(health).toContain('/healthz');
    expect(health).not.toContain('/readyz');

    expect(read('Dockerfile')).not.toMatch(/^COPY .*examples/m);
    expect(read('.dockerignore').split('\n')).toEqual(expect.arrayContaining(['examples', 'keys', 'node_modules', 'dist', 'data']));
  });

  it('compose.yaml configures the service with settings the service knows, valid in production', () => {
    const compose = read('compose.yaml');
    const block = compose.slice(compose.indexOf('x-service:'), compose.indexOf('\nservices:'));
    const environment = block.slice(block.indexOf('  environment:\n') + '  environment:\n'.length);
    const env: Record<string, string> = {};
    for (const line of environment.split('\n')) {
      if (/^ {4}#/.test(line)) continue;
      const m = /^ {4}([A-Z0-9_]+): (.*)$/.exec(line);
      if (!m) break;
      env[m[1] as string] = (m[2] as string).replace(/^"(.*)"$/, '$1').replace(/^\$\{PUBLIC_URL:-(.*)\}$/, '$1');
    }
    expect(Object.keys(env)).toContain('SIGNING_KEY_FILE');
    const known = new Set(describeConfig().map((c) => c.name));
    // DATABASE_URL_TEMPLATE is the entrypoint's, which builds DATABASE_URL from it and the password secret.
    expect(Object.keys(env).filter((k) => !known.has(k))).toEqual(['DATABASE_URL_TEMPLATE']);
    // The entrypoint sets the secrets and runs the command: the service by default, or a one-off (the audit export).
    expect(block).toContain('exec "$$@"');
    expect(block).toContain('  command: [node, dist/main.js]\n');
    const { DATABASE_URL_TEMPLATE: template, ...settings } = env;
    const config = loadConfig({ ...settings, DATABASE_URL: (template as string).replace('%s', 'secret'), BLOB_S3_SECRET_ACCESS_KEY: 'secret' });
    expect(config).toMatchObject({ nodeEnv: 'production', blobStore: { kind: 's3', bucket: 'second-opinion' } });
    // The proxy drops idle upstream connections before the service's keep-alive timeout would.
    const keepalive = Number(/keepalive (\d+)s/.exec(compose)?.[1]);
    expect(keepalive * 1000).toBeLessThan(config.http.keepAliveTimeoutMs);
    expect(compose).toContain('health_uri /readyz');
    // Two replicas of that service.
    expect(compose.match(/^ {2}service-\d:\n {4}<<: \*service$/gm)).toHaveLength(2);
  });
});
