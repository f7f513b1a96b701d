import type { z } from 'zod';
import { invalid, issue } from '../fhir/outcomes.ts';
import { findUnstorableText } from '../fhir/unstorable-text.ts';

/** `['consultants', 2, 'id']` -> `consultants[2].id` (the FHIRPath-style name of the field). */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = body;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

/**
 * Parses a request body with a zod schema. On failure throws a 400 OperationOutcome with
 * one issue per problem, each naming its field in `expression`. Every JSON body passes
 * here, so this is also where text the store cannot hold (NUL, lone surrogates) is refused,
 * before the schema and before anything could be written.
 */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const unstorable = findUnstorableText(body);
  if (unstorable.length) {
    throw invalid(unstorable.map(({ path, reason }) => {
      const where = fieldPath(path);
      return issue('value', `${where || 'The request body'} ${reason}`, where || undefined);
    }));
  }
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.flatMap((i) => {
    if (i.code === 'unrecognized_keys') {
      return i.keys.map((k) => issue('structure', `Unknown field '${k}'`, fieldPath([...i.path, k])));
    }
    const where = fieldPath(i.path);
    if (where && valueAt(body, i.path) === undefined) return [issue('required', `${where} is required`, where)];
    return [issue('value', where ? `${where}: ${i.message}` : i.message, where || undefined)];
  });
  throw invalid(issues);
}
