/**
 * What of an error may reach a log line: an allowlist, never redaction.
 *
 * Error messages are the usual way PHI reaches logs. drizzle's `DrizzleQueryError` message is
 * the failed SQL followed by every parameter (a whole intake request, a whole Task); a
 * PostgreSQL error's `detail`, `where`, `hint` and `internalQuery` quote the row, and even its
 * primary message can quote a value (`invalid input syntax for type uuid: "…"`); a `JSON.parse`
 * error quotes the text it choked on; jose keeps the JWT payload on its errors; an EHR's
 * OperationOutcome can say anything. So nothing is copied from an error unless it is known to
 * carry no values:
 *
 * - `type`: the class name (`DrizzleQueryError`, `DatabaseError`, `OutboundHttpError`);
 * - `code`: a code made of capitals, digits and `_` (SQLSTATE `22P05`, `ECONNRESET`,
 *   `ERR_JWT_EXPIRED`, `UND_ERR_SOCKET`), or an integer;
 * - `status`: an HTTP status the error carries;
 * - for a PostgreSQL error (SQLSTATE code and a severity; type `DatabaseError`): its severity
 *   and the names of the schema, table, column, data type, constraint and server routine;
 * - what the error's own class declares safe through {@link LOG_FIELDS} (our error classes:
 *   an upstream status, an OAuth error code, a message built from fixed text only);
 * - `message`: only when it is known to be fixed text: what the error's class declares through
 *   {@link LOG_FIELDS}, a Node system error's syscall and code (`connect ECONNREFUSED`), or one
 *   of the fixed messages of fetch and AbortSignal ({@link FIXED_MESSAGES});
 * - `stack`: the frames only; the header, which repeats the message, is dropped;
 * - `cause` (and the `errors` of an AggregateError), serialized the same way.
 *
 * Anything else (a thrown string, a plain object, a non-Error) is reduced to its type.
 */

/**
 * The method an error class implements to say which of its fields may be logged. Only ever
 * return values that cannot carry PHI: codes, statuses, names of configuration entries, and
 * `message` only when every message the class builds is fixed text.
 */
export const LOG_FIELDS: unique symbol = Symbol('second-opinion.logFields');

export type LogFieldValue = string | number | boolean;
/** What a {@link LOG_FIELDS} method returns; undefined entries are left out. */
export type LogFields = Record<string, LogFieldValue | undefined>;

/** An error that declares its own loggable fields. */
export interface SelfDescribingError {
  [LOG_FIELDS](): LogFields;
}

/** An error as it appears in a log line. */
export interface SafeError {
  type: string;
  code?: string | number;
  status?: number;
  stack?: string;
  cause?: SafeError;
  errors?: SafeError[];
  [field: string]: LogFieldValue | SafeError | SafeError[] | undefined;
}

const CODE = /^[A-Z0-9_]{1,64}$/;
const SQLSTATE = /^[0-9A-Z]{5}$/;
const PG_SEVERITY = new Set(['ERROR', 'FATAL', 'PANIC', 'WARNING', 'NOTICE', 'DEBUG', 'INFO', 'LOG']);
/** Names of database objects and of the server's C routines: identifiers, never values. */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
const PG_NAME_FIELDS = ['schema', 'table', 'column', 'dataType', 'constraint', 'routine'] as const;
/** One V8 stack frame: `    at fn (file:line:col)`, `    at file:line:col`, `    at Array.map (<anonymous>)`. */
const FRAME = /^ {4}at \S.{0,500}(?:\)|:\d+:\d+)$/;
const RESERVED = new Set(['type', 'code', 'status', 'stack', 'cause', 'errors']);
const MAX_FRAMES = 30;
const MAX_DEPTH = 4;
const MAX_AGGREGATED = 5;
const MAX_FIELD_LENGTH = 2000;
/** Messages that are fixed text whatever the input: fetch's (undici) and AbortSignal's. */
export const FIXED_MESSAGES: ReadonlySet<string> = new Set([
  'fetch failed',
  'terminated',
  'other side closed',
  'This operation was aborted',
  'The operation was aborted due to timeout',
  'The operation was aborted.',
  'Connect Timeout Error',
  'Headers Timeout Error',
  'Body Timeout Error',
  'socket hang up',
]);

