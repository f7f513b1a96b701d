import type { Request } from 'express';
import { rulesFitting } from '../access/route-rules.ts';
import { SEARCH_PARAMETERS } from '../fhir-rest/search-parameters.ts';

/**
 * The request path as the request log line carries it (no log line carries
 * request content). A path is written by the caller, who can put anything in it: a medical
 * record number, a name, its own request id (`GET /second-opinions/REQ-1001`). So the line
 * carries the matched route with a parameter's value only where it is one this service makes
 * (a UUID, a SHA-256 attachment id, a version number) or a resource type it serves:
 * `/fhir/Task/8c1e…`, `/fhir/Task/:id` for anything else. A request refused before routing
 * (401, 429) is matched against the route table; a path no route fits has no loggable path at all.
 *
 * The values are read from the URL, aligned with the route's segments, not from `req.params`:
 * Express has emptied those by the time an error handler answered.
 */
export function loggablePath(req: Pick<Request, 'baseUrl' | 'originalUrl' | 'route'>): string | undefined {
  const routePath = (req.route as { path?: unknown } | undefined)?.path;
  const actual = (req.originalUrl.split('?', 1)[0] ?? '').split('/');
  // Refused before routing (401 from the auth middleware, 429): the route the path would have taken.
  const pattern = typeof routePath === 'string' ? `${req.baseUrl}${routePath}`.split('/') : rulesFitting(actual)[0]?.segments;
  if (!pattern) return undefined;
  if (pattern.length !== actual.length) return pattern.join('/');
  return pattern.map((segment, i) => (segment.startsWith(':') && isLoggableValue(segment.slice(1), actual[i] ?? '') ? actual[i] : segment)).join('/');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** Version ids this service assigns: small integers (a long digit string could be a record number). */
const VERSION = /^[0-9]{1,6}$/;
const SERVED_TYPES = new Set([...Object.keys(SEARCH_PARAMETERS), 'Binary']);

function isLoggableValue(param: string, value: string): boolean {
  if (param === 'type') return SERVED_TYPES.has(value);
  if (param === 'vid') return VERSION.test(value);
  return UUID.test(value) || SHA256_HEX.test(value);
}
