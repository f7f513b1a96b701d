import { Router } from 'express';
import type { Guard } from '../access/route-guard.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { queryParams } from '../http/query-params.ts';
import { listDeliveries, parseDeliveryListQuery } from './list-deliveries.ts';
import { redriveDelivery } from './redrive.ts';

/**
 * `GET /admin/deliveries` (auditor or admin): the post-backs and what the EHR answered;
 * `POST /admin/deliveries/{id}/retry`: re-drives a post-back that gave up.
 */
export function createDeliveryAdminRouter(deps: { guard: Guard; store: ResourceStore; jobs: JobQueue; now: () => Date }): Router {
  const router = Router();
  router.get('/admin/deliveries', deps.guard('GET', '/admin/deliveries'), async (req, res) => {
    res.json(await listDeliveries(parseDeliveryListQuery(queryParams(req)), deps));
  });
  router.post('/admin/deliveries/:id/retry', deps.guard('POST', '/admin/deliveries/:id/retry'), async (req, res) => {
    res.status(202).json(await redriveDelivery(req.params.id as string, deps));
  });
  return router;
}
