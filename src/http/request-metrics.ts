import type { Request, RequestHandler } from 'express';
import { rulesFitting } from '../access/route-rules.ts';
import { stopwatch, type ServiceMetrics } from '../metrics/metrics.ts';

/**
 * Counts every answered request by its route template (`/consults/:taskId/opinion`), never the
 * raw path: ids in paths could be guessed or tied to patients. A request answered before routing
 * (401, 429, a malformed URL) is counted under the template of the access rule its path fits,
 * and one that fits none under `unmatched`.
 */
export function requestMetrics(metrics: Pick<ServiceMetrics, 'httpRequest'>): RequestHandler {
  return (req, res, next) => {
    const elapsed = stopwatch();
    res.on('finish', () => metrics.httpRequest(routeTemplate(req), req.method, res.statusCode, elapsed()));
    next();
  };
}

export function routeTemplate(req: Request): string {
  const route = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof route === 'string') return `${req.baseUrl}${route}`;
  const path = (req.originalUrl.split('?')[0] ?? '').replace(/\/+$/, '') || '/';
  const [fit] = rulesFitting(path.split('/'));
  return fit ? fit.rule.path : 'unmatched';
}
