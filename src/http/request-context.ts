import { randomBytes, randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from '../log/logger.ts';
import { runWithContext, type RequestContext } from './context.ts';
import { loggablePath } from './loggable-path.ts';

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** Trace id from a W3C `traceparent` header, or a fresh one. */
export function traceIdFrom(header: string | undefined): string {
  const match = header ? TRACEPARENT.exec(header.trim()) : null;
  if (match?.[1] && !/^0+$/.test(match[1])) return match[1];
  return randomBytes(16).toString('hex');
}

/**
 * Opens the request context (request id, trace id, child logger) and writes one log line
 * per request when it finishes: method, route, path (our ids only, no query string: see
 * loggable-path.ts), status, duration, caller ids. Never headers or bodies.
 */
export function requestContext(log: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    const traceId = traceIdFrom(req.header('traceparent'));
    const ctx: RequestContext = { requestId, traceId, log: log.child({ requestId, traceId }) };
    res.setHeader('X-Request-Id', requestId);
    res.on('finish', () => {
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      ctx.log.info(
        {
          method: req.method,
          path: loggablePath(req),
          route: req.route ? `${req.baseUrl}${req.route.path}` : undefined,
          status: res.statusCode,
          durationMs: Math.round(durationMs * 100) / 100,
          client: ctx.caller?.clientId,
          participant: ctx.caller?.participantId,
        },
        'request',
      );
    });
    runWithContext(ctx, next);
  };
}
