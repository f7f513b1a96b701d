import { Router } from 'express';

/** A dependency readiness depends on: a cheap round trip that throws (or hangs) when it is unreachable. */
export type ReadinessChecks = Readonly<Record<string, () => Promise<void>>>;

/** How long one readiness check may take before it counts as unreachable. */
export const READINESS_TIMEOUT_MS = 3_000;

/**
 * `/healthz`: the process is alive. `/readyz`: it can serve: every dependency answers (the
 * database, the job queue: each checked on every probe, so readiness comes back by itself when
 * they do). A failure is 503 naming the dependencies that did not answer, never why (no error
 * text, host or address); orchestrators stop routing to a replica whose readiness fails.
 */
export function createHealthRouter(deps: { checks: ReadinessChecks; timeoutMs?: number }): Router {
  const router = Router();
  const timeoutMs = deps.timeoutMs ?? READINESS_TIMEOUT_MS;
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const names = Object.keys(deps.checks);
    const results = await Promise.all(names.map((name) => withTimeout((deps.checks[name] as () => Promise<void>)(), timeoutMs).then(() => true, () => false)));
    const unavailable = names.filter((_, i) => !results[i]);
    res.set('Cache-Control', 'no-store');
    if (unavailable.length === 0) {
      res.json({ status: 'ready' });
      return;
    }
    res.status(503).set('Retry-After', '5').json({ status: 'unavailable', unavailable });
  });
  return router;
}

function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
  });
  // A check that rejects after the timeout has already lost: nothing is left to catch it.
  promise.catch(() => undefined);
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
