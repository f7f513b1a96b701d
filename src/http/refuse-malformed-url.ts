import type { RequestHandler } from 'express';
import { rulesFitting } from '../access/route-rules.ts';
import { invalid, issue } from '../fhir/outcomes.ts';
import { decodeComponent, parameterProblems } from './percent-decoding.ts';

/** A bad path segment is named after the route parameter it stands for (`id`, `taskId`, `vid`), or `path` when no route fits. */
function pathParameterName(segments: readonly string[], index: number): string {
  const name = rulesFitting(segments, index)
    .map((r) => r.segments[index])
    .find((s) => s?.startsWith(':'));
  return name ? name.slice(1) : 'path';
}

/**
 * Refuses, with one 400 naming each bad path parameter or query parameter, a URL whose parts
 * do not decode as percent-encoded UTF-8 (`%E0%A4%A`, an encoded lone surrogate) or decode
 * to a NUL. Mounted before the routes: Express would otherwise throw a URIError while
 * matching them, and the lenient query parsers would search for U+FFFD, or hand a NUL to
 * PostgreSQL, which cannot hold it.
 */
export const refuseMalformedUrl: RequestHandler = (req, _res, next) => {
  const url = req.originalUrl;
  const q = url.indexOf('?');
  const segments = (q < 0 ? url : url.slice(0, q)).split('/');
  const issues = [];
  for (const [i, segment] of segments.entries()) {
    const decoded = decodeComponent(segment, false);
    if (decoded.ok) continue;
    const name = pathParameterName(segments, i);
    issues.push(issue('value', `The path ${name === 'path' ? `segment ${i}` : `parameter ${name}`} ${decoded.reason}`, name));
  }
  if (q >= 0) {
    for (const problem of parameterProblems(url.slice(q + 1).replace(/#.*$/, ''))) issues.push(issue('value', problem.reason, problem.name));
  }
  if (issues.length) throw invalid(issues);
  next();
};
