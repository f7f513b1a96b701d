import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Paths that may carry PHI or secrets. Logs carry method, route, status, duration and
 * resource ids only; anything else that slips into a log object is censored here.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'access_token',
  'client_assertion',
  'token',
  'body',
  'req.body',
  'res.body',
  'patient',
  'name',
  'birthDate',
  'identifier',
  '*.patient',
  '*.name',
  '*.birthDate',
  '*.identifier',
  '*.access_token',
  '*.client_assertion',
];

export interface LoggerOptions {
  level: string;
  /** Where lines go; a stream for tests, stdout otherwise. */
  destination?: pino.DestinationStream;
}

/** One JSON line per event, PHI-bearing paths censored. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'second-opinion' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination,
  );
}
