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

/** An error logged under another key than `err` (`{ cause: err }`) gets the same treatment. */
function errorsMadeSafe(object: Record<string, unknown>): Record<string, unknown> {
  let safe: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(object)) {
    if (key !== 'err' && value instanceof Error) {
      safe ??= { ...object };
      safe[key] = safeError(value);
    }
  }
  return safe ?? object;
}
