import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = path.join(import.meta.dirname, '..');

interface DemoRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const running = new Set<ChildProcess>();

/**
 * Runs `scripts/demo.ts` exactly as `npm run demo` does (tsx on the project's Node, from the
 * repository root), with a clean environment: no DATABASE_URL (the demo always uses the
 * embedded store), nothing inherited from the test runner.
 */
function runDemo(env: Record<string, string> = {}): Promise<DemoRun> {
  const base: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' };
  if (process.env.TMPDIR) base.TMPDIR = process.env.TMPDIR;
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      // Let the pipes drain.
      setImmediate(() => resolve({ code, signal, stdout, stderr }));
    }),
  );
}

/** The temp directory the demo said it removed. */
function removedDir(stdout: string): string | undefined {
  return /^ {3}removed (\S+)$/m.exec(stdout)?.[1];
}

describe('npm run demo', () => {
  // A test that timed out leaves no demo behind: SIGTERM makes it clean up and exit.
  afterEach(() => {
    for (const child of running) child.kill('SIGTERM');
  });

  it('walks one referral end to end with two consultants, exits 0 and cleans up', { timeout: 180_000 }, async () => {
    // The demo's own deadline comes before the test's, so a slow machine still gets its clean-up and message.
    const run = await runDemo({ DEMO_TIMEOUT_SECONDS: '170', DEMO_WAIT_SECONDS: '90' });
    const output = `${run.stdout}\n--- stderr ---\n${run.stderr}`;
    expect(run.code, output).toBe(0);
    expect(run.stderr, output).not.toContain('DEMO FAILED');

    // Every step, in order.
    const steps = [...run.stdout.matchAll(/^(\d)\. /gm)].map((m) => Number(m[1]));
    expect(steps, output).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(run.stdout).toMatch(/store: pglite in /);
    expect(run.stdout).toMatch(/\+ Consent\/[0-9a-f-]{36}/);

    // Intake, then assembly waiting for the operative note, then complete once it is supplied.
    expect(run.stdout).toMatch(/response {7}201 Created, Location: http:\/\/127\.0\.0\.1:\d+\/second-opinions\/\S+/);
    expect(run.stdout).toMatch(/^ {5}\+ ServiceRequest\/\S+ v1 {2}active/m);
    expect(run.stdout).toMatch(/result {9}record set awaiting-records/);
    expect(run.stdout).toContain('missing        Surgical operation note (LOINC 11504-8)');
    expect(run.stdout).toContain('businessStatus.text "Missing required records: Surgical operation note"');
    expect(run.stdout).toMatch(/guard {10}Lakeside tries to accept now: 404 .*a clinic sees nothing of the case until its record set is complete and the consent covers it/);
    expect(run.stdout).toMatch(/response {7}202 Accepted: records revision 1, added DocumentReference\/[0-9a-f-]{36} \(operative note\)/);
    expect(run.stdout).toContain('record set records-ready: nothing required is missing');
    const opNote = /added DocumentReference\/([0-9a-f-]{36}) \(operative note\)/.exec(run.stdout)?.[1];
    expect(run.stdout).toContain(`copy of EHR DocumentReference/${opNote}`);
    expect(run.stdout).toMatch(new RegExp(`The service called St Olaf's EHR: .*GET DocumentReference/${opNote}`));

    // The question and its answer.
    expect(run.stdout).toMatch(/request-info {3}POST \/consults\/\S+\/request-info -> 200, Task on-hold \/ information-requested/);
    expect(run.stdout).toMatch(/referrer sees {2}GET \/second-opinions\/\S+: Lakeside on-hold \/ information-requested, asking "Was the knee ever aspirated/);
    expect(run.stdout).toMatch(/resumed {8}Task\/\S+ in-progress/);

    // Both opinions, blinding lifted for each after its own answer, the referral completed.
    expect(run.stdout.match(/^ {3}opinion {8}POST \/consults\/\S+\/opinion -> 200, Task completed/gm)).toHaveLength(2);
    expect(run.stdout).toMatch(/is now released to Northfield: GET -> 200/);
    expect(run.stdout).toMatch(/is now released to Lakeside: GET -> 200/);
    expect(run.stdout).toMatch(/referral {7}ServiceRequest\/\S+ completed \(v\d+\): every Task has ended/);

    // Post-back: one DocumentReference and one Communication on the EHR per opinion.
    for (const clinic of ['Lakeside', 'Northfield']) {
      expect(run.stdout).toMatch(new RegExp(`^ {3}${clinic} +opinion DocumentReference/\\S+ delivered after \\d+ attempt\\(s\\): on the EHR DocumentReference/\\S+ and Communication/\\S+ \\(to Practitioner/[0-9a-f-]{36}\\)$`, 'm'));
    }
    expect(run.stdout).toContain('exactly one DocumentReference and one Communication per opinion');
    expect(run.stdout.match(/^ {5}\+ DocumentReference\/\S+ {2}current, Consult note for Patient\/[0-9a-f-]{36}/gm)).toHaveLength(2);
    expect(run.stdout.match(/^ {5}\+ Communication\/\S+ {2}completed, to Practitioner\/[0-9a-f-]{36}/gm)).toHaveLength(2);

    // The comparison.
    expect(run.stdout).toMatch(/First opinion \(St Olaf\) +Lakeside +Northfield/);
    expect(run.stdout).toContain('Where the consultants agree and differ:');
    expect(run.stdout).toMatch(/AGREE {3}planAgreement {7}All: Disagree/);
    expect(run.stdout).toMatch(/DIFFER {2}diagnosisAgreement/);
    expect(run.stdout).toMatch(/as HTML {8}the same with Accept: text\/html -> text\/html/);
    expect(run.stdout).toMatch(/DEMO OK: one referral, two opinions, both delivered to St Olaf's EHR, compared, in [\d.]+ s\./);

    // Clean-up: service and sandbox stopped, temp directory gone.
    expect(run.stdout).toContain('service stopped');
    expect(run.stdout).toContain('sandbox EHR stopped');
    const dir = removedDir(run.stdout);
    expect(dir, output).toMatch(/so-demo-/);
    expect(existsSync(dir as string)).toBe(false);
  });

  it('fails with exit code 1 and a clear message when it runs out of time, and still cleans up', { timeout: 120_000 }, async () => {
    const run = await runDemo({ DEMO_TIMEOUT_SECONDS: '1' });
    const output = `${run.stdout}\n--- stderr ---\n${run.stderr}`;
    expect(run.code, output).toBe(1);
    expect(run.stderr).toMatch(/DEMO FAILED in step \d \(.+\):\n {2}the demo did not finish within 1 s \(DEMO_TIMEOUT_SECONDS\)/);
    expect(run.stdout).not.toContain('DEMO OK');
    expect(run.stdout).toContain('service stopped');
    expect(run.stdout).toContain('sandbox EHR stopped');
    const dir = removedDir(run.stdout);
    expect(dir, output).toMatch(/so-demo-/);
    expect(existsSync(dir as string)).toBe(false);
  });
});
