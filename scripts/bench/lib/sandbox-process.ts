/**
 * The sandbox EHR as a child process (scripts/bench/delivery-sandbox.ts): started on a free
 * port, seeded, reporting over IPC the instant each DocumentReference/Communication create was
 * answered (CLOCK_MONOTONIC, shared by every process of the machine), and answering commands
 * (usage, identifier counts, a stored document). Stopped at clean-up.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { SeededIds } from '../../../test/support/sandbox-ehr/seed.ts';
import type { Arrival, SandboxCommand, SandboxMessage } from '../delivery-sandbox.ts';
import { onCleanup } from './run.ts';

/** A command without its id (the id is added when sent). */
export type CommandBody = SandboxCommand extends unknown ? (SandboxCommand extends infer C ? (C extends SandboxCommand ? Omit<C, 'id'> : never) : never) : never;
export interface SandboxChild {
  pid: number;
  url: string;
  baseUrl: string;
  tokenUrl: string;
  startupMs: number;
  /** The sandbox's seeded ids (its own, server-assigned). */
  seeded: SeededIds;
  /** Every DocumentReference / Communication create the sandbox answered, in order. */
  arrivals: Arrival[];
  onArrival: ((a: Arrival) => void) | undefined;
  command<T>(cmd: CommandBody, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

export async function startSandboxProcess(label: string, options: { indexed: boolean }): Promise<SandboxChild> {
  const env: NodeJS.ProcessEnv = { ...process.env, BENCH_EHR_INDEXED: options.indexed ? '1' : '0' };
  delete env.NODE_OPTIONS;
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, '..', 'delivery-sandbox.ts')], { cwd: path.join(import.meta.dirname, '..', '..', '..'), env, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
  children.add(proc);
  onCleanup(`stop the sandbox ${label}`, async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  const stderr: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (line) => {
    stderr.push(line);
    if (stderr.length > 40) stderr.shift();
  });
  const replies = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  const child: Partial<SandboxChild> & { arrivals: Arrival[] } = { arrivals: [], onArrival: undefined };
  const ready = new Promise<Extract<SandboxMessage, { type: 'ready' }>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sandbox ${label}: not ready after 60 s\n${stderr.join('\n')}`)), 60_000);
    proc.on('message', (m: SandboxMessage) => {
      if (m.type === 'ready') {
        clearTimeout(timer);
        resolve(m);
      } else if (m.type === 'arrivals') {
        for (const a of m.arrivals) {
          child.arrivals.push(a);
          child.onArrival?.(a);
        }
      } else if (m.type === 'reply') {
        const r = replies.get(m.id);
        replies.delete(m.id);
        if (m.error !== undefined) r?.reject(new Error(`sandbox ${label}: ${m.error}`));
        else r?.resolve(m.value);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      children.delete(proc);
      const err = new Error(`sandbox ${label} exited (code ${code})\n${stderr.join('\n')}`);
      reject(err);
      for (const r of replies.values()) r.reject(err);
      replies.clear();
    });
  });
  const info = await ready;
  return Object.assign(child, {
    pid: info.pid,
    url: info.url,
    baseUrl: info.baseUrl,
    tokenUrl: info.tokenUrl,
    startupMs: info.startupMs,
    seeded: info.seeded,
    command<T>(cmd: CommandBody, timeoutMs = 60_000): Promise<T> {
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          replies.delete(id);
          reject(new Error(`sandbox ${label}: no reply to ${cmd.type}`));
        }, timeoutMs);
        replies.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        proc.send({ ...cmd, id } as SandboxCommand);
      });
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, 'exit');
      if (proc.connected) proc.disconnect();
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  }) as SandboxChild;
}

