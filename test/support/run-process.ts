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

/** A long-running process whose stdout is JSON log lines (the service, a CLI). */
export interface LoggedProcess {
  pid: number;
  /** stdout, one entry per line, as printed so far. */
  lines: string[];
  readonly stderr: string;
  exit: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
  /** The first JSON line matching; throws when the process exits or `ms` pass without one. */
  waitFor(match: (line: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
}

/**
 * Spawns `command args` in the repository with only `env` (plus PATH, HOME), collecting its
 * stdout lines. node_modules/.bin comes first on PATH, so `npm start`'s `node` is the project's
 * Node 24, as under `npm run`. `ownProcessGroup`: a signal to the group is what a terminal's
 * Ctrl-C sends.
 */
export function spawnLogged(command: string, args: readonly string[], env: Record<string, string>, options: { ownProcessGroup?: boolean } = {}): LoggedProcess {
  const child = spawn(command, args, {
    cwd: ROOT,
    detached: options.ownProcessGroup ?? false,
    env: { PATH: `${path.join(ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`, HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  let buffer = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      lines.push(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let exited = false;
  void exit.then(() => (exited = true));
  return {
    pid: child.pid as number,
    lines,
    get stderr() {
      return stderr;
    },
    exit,
    kill: (signal) => void child.kill(signal),
    async waitFor(match, ms = 90_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = lines.flatMap((l) => (l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : [])).find(match);
        if (found) return found;
        if (exited || Date.now() > deadline) throw new Error(`${exited ? 'exited' : 'timed out'}; output so far:\n${lines.join('\n')}\n${stderr}`);
        await Promise.race([new Promise((r) => setTimeout(r, 200)), exit]);
      }
    },
  };
}
