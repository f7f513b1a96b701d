/**
 * The abuse-limit settings every bench gives the service it measures, explicitly: a bench
 * drives hundreds of requests per second from one client on one address over a few
 * connections, on purpose, so the per-client and per-address rate limits and the bounds on
 * connections and requests per connection are switched off (0). What is measured is the
 * service, not its limits. The HTTP timeouts keep their defaults: bench requests are fast.
 */
export const BENCH_LIMITS_ENV = {
  TOKEN_RATE_LIMIT_PER_CLIENT: '0',
  TOKEN_RATE_LIMIT_PER_IP: '0',
  API_RATE_LIMIT_PER_CLIENT: '0',
  API_RATE_LIMIT_PER_IP: '0',
  HTTP_MAX_REQUESTS_PER_SOCKET: '0',
  HTTP_MAX_CONNECTIONS: '0',
} as const;
