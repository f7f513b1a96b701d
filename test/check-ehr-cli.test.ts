import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EhrChecklist } from '../src/outbound/check-ehr.ts';
import { writeSandboxNetwork } from './support/example-network.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { createProcessDatabase, type ProcessDatabase } from './support/service-process.ts';
import { runScript } from './support/run-process.ts';


/** Runs `scripts/check-ehr.ts` exactly as `npm run check-ehr --` does (tsx on the project's Node). */
const runCheck = (args: string[], env: Record<string, string>) => runScript('scripts/check-ehr.ts', args, env);

/** `npm run check-ehr`: the checklist printed, exit 0 when nothing failed and 1 otherwise. */
describe('npm run check-ehr (the CLI process)', () => {
  let ehr: SandboxEhr;
  let db: ProcessDatabase | undefined;
  let env: Record<string, string>;

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0 });
    const dataDir = await mkdtemp(path.join(tmpdir(), 'so-check-'));
    // With a patient the check audits its reads in the service's store: a PGlite directory, or a fresh PostgreSQL database.
    db = process.env.DATABASE_URL ? await createProcessDatabase() : undefined;
    env = { NETWORK_FILE: await writeSandboxNetwork(ehr, { timeoutMs: 10_000 }), DATA_DIR: dataDir, ...(db?.env ?? {}) };
  });
  afterAll(async () => {
    await ehr?.stop();
    await db?.drop();
  });
  afterEach(() => ehr.faults.clear());

  it('everything passes against the sandbox (patient, consent, --write): the checklist printed, exit 0', async () => {
    const run = await runCheck(['st-olaf', '--patient', `Patient/${ehr.seeded.patientId}`, '--consent', `Consent/${ehr.seeded.consentId}`, '--write'], env);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines[0]).toBe(`Connection check of st-olaf's EHR at ${ehr.baseUrl}`);
    expect(lines.filter((l) => /^ \d\. /.test(l)).map((l) => l.slice(4, 12).trim())).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    expect(lines.at(-2)).toBe('OK: 8 ok, 0 warning, 0 skipped, 0 failed');
  });

  it('a refused token: the line shows error and error_description and what to change, exit 1', async () => {
    ehr.faults.add({ path: '/auth/token', method: 'POST', status: 401, body: { error: 'invalid_client', error_description: 'Invalid client assertion audience' } });
    const run = await runCheck(['st-olaf', '--json'], env);
    expect(run.code).toBe(1);
    const list = JSON.parse(run.stdout) as EhrChecklist;
    expect(list.ok).toBe(false);
    expect(list.checks.find((c) => c.id === 'token')).toMatchObject({ status: 'failed', observed: 'token request failed: HTTP 401: invalid_client "Invalid client assertion audience"' });
    expect(list.checks.find((c) => c.id === 'token')?.fix).toContain("fhir.tokenUrl is exactly the EHR's token URL");
  });

  it('an unknown participant or a bad argument: a message on stderr, exit 1', async () => {
    const unknown = await runCheck(['nobody'], env);
    expect(unknown).toMatchObject({ code: 1, stdout: '', stderr: 'No participant "nobody" in the network file\n' });
    const noEhr = await runCheck(['lakeside-consults'], env);
    expect(noEhr).toMatchObject({ code: 1, stderr: 'This participant has no fhir block in the network file: there is no EHR to check\n' });
    const badPatient = await runCheck(['st-olaf', '--patient', 'not-a-reference'], env);
    expect(badPatient).toMatchObject({ code: 1, stderr: 'patient must be Patient/<id> (the id on the EHR)\n' });
    const noArgument = await runCheck([], env);
    expect(noArgument.code).toBe(1);
    expect(noArgument.stderr).toContain('usage: npm run check-ehr -- <participant>');
  });
});
