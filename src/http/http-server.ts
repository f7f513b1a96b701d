import { createServer, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { Server as NetServer } from 'node:net';
import type { HttpServerLimits } from '../config/config.ts';

/**
 * The HTTP server of the service with its connection limits: idle and
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
  const state: DrainState = { draining: false, active: new Set() };
  DRAIN.set(server, state);
  // Before the app: a response of a draining server says `Connection: close`.
  server.prependListener('request', (_req, res: ServerResponse) => {
    if (state.draining) {
      res.setHeader('Connection', 'close');
      return;
    }
    state.active.add(res);
    res.once('close', () => state.active.delete(res));
  });
  return server;
}

interface DrainState {
  draining: boolean;
  /** Responses not yet finished (their `Connection` header may still be set). */
  active: Set<ServerResponse>;
}

const DRAIN = new WeakMap<Server, DrainState>();

/**
 * Graceful close of a server made by `createHttpServer`, without resetting a request:
 * - the listening socket closes at once (new connections are refused, never half-accepted);
 * - every response not yet sent, and every request still arriving on an open keep-alive
 *   connection, is answered with `Connection: close`, so the connection ends after it;
 * - idle keep-alive connections are NOT cut (a client may be sending on one at that moment,
 *   which would reset its request): they end at their keep-alive timeout, which the server
 *   announces (`Keep-Alive: timeout=N`) and keep-alive aware clients stop reusing before;
 * - at `deadline` (epoch ms) whatever is still open is closed (a request still running is cut).
 * Resolves when every connection is gone.
 */
export async function drainHttpServer(server: Server, deadline: number): Promise<void> {
  const state = DRAIN.get(server);
  if (state) {
    state.draining = true;
    for (const res of state.active) if (!res.headersSent) res.setHeader('Connection', 'close');
  }
  const closed = new Promise<void>((resolve) => {
    // net.Server's close: http.Server's would also cut the idle keep-alive connections at once.
    NetServer.prototype.close.call(server, () => resolve());
  });
  const timer = setTimeout(() => server.closeAllConnections(), Math.max(0, deadline - Date.now()));
  try {
    await closed;
  } finally {
    clearTimeout(timer);
  }
  // http.Server's close now only stops its connection-checking timer (every connection is gone).
  server.close();
}
