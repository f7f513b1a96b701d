import { Router } from 'express';

/**
 * `/healthz`: the process is alive. `/readyz`: it can serve (store reachable, migrations
 * done); orchestrators stop routing to a replica whose readiness fails.
 */
export function createHealthRouter(deps: { ready: () => Promise<void> }): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    try {
      await deps.ready();
      res.json({ status: 'ready' });
    } catch {
      res.status(503).json({ status: 'unavailable' });
    }
  });
  return router;
}