/**
 * The log form of any thrown value; see the module comment for what is kept. Used by the
 * logger's `err` serializer, so `log.error({ err }, 'what failed')` is always safe.
 */
export function safeError(value: unknown): SafeError {
  return serialize(value, 0, new Set());
}

function serialize(value: unknown, depth: number, seen: Set<unknown>): SafeError {
  if (typeof value !== 'object' || value === null) return { type: typeof value };
  if (seen.has(value)) return { type: typeOf(value) };
  seen.add(value);
  const err = value as Record<string | symbol, unknown>;
  const out: SafeError = { type: typeOf(value) };
  if (!(value instanceof Error)) return out;

  const code = err.code;
  if ((typeof code === 'string' && CODE.test(code)) || Number.isInteger(code)) out.code = code as string | number;
  const status = err.status ?? err.statusCode;
  if (typeof status === 'number' && Number.isInteger(status) && status >= 100 && status <= 599) out.status = status;
  if (typeof code === 'string' && SQLSTATE.test(code) && typeof err.severity === 'string') {
    // node-postgres and PGlite both call it DatabaseError (PGlite's class name is minified away).
    out.type = 'DatabaseError';
    if (PG_SEVERITY.has(err.severity)) out.severity = err.severity;
    for (const field of PG_NAME_FIELDS) {
      const name = err[field];
      if (typeof name === 'string' && IDENTIFIER.test(name)) out[field] = name;
    }
  }
  if (typeof err[LOG_FIELDS] === 'function') {
    let declared: LogFields = {};
    try {
      declared = (value as unknown as SelfDescribingError)[LOG_FIELDS]();
    } catch {
      // A broken declaration loses its fields, never the log line.
    }
    for (const [key, field] of Object.entries(declared)) {
      if (RESERVED.has(key)) continue;
      if (typeof field === 'string') out[key] = field.slice(0, MAX_FIELD_LENGTH);
      else if (typeof field === 'boolean' || (typeof field === 'number' && Number.isFinite(field))) out[key] = field;
    }
  }
  if (out.message === undefined) {
    const message = fixedMessage(value as Error & { syscall?: unknown });
    if (message) out.message = message;
  }
  const frames = stackFrames(value);
  if (frames) out.stack = frames;
  if (depth < MAX_DEPTH) {
    if (err.cause !== undefined) out.cause = serialize(err.cause, depth + 1, seen);
    if (value instanceof AggregateError && Array.isArray(value.errors)) {
      out.errors = value.errors.slice(0, MAX_AGGREGATED).map((e) => serialize(e, depth + 1, seen));
    }
  }
  return out;
}

/** The error's message when it is known to be fixed text; see the module comment. */
function fixedMessage(err: Error & { syscall?: unknown; code?: unknown }): string | undefined {
  let message: unknown;
  try {
    message = err.message;
  } catch {
    return undefined;
  }
  if (typeof message !== 'string') return undefined;
  if (FIXED_MESSAGES.has(message)) return message;
  // A Node system error: "connect ECONNREFUSED 127.0.0.1:8090"; syscall and code only (no address).
  if (typeof err.syscall === 'string' && IDENTIFIER.test(err.syscall) && typeof err.code === 'string' && CODE.test(err.code)) return `${err.syscall} ${err.code}`;
  return undefined;
}

/** The class name; a constructor whose name is not an identifier counts as a plain Error. */
function typeOf(value: object): string {
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  if (typeof name === 'string' && IDENTIFIER.test(name)) return name;
  return value instanceof Error ? 'Error' : 'Object';
}

/**
 * The `    at …` lines of the stack. The header (`Name: message`, which may span lines and
 * embed values) is cut off first, so a message line shaped like a frame cannot pass as one.
 */
export function stackFrames(err: Error): string | undefined {
  let stack: unknown;
  try {
    stack = err.stack;
  } catch {
    return undefined;
  }
  if (typeof stack !== 'string') return undefined;
  let rest = stack;
  const message = typeof err.message === 'string' ? err.message : '';
  const at = message ? rest.indexOf(message) : -1;
  if (at >= 0) rest = rest.slice(at + message.length);
  const frames = rest
    .split('\n')
    .filter((line) => FRAME.test(line))
    .slice(0, MAX_FRAMES);
  return frames.length > 0 ? frames.join('\n') : undefined;
}
