/**
 * Parent side of the benchmark child processes: spawn a TypeScript server script on this
 * Node (node --import tsx, one process per server so `pid` is the server itself), wait for
 * BENCH_READY, send commands, stop it, and make sure none survives the parent (on errors,
 * SIGINT/SIGTERM and process exit).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ServerChild {
  name: string;
  pid: number;
  url: string;
  path: string;
  info: Record<string, unknown>;
  /** Sends one command line and resolves with the child's BENCH_REPLY. */
  command(line: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();

/** SIGKILLs whatever is still running; synchronous, safe in an 'exit' handler. */
export function killAllNow(): void {
  for (const proc of live) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  }
  live.clear();
}
process.on('exit', killAllNow);

export interface SpawnOptions {
  env: NodeJS.ProcessEnv;
  /** Extra Node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
}

export async function spawnServer(name: string, script: string, options: SpawnOptions): Promise<ServerChild> {
  const proc = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', script], {
    cwd: process.cwd(),
    env: options.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  live.add(proc);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  void exited.then(() => live.delete(proc));

  const stderrTail: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (line) => {
    stderrTail.push(line);
    if (stderrTail.length > 40) stderrTail.shift();
  });

  const replies: ((value: Record<string, unknown>) => void)[] = [];
  let onReady: ((info: Record<string, unknown>) => void) | undefined;
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    if (line.startsWith('BENCH_READY ')) onReady?.(JSON.parse(line.slice('BENCH_READY '.length)) as Record<string, unknown>);
    else if (line.startsWith('BENCH_REPLY ')) replies.shift()?.(JSON.parse(line.slice('BENCH_REPLY '.length)) as Record<string, unknown>);
  });

  const timeoutMs = options.readyTimeoutMs ?? 60_000;
  const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready after ${timeoutMs} ms\n${stderrTail.join('\n')}`)), timeoutMs);
    onReady = (value) => {
      clearTimeout(timer);
      resolve(value);
    };
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited before it was ready (code ${code}, signal ${signal}):\n${stderrTail.join('\n')}`));
    });
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  }).catch(async (err: unknown) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
    throw err;
  });

  return {
    name,
    pid: proc.pid!,
    url: String(info.url),
    path: String(info.path),
    info,
    command(line, commandTimeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: no reply to '${line}'`)), commandTimeoutMs);
        replies.push((value) => {
          clearTimeout(timer);
          if (typeof value.error === 'string') reject(new Error(`${name}: ${value.error}`));
          else resolve(value);
        });
        proc.stdin!.write(`${line}\n`);
      });
    },
    async stop(graceMs = 10_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
