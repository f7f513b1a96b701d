/**
 * `fn` over the items of `batches` (pages of a search, say), at most `limit` calls at a time,
 * starting on the first batch while the next ones are still being read: the reading runs
 * alongside the calls, not before them. `prepare` sees each batch before its items are handed
 * out (one bulk look-up per page). Results come back in the order the items came in. The first
 * rejection (of `fn`, `prepare` or the reading) rejects the whole, once the calls in flight have
 * settled; no new call starts after it, and the reading stops.
 */
export async function mapAsTheyCome<T, R>(
  batches: AsyncIterable<readonly T[]>,
  limit: number,
  fn: (item: T) => Promise<R>,
  prepare: (batch: readonly T[]) => Promise<void> = async () => undefined,
): Promise<R[]> {
  const results: R[] = [];
  const queue: { item: T; index: number }[] = [];
  let count = 0;
  let reading = true;
  let failed: { error: unknown } | undefined;
  let waiters: (() => void)[] = [];
  const wake = () => {
    const woken = waiters;
    waiters = [];
    for (const w of woken) w();
  };

  const reader = (async () => {
    try {
      for await (const batch of batches) {
        if (failed) break;
        await prepare(batch);
        for (const item of batch) queue.push({ item, index: count++ });
        wake();
      }
    } catch (error) {
      failed ??= { error };
    } finally {
      reading = false;
      wake();
    }
  })();

  const worker = async () => {
    for (;;) {
      if (failed) return;
      const next = queue.shift();
      if (next) {
        try {
          results[next.index] = await fn(next.item);
        } catch (error) {
          failed ??= { error };
        }
        continue;
      }
      if (!reading) return;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };

  await Promise.all([reader, ...Array.from({ length: Math.max(1, limit) }, worker)]);
  if (failed) throw failed.error;
  results.length = count;
  return results;
}
