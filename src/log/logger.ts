import pino, { type Logger } from 'pino';
import { safeError } from './safe-error.ts';

export type { Logger };

/**
 * Paths that may carry PHI or secrets: the second line of defence. The first is that no log
 * call passes request or resource content, and that errors go through {@link safeError}.
 * Logs carry method, route, status, duration, ids and error types; anything else that slips
 * into a log object under one of these names is censored.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers',
  'authorization',
  'access_token',
  'client_assertion',
  'token',
  'body',
  'req.body',
  'res.body',
  'query',
  'params',
  'detail',
  'patient',
  'name',
  'birthDate',
  'identifier',
  'display',
  'question',
  'note',
  'resource',
  '*.headers',
  '*.authorization',
  '*.token',
  '*.body',
  '*.query',
  '*.params',
  '*.detail',
  '*.patient',
  '*.name',
  '*.birthDate',
  '*.identifier',
  '*.display',
  '*.question',
  '*.note',
  '*.resource',
  '*.access_token',
  '*.client_assertion',
  // Two levels down too (`{ lookup: { requester: { name } } }`): a wildcard matches one level only.
  ...['authorization', 'token', 'body', 'patient', 'name', 'birthDate', 'identifier', 'display', 'question', 'note', 'resource', 'access_token', 'client_assertion'].map((key) => `*.*.${key}`),
];

/** The line's message when a call gives none: pino would otherwise use the error's message. */
const FALLBACK_MESSAGE = 'error';

export interface LoggerOptions {
  level: string;
  /** Where lines go; a stream for tests, stdout otherwise. */
  destination?: pino.DestinationStream;
}

/**
 * One JSON line per event. Errors are serialized by {@link safeError} under any key (class,
 * code, status, stack frames; never a message from an unknown source), a line without a
 * message of its own never borrows an error's, and PHI-bearing paths are censored.
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'second-opinion' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: safeError },
      hooks: { logMethod: withOwnMessage },
      formatters: { level: (label) => ({ level: label }), log: errorsMadeSafe },
    },
    options.destination,
  );
}

/**
 * pino takes an error's `message` as the line's `msg` when the call gives none
 * (`log.error(err)`, `log.warn({ err })`): give those lines a fixed one instead.
 */
function withOwnMessage(this: Logger, args: Parameters<pino.LogFn>, method: pino.LogFn): void {
  const [first, second] = args as unknown[];
  if (typeof second === 'string') return method.apply(this, args);
  if (first instanceof Error) return method.call(this, { err: first }, FALLBACK_MESSAGE);
  if (typeof first === 'object' && first !== null && 'err' in first && !('msg' in first)) return method.call(this, first, FALLBACK_MESSAGE);
  return method.apply(this, args);
}

/**
 * An error logged under another key than `err` (`{ cause: err }`), or nested in an object
 * (`{ attempt: { error: err } }`), gets the same treatment. Without it pino would print a nested
 * error as its own enumerable fields only: `{}`, or `{"name":"[redacted]"}` once the redaction
 * paths have touched it, with neither type nor stack.
 */
function errorsMadeSafe(object: Record<string, unknown>): Record<string, unknown> {
  return madeSafe(object, 0) as Record<string, unknown>;
}

const MAX_NESTING = 4;

function madeSafe(value: unknown, depth: number): unknown {
  if (value instanceof Error) return depth === 0 ? value : safeError(value);
  if (typeof value !== 'object' || value === null || depth > MAX_NESTING) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const safe = madeSafe(item, depth + 1);
      if (safe !== item) (copy ??= [...value])[i] = safe;
    });
    return copy ?? value;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return value;
  let copy: Record<string, unknown> | undefined;
  for (const [key, item] of Object.entries(value)) {
    // `err` at the top is the serializer's (safeError); anywhere else it is made safe here.
    if (depth === 0 && key === 'err') continue;
    const safe = madeSafe(item, depth + 1);
    if (safe !== item) (copy ??= { ...(value as Record<string, unknown>) })[key] = safe;
  }
  return copy ?? value;
}
