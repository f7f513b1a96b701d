import { startPeriodic } from '../jobs/periodic.ts';
import type { Logger } from '../log/logger.ts';
import type { BlobStore } from './blob-store.ts';

/**
 * Runs `BlobStore.sweep` now and every `intervalSeconds`, one run at a time, deleting bytes no
 * `blob` row points at once they are `olderThanSeconds` old. Every replica may run it: a row
 * is inserted only after its bytes are durable, and bytes younger than the cut-off are never
 * touched, so a sweep cannot take the bytes of a put still in progress on another replica.
 * `stop()` waits for a run in progress.
 */
export function startBlobSweep(
  deps: { blobs: BlobStore; now: () => Date },
  settings: { intervalSeconds: number; olderThanSeconds: number },
  log: Logger,
): { stop(): Promise<void> } {
  return startPeriodic(
    async () => {
      const removed = await deps.blobs.sweep(new Date(deps.now().getTime() - settings.olderThanSeconds * 1000));
      if (removed > 0) log.info({ removed, store: deps.blobs.backend.kind }, 'blob sweep removed bytes no blob points at');
    },
    settings.intervalSeconds,
    (err) => log.warn({ err }, 'blob sweep failed'),
  );
}
