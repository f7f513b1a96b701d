import { Router } from 'express';
import type { Guard } from '../access/route-guard.ts';
import { queryParams } from '../http/query-params.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { listPushes, parsePushListQuery, redrivePush } from './push-admin.ts';

/**
 * `GET /admin/record-pushes` (auditor or admin): record sets pushed to clinics' own FHIR servers
 * and what those answered; `POST /admin/record-pushes/{id}/retry`: re-drives a push that gave up.
 */
export function createRecordPushAdminRouter(deps: { guard: Guard; store: ResourceStore; jobs: JobQueue; now: () => Date }): Router {
  const router = Router();
  router.get('/admin/record-pushes', deps.guard('GET', '/admin/record-pushes'), async (req, res) => {
    res.json(await listPushes(parsePushListQuery(queryParams(req)), deps));
  });
  router.post('/admin/record-pushes/:id/retry', deps.guard('POST', '/admin/record-pushes/:id/retry'), async (req, res) => {
    res.status(202).json(await redrivePush(req.params.id as string, deps));
  });
  return router;
}
