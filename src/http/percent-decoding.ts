import { unstorableText } from '../fhir/unstorable-text.ts';

/**
 * Strict percent-decoding of URL parts and form bodies. The parsers the routes use are
 * lenient: Express decodes path parameters with `decodeURIComponent` and throws a URIError
 * before any route runs, while `URLSearchParams` and `querystring` turn `%E0%A4%A` into
 * U+FFFD and search for that. Both are wrong for a request a client got wrong; it is told so.
 */

/** Longest name echoed back for a parameter whose own name cannot be decoded. */
const MAX_ECHOED_NAME = 64;

export type Decoded = { ok: true; value: string } | { ok: false; reason: string };

/** Decodes one URL component; `+` is a space in query strings and form bodies (`plusIsSpace`). */
export function decodeComponent(raw: string, plusIsSpace: boolean): Decoded {
  let value: string;
  try {
    value = decodeURIComponent(plusIsSpace ? raw.replaceAll('+', ' ') : raw);
  } catch {
    return { ok: false, reason: 'is not valid percent-encoded UTF-8' };
  }
  const reason = unstorableText(value);
  return reason ? { ok: false, reason } : { ok: true, value };
}

export interface ParameterProblem {
  /** The parameter's decoded name, or as sent (shortened) when the name itself is the problem. */
  name: string;
  reason: string;
}

/**
 * Checks a query string or an `application/x-www-form-urlencoded` body (`a=1&b=2`, no `?`):
 * one problem per bad name or value, in order.
 */
export function parameterProblems(raw: string): ParameterProblem[] {
  const problems: ParameterProblem[] = [];
  for (const pair of raw.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    const name = decodeComponent(rawName, true);
    if (!name.ok) {
      problems.push({ name: rawName.slice(0, MAX_ECHOED_NAME), reason: `The parameter name ${name.reason}` });
      continue;
    }
    const value = eq < 0 ? undefined : decodeComponent(pair.slice(eq + 1), true);
    if (value && !value.ok) problems.push({ name: name.value, reason: `${name.value} ${value.reason}` });
  }
  return problems;
}
