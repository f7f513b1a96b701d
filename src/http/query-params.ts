import type { Request } from 'express';

/**
 * The query parameters of a request, each name with all its values in order
 * (`?status=a&status=b` -> `{status: ['a', 'b']}`), for the routes that read repeated
 * parameters (FHIR search, the worklist). The record has no prototype: a parameter a client
 * names `toString`, `constructor` or `__proto__` is a name like any other, reported as unknown,
 * where on a plain object it found Object.prototype's member and adding to it was a 500.
 */
export function queryParams(req: Pick<Request, 'originalUrl'>): Record<string, string[]> {
  const out: Record<string, string[]> = Object.create(null);
  for (const [name, value] of new URL(req.originalUrl, 'http://local').searchParams) (out[name] ??= []).push(value);
  return out;
}
