import { invalid, issue } from '../fhir/outcomes.ts';

/**
 * The query of an operator's list of outbound work kept per row with a status (post-backs,
 * record-set pushes): `?status=failed&_count=20`, newest first. One parser for every such list.
 */
export interface StatusListQuery<S extends string> {
  status?: S;
  /** At most this many (1-100, default 50). */
  count: number;
}

/** Parses `status` (one of `statuses`) and `_count`; unknown parameters and bad values are refused, naming the parameter. */
export function parseStatusListQuery<S extends string>(params: Record<string, string[]>, statuses: readonly S[]): StatusListQuery<S> {
  const problems = [];
  const query: StatusListQuery<S> = { count: 50 };
  for (const [name, values] of Object.entries(params)) {
    const value = values[values.length - 1] ?? '';
    if (name === 'status') {
      if ((statuses as readonly string[]).includes(value)) query.status = value as S;
      else problems.push(issue('value', `status must be one of ${statuses.join(', ')}`, 'status'));
    } else if (name === '_count') {
      const n = Number(value);
      if (!/^\d+$/.test(value) || n < 1) problems.push(issue('value', '_count must be a positive integer', '_count'));
      else query.count = Math.min(n, 100);
    } else {
      problems.push(issue('not-supported', `Unknown parameter '${name}' (status, _count)`, name));
    }
  }
  if (problems.length) throw invalid(problems);
  return query;
}
