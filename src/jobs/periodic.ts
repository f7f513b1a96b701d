/**
 * Runs `task` now and every `intervalSeconds`, one run at a time (a tick while a run is in
 * progress is skipped). The timer does not keep the process alive; `stop()` clears it and waits
 * for a run in progress. `task` reports its own outcome: a rejection is handed to `onError`.
 */
export function startPeriodic(task: () => Promise<void>, intervalSeconds: number, onError: (err: unknown) => void): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  const run = () => {
    running ??= task()
      .catch(onError)
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(run, intervalSeconds * 1000);
  timer.unref();
  run();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
