import { Router } from 'express';
import { requireCaller, requireRole } from '../auth/middleware.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { redriveDelivery } from './redrive.ts';

/** `POST /admin/deliveries/{id}/retry` (auditor or admin): re-drives a post-back that gave up. */
export function createDeliveryAdminRouter(deps: { store: ResourceStore; jobs: JobQueue; now: () => Date }): Router {
  const router = Router();
  router.post('/admin/deliveries/:id/retry', async (req, res) => {
    requireRole(requireCaller(), ['auditor', 'admin']);
    res.status(202).json(await redriveDelivery(req.params.id, deps));
  });
  return router;
}
