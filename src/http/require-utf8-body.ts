import type { RequestHandler } from 'express';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';

const CHARSET = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i;

/**
 * 415 for a request body declared in a charset other than UTF-8. JSON exchanged between
 * systems is UTF-8 (RFC 8259 §8.1), but body-parser also decodes `charset=utf-16` (any
 * `utf-*`), so a client mislabelling its body got a confusing 400, or a body read in an
 * encoding nobody tested. A body without a charset is read as UTF-8, as before.
 */
export const requireUtf8Body: RequestHandler = (req, _res, next) => {
  const contentType = req.headers['content-type'];
  const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
  const match = contentType && hasBody ? CHARSET.exec(contentType) : null;
  const charset = (match?.[1] ?? match?.[2])?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8') {
    throw new HttpOutcomeError(415, outcome([issue('not-supported', 'The request body must be UTF-8: send charset=utf-8 or no charset in Content-Type', 'Content-Type')]));
  }
  next();
};
