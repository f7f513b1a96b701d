/**
 * Whether an error says the database could not be reached (as opposed to a query it refused):
 * the connection was refused, reset or ended, the server is shutting down or starting, or the
 * embedded store's handle is closed. Such a request may succeed when retried, so it is answered
 * 503 with Retry-After instead of 500. Drizzle wraps driver errors: the `cause` chain is read.
 */
export function isStoreUnavailable(err: unknown): boolean {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || SQLSTATES.has(code) || code.startsWith('08'))) return true;
    if (typeof message === 'string' && MESSAGES.some((m) => m.test(message))) return true;
  }
  return false;
}

/** Socket errors of the PostgreSQL driver (node:net). */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** SQLSTATE class 57 operator intervention: admin_shutdown, crash_shutdown, cannot_connect_now (class 08, connection exceptions, above). */
const SQLSTATES = new Set(['57P01', '57P02', '57P03']);
/** pg's and PGlite's own words for a lost or closed connection (they carry no code). */
const MESSAGES = [/^Connection terminated/, /^timeout exceeded when trying to connect/, /Client has encountered a connection error and is not queryable/, /^PGlite is closed/i, /Cannot use a pool after calling end on the pool/];
