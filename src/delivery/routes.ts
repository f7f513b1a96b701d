import { Router } from 'express';
import type { Guard } from '../access/route-guard.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { redriveDelivery } from './redrive.ts';

/** `POST /admin/deliveries/{id}/retry` (auditor or admin): re-drives a post-back that gave up. */
export function createDeliveryAdminRouter(deps: { guard: Guard; store: ResourceStore; jobs: JobQueue; now: () => Date }): Router {
  const router = Router();
  router.post('/admin/deliveries/:id/retry', deps.guard('POST', '/admin/deliveries/:id/retry'), async (req, res) => {
    res.status(202).json(await redriveDelivery(req.params.id as string, deps));
  });
  return router;
}
