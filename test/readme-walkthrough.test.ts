import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DocumentReference } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultSandboxClients } from './support/sandbox-ehr/clients.ts';
import { SANDBOX_EXPLORER_CLIENT_ID } from './support/sandbox-ehr/find-chart.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { runProcess } from './support/run-process.ts';

/**
 * The README's walkthrough, run as a newcomer runs it: its bash block, verbatim, against the
 * service on the EXAMPLE network paired with the sandbox EHR as the README pairs them
 * (`npm run sandbox`, `npm start`). Only the ports differ, through the variables the block reads
 * (SERVICE, SANDBOX) and the sandbox's port in the example network's st-olaf URLs.
 */
const ROOT = path.join(import.meta.dirname, '..');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const EXAMPLE_NETWORK = readFileSync(path.join(ROOT, 'examples', 'network.json'), 'utf8');

/** The bash blocks between the walkthrough markers. */
function walkthroughBlocks(readme: string): string[] {
  const section = /<!-- walkthrough:start -->([\s\S]*?)<!-- walkthrough:end -->/.exec(readme)?.[1];
  if (!section) throw new Error('README.md has no <!-- walkthrough:start --> ... <!-- walkthrough:end --> section');
  return [...section.matchAll(/```(?:bash|sh)\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** The command of a block that only starts a server (`npm run sandbox`, `npm start`), comments aside. */
function serverCommand(block: string): string | undefined {
  const commands = block.split('\n').map((line) => line.replace(/#.*$/, '').trim()).filter(Boolean);
  return commands.length === 1 && ['npm run sandbox', 'npm start'].includes(commands[0]!) ? commands[0] : undefined;
}

const runBash = (script: string, env: Record<string, string>) => runProcess('bash', ['-e', '-o', 'pipefail', '-c', script], env);

describe('README walkthrough (npm run sandbox + npm start + the curl steps)', () => {
  let ehr: SandboxEhr;
  let service: TestService;

  beforeAll(async () => {
    // As `npm run sandbox` registers them: the service's client and the explorer scripts use.
    ehr = await startSandboxEhr({ port: 0, clients: [...defaultSandboxClients(), { ...defaultSandboxClients()[0]!, clientId: SANDBOX_EXPLORER_CLIENT_ID, scope: 'system/*.rs' }] });
    const port = new URL(ehr.url).port;
    const network = JSON.parse(EXAMPLE_NETWORK) as { participants: { id: string; fhir?: Record<string, unknown> }[] };
    const stOlaf = network.participants.find((p) => p.id === 'st-olaf')!;
    stOlaf.fhir = {
      ...stOlaf.fhir,
      baseUrl: String(stOlaf.fhir!.baseUrl).replace(':8090/', `:${port}/`),
      tokenUrl: String(stOlaf.fhir!.tokenUrl).replace(':8090/', `:${port}/`),
      // The copy lives in a temp directory: the key path, relative to the repository for the example network, made absolute.
      privateKeyFile: path.join(ROOT, String(stOlaf.fhir!.privateKeyFile)),
    };
    const file = path.join(await mkdtemp(path.join(tmpdir(), 'so-walkthrough-')), 'network.json');
    await writeFile(file, JSON.stringify(network));
    service = await startTestService({ NETWORK_FILE: file });
  }, 120_000);
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  it('the example network points st-olaf at the sandbox as `npm run sandbox` starts it', () => {
    const stOlaf = (JSON.parse(EXAMPLE_NETWORK) as { participants: { id: string; fhir?: unknown }[] }).participants.find((p) => p.id === 'st-olaf');
    expect(stOlaf?.fhir).toEqual({
      baseUrl: 'http://localhost:8090/fhir/R4',
      tokenUrl: 'http://127.0.0.1:8090/auth/token',
      clientId: 'second-opinion-service',
      privateKeyFile: 'examples/keys/service-outbound.private.jwk.json',
    });
    const sandboxScript = readFileSync(path.join(ROOT, 'scripts', 'sandbox-ehr.ts'), 'utf8');
    expect(sandboxScript).toContain("port('SANDBOX_PORT', 8090)");
    expect(sandboxScript).toContain("process.env.SANDBOX_HOST || '127.0.0.1'");
  });

  it('runs to the end it promises: the opinion delivered to the sandbox EHR, and the comparison', async () => {
    const blocks = walkthroughBlocks(README);
    // The pairing it documents is the one this test stands up: the sandbox, then the service, as they are.
    expect(blocks.map(serverCommand).filter(Boolean)).toEqual(['npm run sandbox', 'npm start']);
    const script = blocks.filter((b) => !serverCommand(b)).join('\n');
    // It reads its URLs from SERVICE and SANDBOX, defaulting to what npm start and npm run sandbox use.
    expect(script).toContain('SERVICE=${SERVICE:-http://localhost:8080}');
    expect(script).toContain('SANDBOX=${SANDBOX:-http://127.0.0.1:8090}');
    expect(script).not.toMatch(/localhost:8080\//);
    expect(script).toContain('"consent": { "reference": "Consent/');

    const { code, stdout, stderr } = await runBash(script, { SERVICE: service.url, SANDBOX: ehr.url });
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });

    const referralId = /^referral ([0-9a-f-]{36})$/m.exec(stdout)?.[1];
    expect(referralId, stdout).toBeDefined();
    // The record set the clinic reads lists the operative note.
    expect(stdout).toMatch(/DocumentReference/);
    expect(stdout).toContain('accepted\nin-progress\ncompleted\n');

    // The consult note it prints is on the sandbox EHR now, for the sandbox's patient.
    const remote = new RegExp(`^${ehr.baseUrl.replace('127.0.0.1', 'localhost')}/DocumentReference/([0-9a-f-]{36})$`, 'm').exec(stdout);
    expect(remote, stdout).not.toBeNull();
    const note = await ehr.repo.readResource<DocumentReference>('DocumentReference', remote![1]!);
    expect(note.type?.coding?.[0]).toMatchObject({ system: 'http://loinc.org', code: '11488-4' });
    expect(note.subject?.reference).toMatch(new RegExp(`Patient/${ehr.seeded.patientId}$`));

    // The comparison: Lakeside's opinion, its preferred option and its concordance with the first one.
    expect(stdout).toContain("clinic: 'Lakeside Clinic (example)'");
    expect(stdout).toContain("preferred: 'Ultrasound follow-up in 6 months'");
    expect(stdout).toMatch(/concordance: \{ diagnosis: '[a-z-]+', plan: '[a-z-]+' \}/);

    // And the service agrees: the Task is completed and its opinion delivered.
    const summary = await fetch(`${service.url}/second-opinions/${referralId}`, { headers: { authorization: `Bearer ${await tokenOf(service.url)}` } });
    expect(((await summary.json()) as { consultants: { task: { status: string; businessStatus: string } }[] }).consultants[0]!.task).toMatchObject({ status: 'completed', businessStatus: 'opinion-delivered' });
  }, 240_000);
});

async function tokenOf(url: string): Promise<string> {
  const { getAccessToken } = await import('./support/tokens.ts');
  return getAccessToken(url, 'st-olaf-ehr');
}
