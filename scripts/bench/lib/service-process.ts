/**
 * The service under test as a child process: `node --import tsx src/main.ts` on this Node (the
 * pid is the Node process itself, no wrapper, so /proc figures are the service's), ready once
 * GET /readyz answers, its last output lines kept, stopped at clean-up.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { sleep } from './common.ts';
import { onCleanup } from './run.ts';

const ROOT = path.join(import.meta.dirname, '..', '..', '..');

export interface ServiceProcess {
  pid: number;
  url: string;
  /** Last lines of its stdout/stderr. */
  tail: string[];
  /** Lines at level warn or above (or not JSON) seen so far. */
  warnings: string[];
  running(): boolean;
  /** SIGTERM, SIGKILL after `graceMs`; resolves when it is gone. */
  stop(graceMs?: number): Promise<void>;
}

export async function startServiceProcess(env: NodeJS.ProcessEnv, options: { nodeArgs?: string[]; readyTimeoutMs?: number } = {}): Promise<ServiceProcess> {
  const url = String(env.PUBLIC_URL);
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const killNow = () => {
    if (!gone()) child.kill('SIGKILL');
  };
  process.on('exit', killNow);
  const stop = async (graceMs = 30_000) => {
    if (gone()) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(killNow, graceMs);
    await exited;
    clearTimeout(timer);
  };
  onCleanup(`stop the service (pid ${child.pid})`, () => stop(10_000));
  const tail: string[] = [];
  const warnings: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      tail.push(line);
      if (tail.length > 40) tail.shift();
      const level = /"level":(\d+)/.exec(line)?.[1];
      if (level === undefined || Number(level) >= 40) warnings.push(line);
    });
  }
  const timeoutMs = options.readyTimeoutMs ?? 120_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gone()) throw new Error(`the service exited during start-up (code ${child.exitCode}):\n${tail.join('\n')}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the service was not ready after ${timeoutMs / 1000} s:\n${tail.join('\n')}`);
    await sleep(100);
  }
  const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').join(' ');
  if (!cmdline.includes('src/main.ts') || !/\bnode\b|node$/.test(cmdline.split(' ')[0] ?? '')) throw new Error(`pid ${child.pid} is not the service's node process: ${cmdline}`);
  return { pid: child.pid as number, url, tail, warnings, running: () => !gone(), stop };
}
