import { getStatus, OperationOutcomeError } from '@medplum/core';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from '../log/logger.ts';
import { FHIR_JSON } from '../fhir/constants.ts';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import { ResourceValidationError } from '../fhir/validator.ts';
import { getContext } from './context.ts';

/** body-parser's errors carry a `type` and a status. */
const BODY_ERRORS: Record<string, [number, string, 'invalid' | 'too-long' | 'not-supported']> = {
  'entity.parse.failed': [400, 'The request body is not valid JSON', 'invalid'],
  'entity.too.large': [413, 'The request body is larger than the service accepts', 'too-long'],
  'encoding.unsupported': [415, 'The request body encoding is not supported', 'not-supported'],
  'charset.unsupported': [415, 'The request body charset is not supported', 'not-supported'],
  'request.aborted': [400, 'The request was aborted', 'invalid'],
};

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
      const [s, text, code] = BODY_ERRORS[err.type] as [number, string, 'invalid' | 'too-long' | 'not-supported'];
      status = s;
      body = outcome([issue(code, text)]);
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
