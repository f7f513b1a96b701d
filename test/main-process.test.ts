import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { exampleBanner } from '../src/network/example-banner.ts';
import { spawnLogged } from './support/run-process.ts';
import { freePort } from './support/service.ts';


/** Runs `src/main.ts` exactly as `npm start` does (tsx on the project's Node), collecting its JSON log lines. */
const runMain = (env: Record<string, string>) => spawnLogged(process.execPath, ['--import', 'tsx', 'src/main.ts'], env);

describe('the service process (npm start)', () => {
  it('starts on the example network with embedded PGlite, says so first, serves, and drains on SIGTERM', async () => {
    const port = await freePort();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'so-main-'));
    const run = runMain({ PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir });
    const listening = await run.waitFor((l) => l.msg === 'listening');
    expect(listening).toMatchObject({ port, store: 'pglite' });
    const first = JSON.parse(run.lines[0] as string) as { level: string; msg: string };
    expect(first.level).toBe('warn');
    expect(first.msg).toMatch(/EXAMPLE network/);

    // Then, on stderr (stdout stays JSON), the URLs a newcomer wants and how to get a token.
    const deadline = Date.now() + 30_000;
    while (!run.stderr.includes('end to end:') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(run.stderr).toBe(exampleBanner({ publicUrl: `http://localhost:${port}`, isExample: true }));
    expect(run.stderr).toContain(`  API reference:  http://localhost:${port}/docs\n`);
    expect(run.stderr).toContain(`  FHIR metadata:  http://localhost:${port}/fhir/metadata\n`);
    expect(run.stderr).toContain('  a token:        TOKEN=$(npm run -s token -- st-olaf-ehr)');

    const health = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(health.status).toBe(200);
    const meta = await fetch(`http://127.0.0.1:${port}/fhir/metadata`);
    expect((await meta.json()) as { resourceType: string }).toMatchObject({ resourceType: 'CapabilityStatement', fhirVersion: '4.0.1' });
    await run.waitFor((l) => l.msg === 'request' && l.path === '/fhir/metadata');

    run.kill('SIGTERM');
    expect(await run.exit).toBe(0);
    expect(run.lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain('stopped');
    // A start on a busy machine takes most of a minute; the drain then waits for this test's idle keep-alive connection.
  }, 120_000);

  it('prints the example banner only on the example network', () => {
    expect(exampleBanner({ publicUrl: 'https://so.hospital.example', isExample: false })).toBeUndefined();
    expect(exampleBanner({ publicUrl: 'http://localhost:8080/', isExample: true })).toContain('  service:        http://localhost:8080/\n');
  });

  it('NODE_ENV=production refuses to start without a network file and signing key, listing both', async () => {
    const run = runMain({ NODE_ENV: 'production', PORT: '0' });
    expect(await run.exit).toBe(2);
    expect(run.stderr).toContain('NETWORK_FILE: is required when NODE_ENV=production');
    expect(run.stderr).toContain('SIGNING_KEY_FILE: is required when NODE_ENV=production');
  });

  it('a bad network file stops start-up with a message naming the bad entry', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'so-net-'));
    const file = path.join(dir, 'network.json');
    await writeFile(file, JSON.stringify({ participants: [{ id: 'x', name: 'X', roles: ['wizard'], organization: { reference: 'Organization/x' }, clients: [] }] }));
    const run = runMain({ NETWORK_FILE: file, PORT: '0', DATA_DIR: dir });
    expect(await run.exit).toBe(1);
    const fatal = JSON.parse(run.lines[run.lines.length - 1] as string) as { level: string; err: { message: string } };
    expect(fatal.level).toBe('fatal');
    expect(fatal.err.message).toContain('participants[0]');
    expect(fatal.err.message).toContain('roles');
  });
});
