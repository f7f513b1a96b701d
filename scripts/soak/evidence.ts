/**
 * What a failed run leaves behind for whoever investigates it: every line each replica logged
 * (JSON, as the service wrote it: ids, outcomes and error types, no PHI), every call the
 * clients made with its status, and the fault windows, in a directory that outlives the run.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ClientCall } from './driver.ts';
import type { FaultWindow } from './faults.ts';
import type { SoakTopology } from './topology.ts';

const ndjson = (rows: readonly unknown[]) => rows.map((row) => JSON.stringify(row)).join('\n') + '\n';

export async function keepEvidence(topology: SoakTopology, calls: readonly ClientCall[], windows: readonly FaultWindow[]): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'soak-evidence-'));
  for (const replica of topology.replicas) {
    const lines = replica.pastLogs.flatMap((logs, run) => logs.map((line) => ({ run: run + 1, ...line })));
    await writeFile(path.join(dir, `replica-${replica.index}.ndjson`), ndjson(lines));
  }
  await writeFile(path.join(dir, 'calls.ndjson'), ndjson(calls.map((c) => ({ ...c, at: new Date(c.at).toISOString() }))));
  await writeFile(path.join(dir, 'faults.ndjson'), ndjson(windows.map((w) => ({ ...w, start: new Date(w.start).toISOString(), ...(w.end ? { end: new Date(w.end).toISOString() } : {}) }))));
  return dir;
}
