/**
 * The tiny line protocol between scripts/bench-intake.ts (parent) and a benchmark child
 * (echo-server.ts, intake-server.ts, raw-insert-server.ts). Child -> parent on stdout, one line each:
 *   BENCH_READY {json}        once listening
 *   BENCH_REPLY {json}        answer to a command
 * Parent -> child on stdin, one command per line: `usage` (memory and CPU time so far),
 * `prof-start [interval µs]`, `prof-stop <file>`, and the child's own `commands`.
 * When stdin closes (the parent died), the child exits, so no orphan keeps a port or a pool.
 */
import { writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { startProfiler } from './lib/profiler.ts';

export interface ChildHooks {
  /** Graceful stop (close server and pool); the process exits afterwards. */
  stop(): Promise<void>;
  /** Further commands of this child: name -> handler of the words after it; the reply is its result. */
  commands?: Record<string, (args: string[]) => Promise<unknown>>;
}

export function announceReady(info: Record<string, unknown>): void {
  process.stdout.write(`BENCH_READY ${JSON.stringify({ pid: process.pid, ...info })}\n`);
}

function reply(value: unknown): void {
  process.stdout.write(`BENCH_REPLY ${JSON.stringify(value)}\n`);
}

/** Serves the parent's commands and exits on SIGTERM/SIGINT or when the parent goes away. */
export function serveParent(hooks: ChildHooks): void {
  let profiler: Awaited<ReturnType<typeof startProfiler>> | undefined;
  let exiting = false;
  const exit = (code: number): void => {
    if (exiting) return;
    exiting = true;
    const hardStop = setTimeout(() => process.exit(code), 5000);
    hardStop.unref();
    hooks.stop().then(
      () => process.exit(code),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => exit(0));
  process.once('SIGINT', () => exit(0));

  const lines = createInterface({ input: process.stdin });
  lines.on('close', () => exit(0));
  lines.on('line', (line) => {
    const [command, ...args] = line.trim().split(' ');
    void (async () => {
      try {
        switch (command) {
          case 'usage': {
            const m = process.memoryUsage();
            const cpu = process.cpuUsage();
            reply({ rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, cpuMicros: cpu.user + cpu.system, at: performance.now() });
            break;
          }
          case 'prof-start': {
            profiler = await startProfiler(Number(args[0] ?? 500));
            reply({ ok: true });
            break;
          }
          case 'prof-stop': {
            if (!profiler) throw new Error('profiler not started');
            const profile = await profiler.stop();
            profiler = undefined;
            if (args[0]) await writeFile(args[0], JSON.stringify(profile));
            reply({ ok: true, file: args[0] });
            break;
          }
          default: {
            const own = command ? hooks.commands?.[command] : undefined;
            if (!own) throw new Error(`unknown command ${command}`);
            reply(await own(args));
          }
        }
      } catch (err) {
        reply({ error: (err as Error).message });
      }
    })();
  });
}
