/**
 * The life cycle every bench shares: clean-up actions registered as resources are made (child
 * processes, throwaway schemas and databases, temporary directories), run once in reverse
 * order at the end, on an error, or on SIGINT/SIGTERM; and the exit code of `main`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { say } from './common.ts';

const actions: { label: string; run: () => unknown }[] = [];
let cleaning: Promise<void> | undefined;

/** Registers a clean-up action; `label` names it in the interrupt message. */
export function onCleanup(label: string, run: () => unknown): void {
  actions.push({ label, run });
}

/** Runs every registered action once, newest first; failures are reported, not thrown. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const action of actions.reverse()) {
      try {
        await action.run();
      } catch (err) {
        say(`warning: clean-up '${action.label}' failed: ${(err as Error).message}`);
      }
    }
  })();
  return cleaning;
}

/** A temporary directory removed at clean-up. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  onCleanup(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs a bench's `main` and exits with its code after clean-up; SIGINT/SIGTERM clean up and exit 130. */
export async function runBench(name: string, main: () => Promise<number>): Promise<never> {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      say(`\n${signal}: ${actions.map((a) => a.label).reverse().join(', ') || 'nothing to clean up'}`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  let code = 1;
  try {
    code = await main();
  } catch (err) {
    if (!cleaning) say(`${name} failed: ${(err as Error).stack ?? String(err)}`); // else interrupted: said so already
    code = 1;
  } finally {
    await cleanup();
  }
  process.exit(code);
}
