import { Router } from 'express';
import type { Guard } from '../access/route-guard.ts';

export type Scrape = () => Promise<{ contentType: string; body: string }>;

/** `GET /metrics` on the main port (METRICS=bearer): a token with the `operator` role. */
export function createMetricsRouter(deps: { guard: Guard; scrape: Scrape }): Router {
  const router = Router();
  router.get('/metrics', deps.guard('GET', '/metrics'), async (_req, res) => {
    const { contentType, body } = await deps.scrape();
    res.set('Cache-Control', 'no-store').type(contentType).send(body);
  });
  return router;
}
