import { getStatus, OperationOutcomeError } from '@medplum/core';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from '../log/logger.ts';
import { FHIR_JSON } from '../fhir/constants.ts';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import { ResourceValidationError } from '../fhir/validator.ts';
import { getContext } from './context.ts';
import { isStoreUnavailable } from '../store/unavailable.ts';

/** `Retry-After` of a 503 while the database is unreachable. */
export const STORE_RETRY_AFTER_SECONDS = 5;

type BodyIssueCode = 'invalid' | 'too-long' | 'not-supported';

/** body-parser's errors carry a `type` and a status; the header a refusal names, where one is to blame. */
const BODY_ERRORS: Record<string, [number, string, BodyIssueCode, string?]> = {
  'entity.parse.failed': [400, 'The request body is not valid JSON', 'invalid'],
  'entity.too.large': [413, 'The request body is larger than the service accepts', 'too-long'],
  'encoding.unsupported': [415, 'The request body encoding is not supported', 'not-supported', 'Content-Encoding'],
  'charset.unsupported': [415, 'The request body charset is not supported', 'not-supported', 'Content-Type'],
  'request.aborted': [400, 'The request was aborted', 'invalid'],
  'request.size.invalid': [400, 'The request body is not as long as its Content-Length says', 'invalid', 'Content-Length'],
};

/**
 * A body that is not what its Content-Encoding says (`gzip` over plain bytes, truncated
 * deflate): body-parser passes zlib's error on with status 400 but no `type`; zlib's errors
 * carry a numeric `errno` and a `code` (Z_DATA_ERROR, ZSTD_error_..., ERR__ERROR_FORMAT_...).
 */
function isDecompressionError(err: unknown): boolean {
  const e = err as { status?: unknown; type?: unknown; errno?: unknown; code?: unknown } | null;
  return e?.status === 400 && e.type === undefined && typeof e.errno === 'number' && typeof e.code === 'string';
}

/**
 * Client errors raised by Express's own parts (http-errors: `status` 4xx, `expose` true; the
 * router's URIError, status 400, for a path parameter that does not decode): their 4xx, never
 * their message. refuseMalformedUrl answers most of these first, naming the parameter.
 */
function clientErrorStatus(err: unknown): number | undefined {
  const e = err as { status?: unknown; expose?: unknown } | null;
  const client = typeof e?.status === 'number' && e.status >= 400 && e.status < 500 && (e.expose === true || err instanceof URIError);
  return client ? (e.status as number) : undefined;
}

/**
 * The one place errors become HTTP responses. OperationOutcomeErrors keep their status
 * and outcome; anything else is a 500 whose body never carries the error's message.
 */
export function createErrorHandler(log: Logger): ErrorRequestHandler {
  return (err, _req, res, _next) => {
    const ctx = getContext();
    const logger = ctx?.log ?? log;
    let status: number;
    let body;
    if (err instanceof HttpOutcomeError) {
      status = err.status;
      body = err.outcome;
    } else if (err instanceof OperationOutcomeError) {
      status = getStatus(err.outcome);
      body = err.outcome;
    } else if (typeof err?.type === 'string' && BODY_ERRORS[err.type]) {
      const [s, text, code, header] = BODY_ERRORS[err.type] as [number, string, BodyIssueCode, string?];
      status = s;
      body = outcome([issue(code, text, header)]);
    } else if (isDecompressionError(err)) {
      status = 400;
      body = outcome([issue('invalid', 'The request body could not be decompressed: it is not what its Content-Encoding says', 'Content-Encoding')]);
    } else if (clientErrorStatus(err) !== undefined) {
      status = clientErrorStatus(err) as number;
      body = outcome([issue('invalid', err instanceof URIError ? 'The request path is not valid percent-encoded UTF-8' : 'The request could not be read')]);
    } else if (isStoreUnavailable(err)) {
      // The database is unreachable (connection refused, reset, ended; the embedded store closed):
      // the request may succeed once it is back. No driver text: it names hosts and addresses.
      status = 503;
      body = outcome([issue('transient', 'The service cannot reach its database at the moment; retry later')]);
      res.setHeader('Retry-After', String(STORE_RETRY_AFTER_SECONDS));
      logger.warn({ err }, 'database unreachable');
    } else {
      status = 500;
      body = outcome([issue('exception', 'Internal server error')]);
      if (err instanceof ResourceValidationError) {
        // A resource of ours broke our profiles: a bug. Say where (FHIRPath) and what kind of
        // issue, never the content: issue texts quote codes, property names and references.
        logger.error(
          {
            err,
            resourceType: err.resourceType,
            rules: err.issues.map((i) => ({ severity: i.severity, code: i.code, expression: i.expression })),
          },
          'built resource failed validation; nothing was stored',
        );
      } else {
        // The logger's serializer keeps the error's class, code and stack frames, never its message.
        logger.error({ err }, 'unhandled error');
      }
    }
    if (body.issue?.some((i) => i.code === 'login')) {
      res.setHeader('WWW-Authenticate', res.getHeader('WWW-Authenticate') ?? 'Bearer realm="second-opinion"');
    }
    res.status(status).type(FHIR_JSON).send(JSON.stringify(body));
  };
}

/** Unknown routes answer a FHIR 404 rather than Express's HTML page. */
export const notFoundHandler: RequestHandler = (_req, res) => {
  res.status(404).type(FHIR_JSON).send(JSON.stringify(outcome([issue('not-found', 'No such endpoint')])));
};
