import { spawn } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.join(import.meta.dirname, '..', '..');

export interface ProcessRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end in the repository root with a bare environment (PATH and HOME, plus
 * `env`), collecting what it prints.
 */
export function runProcess(command: string, args: readonly string[], env: Record<string, string> = {}): Promise<ProcessRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a TypeScript script as its `npm run` entry does: tsx on the project's Node. */
export function runScript(script: string, args: readonly string[], env: Record<string, string> = {}): Promise<ProcessRun> {
  return runProcess(process.execPath, ['--import', 'tsx', script, ...args], env);
}
