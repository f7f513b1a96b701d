/**
 * Sending a fuzz case over raw HTTP and judging the answer: never a 5xx; every refusal an
 * OperationOutcome (an OAuth error at the token endpoint); a success the route's own content.
 */
import { request } from 'node:http';
import { toJsonText, mutate } from './json-mutation.ts';
import { baseBody, type FuzzCase, type FuzzWorld } from './route-fuzzers.ts';
import { tokenFormBody } from './token-form.ts';

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** No answer within this long is reported as a hang (the service stopped answering), not as slowness. */
const NO_ANSWER_MS = 60_000;

/** The body of `c` as bytes, and its default Content-Type. */
async function materialize(c: FuzzCase, world: FuzzWorld, baseUrl: string): Promise<{ body?: string; contentType?: string }> {
  switch (c.body.kind) {
    case 'none':
      return {};
    case 'raw':
      return { body: c.body.text, contentType: 'application/json' };
    case 'json':
      return { body: toJsonText(mutate(baseBody(c.body.base, world), c.body.mutations)), contentType: 'application/json' };
    case 'form':
      return { body: await tokenFormBody(c.body.plan, `${baseUrl}/auth/token`), contentType: 'application/x-www-form-urlencoded' };
  }
}

/** What a failing case prints: the request as sent, long values cut. */
export function describeRequest(c: FuzzCase, body: string | undefined): string {
  const cut = (s: string, max = 300) => (s.length > max ? `${s.slice(0, max)}… (${s.length} chars)` : s);
  const headers = Object.entries(c.headers).map(([k, v]) => `${k}: ${cut(JSON.stringify(v))}`);
  return [`${c.method} ${cut(c.url)} as ${c.caller}`, ...headers, body === undefined ? '(no body)' : `body: ${cut(JSON.stringify(body), 1_500)}`].join('\n  ');
}

/** Sends `c` as written (no URL normalisation), with `tokens[caller]` unless the case brings its own Authorization. */
export async function send(c: FuzzCase, world: FuzzWorld, baseUrl: string, tokens: Record<string, string>): Promise<{ answer: Answer; sent: string }> {
  const { body, contentType } = await materialize(c, world, baseUrl);
  const { hostname, port } = new URL(baseUrl);
  const headers: Record<string, string | string[]> = {
    ...(tokens[c.caller] ? { authorization: `Bearer ${tokens[c.caller]}` } : {}),
    ...(contentType ? { 'content-type': contentType } : {}),
    ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}),
    ...c.headers,
  };
  const sent = describeRequest(c, body);
  const answer = await new Promise<Answer>((resolve, reject) => {
    const req = request({ host: hostname, port, method: c.method, path: c.url, headers, timeout: NO_ANSWER_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${NO_ANSWER_MS / 1000} s`)));
    req.on('error', reject);
    req.end(body);
  }).catch((err: Error) => {
    throw new Error(`${err.message}\n  ${sent}`);
  });
  return { answer, sent };
}

const OAUTH_ERRORS = ['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope'];
const SEVERITIES = ['fatal', 'error', 'warning', 'information'];
/** FHIR R4 IssueType codes (http://hl7.org/fhir/R4/valueset-issue-type.html). */
const ISSUE_TYPES = ['invalid', 'structure', 'required', 'value', 'invariant', 'security', 'login', 'unknown', 'expired', 'forbidden', 'suppressed', 'processing', 'not-supported', 'duplicate', 'multiple-matches', 'not-found', 'deleted', 'too-long', 'code-invalid', 'extension', 'too-costly', 'business-rule', 'conflict', 'transient', 'lock-error', 'no-store', 'exception', 'timeout', 'incomplete', 'throttled', 'informational'];

function parseJson(body: Buffer): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(body.toString('utf8')) };
  } catch {
    return { ok: false };
  }
}

function outcomeProblems(answer: Answer): string[] {
  const type = String(answer.headers['content-type'] ?? '');
  if (!type.startsWith('application/fhir+json')) return [`Content-Type ${type || '(none)'}, not application/fhir+json`];
  const parsed = parseJson(answer.body);
  if (!parsed.ok) return ['the body is not JSON'];
  const oo = parsed.value as { resourceType?: unknown; issue?: unknown };
  if (oo?.resourceType !== 'OperationOutcome') return [`resourceType ${String(oo?.resourceType)}, not OperationOutcome`];
  if (!Array.isArray(oo.issue) || oo.issue.length === 0) return ['an OperationOutcome without issues'];
  return (oo.issue as { severity?: unknown; code?: unknown; details?: { text?: unknown }; expression?: unknown }[]).flatMap((i, n) => [
    ...(SEVERITIES.includes(String(i?.severity)) ? [] : [`issue[${n}].severity ${String(i?.severity)}`]),
    ...(ISSUE_TYPES.includes(String(i?.code)) ? [] : [`issue[${n}].code ${String(i?.code)}`]),
    ...(i?.details === undefined || typeof i.details?.text === 'string' ? [] : [`issue[${n}].details.text is not text`]),
    ...(i?.expression === undefined || (Array.isArray(i.expression) && i.expression.every((e) => typeof e === 'string')) ? [] : [`issue[${n}].expression is not a list of text`]),
  ]);
}

function oauthProblems(answer: Answer): string[] {
  const type = String(answer.headers['content-type'] ?? '');
  if (!type.startsWith('application/json')) return [`Content-Type ${type || '(none)'}, not application/json`];
  const parsed = parseJson(answer.body);
  if (!parsed.ok) return ['the body is not JSON'];
  const body = parsed.value as Record<string, unknown>;
  const extra = Object.keys(body ?? {}).filter((k) => k !== 'error' && k !== 'error_description');
  return [
    ...(OAUTH_ERRORS.includes(String(body?.error)) ? [] : [`error ${String(body?.error)} is not an OAuth error code`]),
    ...(body?.error_description === undefined || typeof body.error_description === 'string' ? [] : ['error_description is not text']),
    ...(extra.length ? [`fields besides error and error_description: ${extra.join(', ')}`] : []),
  ];
}

/**
 * What is wrong with `answer`, if anything: a 5xx (or a status outside 2xx/304/4xx); a 4xx that is
 * not an OperationOutcome (`oauth`: not an OAuth error, unless Node's parser refused the headers
 * before any route ran); a JSON success whose body is not JSON.
 */
export function answerProblems(answer: Answer, oauth: boolean): string[] {
  const { status } = answer;
  if (status >= 500) return [`status ${status}`];
  // 431 comes from Node's HTTP parser, before any route: an OperationOutcome whatever the path (client-error.ts).
  if (status >= 400) return (oauth && status !== 431 ? oauthProblems(answer) : outcomeProblems(answer)).map((p) => `${status}: ${p}`);
  if (status === 304) return answer.body.length ? ['304 with a body'] : [];
  if (status < 200 || status >= 300) return [`status ${status}`];
  const type = String(answer.headers['content-type'] ?? '');
  if (/json/.test(type) && !parseJson(answer.body).ok) return [`${status}: ${type} body is not JSON`];
  return [];
}
