import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './support/service.ts';
import { defaultSandboxClients } from './support/sandbox-ehr/clients.ts';
import { SANDBOX_EXPLORER_CLIENT_ID } from './support/sandbox-ehr/find-chart.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { runScript } from './support/run-process.ts';

const CLIENT_IDS = ['st-olaf-ehr', 'lakeside-worklist', 'northfield-lis', 'riverside-pacs', 'audit-office-siem', 'st-olaf-physician-portal'];

const run = runScript;

describe('npm run token / npm run try: usage and one-line errors', () => {
  let nothing: string;
  let sandbox: SandboxEhr;
  beforeAll(async () => {
    nothing = `http://127.0.0.1:${await freePort()}`;
    sandbox = await startSandboxEhr({ port: 0, clients: [...defaultSandboxClients(), { ...defaultSandboxClients()[0]!, clientId: SANDBOX_EXPLORER_CLIENT_ID, scope: 'system/*.rs' }] });
  });
  afterAll(async () => {
    await sandbox?.stop();
  });

  it('token --help prints the usage and every client id of the example network', async () => {
    const { code, stdout, stderr } = await run('scripts/token.ts', ['--help'], { SERVICE_URL: nothing });
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^Usage: npm run -s token -- \[client-id\]/);
    for (const id of CLIENT_IDS) expect(stdout).toContain(`  ${id} `);
  });

  it('token with an unknown client id says so and lists the client ids; no key file is looked for', async () => {
    const { code, stdout, stderr } = await run('scripts/token.ts', ['no-such-client'], { SERVICE_URL: nothing });
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.split('\n')[0]).toBe(`unknown client id "no-such-client"; the example network's client ids:`);
    for (const id of CLIENT_IDS) expect(stderr).toContain(`  ${id} `);
    expect(stderr).not.toMatch(/ENOENT|\.jwk\.json|\n\s+at /);
  });

  it('token without a service: one line naming the URL and what to start', async () => {
    const { code, stdout, stderr } = await run('scripts/token.ts', ['lakeside-worklist'], { SERVICE_URL: nothing });
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe(`cannot reach ${nothing}: is the service running? start it with npm start (or set SERVICE_URL)\n`);
  });

  it('try without the sandbox: one line naming the sandbox and how to start it', async () => {
    const { code, stderr } = await run('scripts/try-referral.ts', [], { SERVICE_URL: nothing, SANDBOX_URL: nothing });
    expect(code).toBe(1);
    expect(stderr).toBe(`cannot reach the sandbox EHR at ${nothing}: start it with npm run sandbox (or set SANDBOX_URL)\n`);
  });

  it('try with the sandbox but no service: one line naming the service URL', async () => {
    const { code, stderr } = await run('scripts/try-referral.ts', [], { SERVICE_URL: nothing, SANDBOX_URL: sandbox.url });
    expect(code).toBe(1);
    expect(stderr).toBe(`cannot reach ${nothing}: is the service running? start it with npm start (or set SERVICE_URL)\n`);
  });

  it('try --help prints the usage; an unknown argument is refused with it', async () => {
    const help = await run('scripts/try-referral.ts', ['--help'], { SERVICE_URL: nothing, SANDBOX_URL: nothing });
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: npm run try \[-- --chart\]/);
    const bad = await run('scripts/try-referral.ts', ['--chrat'], { SERVICE_URL: nothing, SANDBOX_URL: nothing });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^unexpected arguments: --chrat\n\nUsage: npm run try/);
  });
});
