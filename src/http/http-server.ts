import { createServer, type RequestListener, type Server } from 'node:http';
import type { HttpServerLimits } from '../config/config.ts';

/**
 * The HTTP server of the service with its connection limits (issue 10 §1.5): idle and
 * slow-loris connections (headers or body trickling in) are cut with a 408 and keep-alive is
 * bounded in time and in requests.
 *
 * `requestTimeout` covers *receiving* the request only: Node stops timing a request once its
 * last byte has arrived, so a long response, a GiB Binary download to a slow reader, is not
 * cut by it; no socket inactivity timeout is set for the same reason. Node checks the timeouts
 * every `connectionsCheckingInterval` (30 s by default, which let slow clients stay open long
 * past them); here a quarter of the shorter timeout, between 100 ms and 1 s.
 */
export function createHttpServer(app: RequestListener, limits: HttpServerLimits): Server {
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, Math.max(100, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4))),
    },
    app,
  );
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket;
  if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections;
  return server;
}
