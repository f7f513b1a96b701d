import type { OperationOutcome } from '@medplum/fhirtypes';
import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';

/**
 * Typed errors of outbound calls to participants' FHIR servers and token endpoints.
 *
 * Modelled on SMART client-js (`HttpError` keeps the upstream status): callers such as the
 * record-assembly job decide from `retryable` whether to back off and retry (EHR down) or to
 * give up and report (bad request, not found). Messages carry the method, the URL WITHOUT its
 * query string (search parameters can carry identifiers) and the status; never a token, a
 * client assertion or a response body. Logs get less still ({@link LOG_FIELDS}): the status,
 * the kind of failure, the method and the server's origin; not the URL's path, which names
 * resources, nor the OperationOutcome, which can quote anything.
 */

/** Why a call failed: an HTTP status from upstream, a timeout, or no connection at all. */
export type OutboundFailure = 'http' | 'timeout' | 'network';

/**
 * `transient`: trying again later can help (the EHR is down, busy or slow); the job retries with
 * backoff. `permanent`: the same request will get the same answer until someone changes the
 * configuration or the EHR (refused, not found, invalid); the job stops at once and says why.
 */
export type FailureClass = 'transient' | 'permanent';

/** Common base: every outbound failure says whether trying again later can help. */
export class OutboundError extends Error {
  readonly retryable: boolean;
  /**
   * Not before this time is another attempt worth making: the server's `Retry-After` on a 429 or
   * 503 (RFC 9110 §10.2.3). Absent when the server named no time.
   */
  readonly retryAt?: Date;

  constructor(message: string, retryable: boolean, options?: { cause?: unknown; retryAt?: Date }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'OutboundError';
    this.retryable = retryable;
    if (options?.retryAt) this.retryAt = options.retryAt;
  }

  /** {@link FailureClass} of this failure. */
  get failureClass(): FailureClass {
    return this.retryable ? 'transient' : 'permanent';
  }

  [LOG_FIELDS](): LogFields {
    return { retryable: this.retryable, retryAt: this.retryAt?.toISOString() };
  }
}

/**
 * A FHIR (or attachment) call that failed. `status` is the upstream HTTP status, or 0 when no
 * response arrived (`failure` is then `timeout` or `network`).
 */
export class OutboundHttpError extends OutboundError {
  readonly status: number;
  readonly failure: OutboundFailure;
  readonly method: string;
  /** The requested URL without query string or fragment. */
  readonly url: string;
  /** The OperationOutcome the server returned, when it returned one. */
  readonly outcome?: OperationOutcome;

  constructor(args: { status: number; failure: OutboundFailure; method: string; url: string; outcome?: OperationOutcome; cause?: unknown; retryAt?: Date }) {
    const what = args.failure === 'http' ? `HTTP ${args.status}` : args.failure === 'timeout' ? 'timed out' : 'connection failed';
    super(`${args.method} ${stripQuery(args.url)} ${what}`, classifyFailure(args.status, args.failure, 'fhir') === 'transient', {
      cause: args.cause,
      ...(args.retryAt ? { retryAt: args.retryAt } : {}),
    });
    this.name = 'OutboundHttpError';
    this.status = args.status;
    this.failure = args.failure;
    this.method = args.method;
    this.url = stripQuery(args.url);
    if (args.outcome) this.outcome = args.outcome;
  }

  override [LOG_FIELDS](): LogFields {
    // The message without the URL's path (it names resources): method, origin and what failed.
    const what = this.failure === 'http' ? `HTTP ${this.status}` : this.failure === 'timeout' ? 'timed out' : 'connection failed';
    return { ...super[LOG_FIELDS](), message: `${this.method} ${originOf(this.url) ?? "(unparsable URL)"} ${what}`, failure: this.failure, method: this.method, origin: originOf(this.url) };
  }
}

/**
 * The token endpoint refused or failed (SMART Backend Services, RFC 6749 §5.2). Keeps the
 * status, the OAuth `error` code and the `error_description` (e.g. Medplum's "Invalid client
 * assertion audience"), the one thing that tells an integrator what to fix. The description is
 * sanitised when the error is built ({@link sanitizeOAuthDescription}): printable ASCII, at most
 * 200 characters, anything shaped like a token or a JWT (our client assertion quoted back)
 * replaced. A 4xx (`invalid_client`, `invalid_scope`, `unauthorized_client`, `invalid_grant`,
 * ...) is permanent; a 5xx, 408, 425, 429 or no answer is transient.
 */
export class OutboundAuthError extends OutboundError {
  readonly status: number;
  readonly failure: OutboundFailure;
  readonly oauthError?: string;
  /** The sanitised `error_description`. */
  readonly oauthErrorDescription?: string;
  readonly tokenUrl: string;

  constructor(args: { status: number; failure: OutboundFailure; tokenUrl: string; oauthError?: string; oauthErrorDescription?: string; secrets?: readonly string[]; cause?: unknown; retryAt?: Date }) {
    const description = args.oauthErrorDescription !== undefined ? sanitizeOAuthDescription(args.oauthErrorDescription, args.secrets) : undefined;
    const what =
      args.failure === 'http'
        ? `HTTP ${args.status}${args.oauthError ? ` ${args.oauthError}` : ''}${description ? `: ${description}` : ''}`
        : args.failure === 'timeout'
          ? 'timed out'
          : 'connection failed';
    super(`Token request to ${stripQuery(args.tokenUrl)} failed: ${what}`, classifyFailure(args.status, args.failure, 'token') === 'transient', {
      cause: args.cause,
      ...(args.retryAt ? { retryAt: args.retryAt } : {}),
    });
    this.name = 'OutboundAuthError';
    this.status = args.status;
    this.failure = args.failure;
    this.tokenUrl = stripQuery(args.tokenUrl);
    if (args.oauthError) this.oauthError = args.oauthError;
    if (description) this.oauthErrorDescription = description;
  }

  /**
   * `oauthError` comes from the EHR and may be any printable text: logged only when shaped like an
   * RFC 6749 code. The description is logged as sanitised when the error was built: the
   * token endpoint is sent no patient data, only our client id, scope and assertion,
   * and the assertion (or anything shaped like a token) never survives the sanitising.
   */
  override [LOG_FIELDS](): LogFields {
    const oauthError = this.oauthError && /^[a-z_]{1,64}$/.test(this.oauthError) ? this.oauthError : undefined;
    const oauthErrorDescription = this.oauthErrorDescription ? sanitizeOAuthDescription(this.oauthErrorDescription) : undefined;
    const what = this.failure === 'http' ? `HTTP ${this.status}${oauthError ? ` ${oauthError}` : ''}` : this.failure === 'timeout' ? 'timed out' : 'connection failed';
    return { ...super[LOG_FIELDS](), message: `Token request to ${originOf(this.tokenUrl) ?? "(unparsable URL)"} failed: ${what}`, failure: this.failure, oauthError, oauthErrorDescription, origin: originOf(this.tokenUrl) };
  }
}

/** Longest `error_description` kept. */
export const MAX_OAUTH_DESCRIPTION = 200;
const REDACTED = '[redacted]';
/** A JWT or JWS (three base64url parts), or any long run of base64/base64url: tokens, assertions, keys. */
const TOKEN_LIKE = /[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*|[A-Za-z0-9_\-+/=]{32,}/g;

/**
 * An OAuth `error_description` as it may be kept, shown and logged: the exact secrets given
 * (the client assertion we sent) and anything shaped like a token removed first, then only
 * printable ASCII (RFC 6749 §5.2 allows no more), whitespace collapsed, at most 200 characters.
 */
export function sanitizeOAuthDescription(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length < 8) continue;
    out = out.split(secret).join(REDACTED);
    // A JWT's parts quoted one by one.
    for (const part of secret.split('.')) if (part.length >= 16) out = out.split(part).join(REDACTED);
  }
  out = out
    .replace(/[^\x20-\x7e]+/g, ' ')
    .replace(TOKEN_LIKE, REDACTED)
    .replace(/\s+/g, ' ')
    .trim();
  return out.length > MAX_OAUTH_DESCRIPTION ? `${out.slice(0, MAX_OAUTH_DESCRIPTION - 3)}...` : out;
}

/** An attachment larger than the configured limit (declared by Content-Length or counted while streaming). */
export class AttachmentTooLargeError extends OutboundError {
  readonly url: string;
  readonly maxBytes: number;

  constructor(url: string, maxBytes: number) {
    super(`Attachment ${stripQuery(url)} is larger than ${maxBytes} bytes`, false);
    this.name = 'AttachmentTooLargeError';
    this.url = stripQuery(url);
    this.maxBytes = maxBytes;
  }

  override [LOG_FIELDS](): LogFields {
    return { ...super[LOG_FIELDS](), maxBytes: this.maxBytes, origin: originOf(this.url) };
  }
}

/** A URL the client refuses to call: a non-http(s) scheme, a reference to another server, too many redirects. */
export class OutboundUrlError extends OutboundError {
  constructor(message: string) {
    super(message, false);
    this.name = 'OutboundUrlError';
  }
}

/** True for the error a missing resource gives (HTTP 404), so callers can report "missing" instead of failing. */
export function isNotFound(err: unknown): err is OutboundHttpError {
  return err instanceof OutboundHttpError && err.status === 404;
}

/** True when trying again later can help: see {@link classifyFailure}. */
export function isRetryableError(err: unknown): boolean {
  return err instanceof OutboundError && err.retryable;
}

/** True for an outbound failure that retrying cannot fix (see {@link classifyFailure}). */
export function isPermanentError(err: unknown): err is OutboundError {
  return err instanceof OutboundError && !err.retryable;
}

/** Statuses that say "not now" rather than "no": the same request may succeed later. */
const TRANSIENT_STATUSES: Readonly<Record<'fhir' | 'token', ReadonlySet<number>>> = {
  // 409: FHIR servers answer it to concurrent writes (version and uniqueness conflicts); our
  // writes are conditional creates, so the retry finds what the competing write made.
  fhir: new Set([408, 409, 425, 429]),
  token: new Set([408, 425, 429]),
};

/**
 * The one classification of outbound failures, for FHIR calls, attachment
 * fetches and the token endpoint:
 *
 * - transient: no response (connection refused or reset, DNS, timeout), 408, 425, 429, every 5xx,
 *   and on FHIR calls 409 (a write conflict a retry resolves);
 * - permanent: every other status: 400, 401 (the FHIR client has already retried once with a
 *   fresh token when this is seen: fhir-http.ts, attachment-fetch.ts), 403, 404, 405, 410, 412,
 *   422, other 4xx, and an unexpected 1xx-3xx. On the token endpoint every 4xx (including the
 *   OAuth `invalid_client`, `invalid_scope`, `unauthorized_client`, `invalid_grant`) is permanent.
 */
export function classifyFailure(status: number, failure: OutboundFailure = 'http', endpoint: 'fhir' | 'token' = 'fhir'): FailureClass {
  if (failure !== 'http') return 'transient';
  if (status >= 500 || TRANSIENT_STATUSES[endpoint].has(status)) return 'transient';
  return 'permanent';
}

/** Statuses whose `Retry-After` is honoured (RFC 9110 §10.2.3: 503 and 3xx; RFC 6585 §4: 429). */
const RETRY_AFTER_STATUSES = new Set([429, 503]);

/**
 * When the server says to try again, from a `Retry-After` header on a 429 or 503: delay seconds
 * (`120`) or an HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`). Undefined for other statuses, a
 * missing or unparseable header, or a time already past. The queue caps it (job-queue.ts).
 */
export function retryAtFrom(status: number, header: string | null | undefined, nowMs: number = Date.now()): Date | undefined {
  if (!RETRY_AFTER_STATUSES.has(status) || !header) return undefined;
  const value = header.trim();
  let at: number;
  if (/^\d+$/.test(value)) at = nowMs + Number(value) * 1000;
  else if (/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(value) || /GMT$/.test(value)) at = Date.parse(value);
  else return undefined;
  if (!Number.isFinite(at) || at <= nowMs) return undefined;
  return new Date(at);
}

/** Caps on what is kept of an EHR's OperationOutcome. */
const OUTCOME_LIMITS = { issues: 5, text: 500, expressions: 5, expression: 200 } as const;

/**
 * What is kept of the EHR's OperationOutcome on a failed call, to show the referrer (summary)
 * and the operator (admin delivery list): per issue its severity, code, `details.text`,
 * `diagnostics` and `expression`, at most 5 issues, texts capped at 500 characters; nothing else
 * (never a body of ours: the request is not part of an OperationOutcome, and other elements are
 * dropped). Not for logs: its texts are the EHR's free text.
 */
export function keptOutcome(outcome: OperationOutcome | undefined): OperationOutcome | undefined {
  if (!outcome || !Array.isArray(outcome.issue)) return undefined;
  const text = (value: unknown, max: number = OUTCOME_LIMITS.text) => (typeof value === 'string' && value.trim() ? cap(value.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim(), max) : undefined);
  const issue = outcome.issue.slice(0, OUTCOME_LIMITS.issues).map((i) => {
    const details = text(i?.details?.text);
    const diagnostics = text(i?.diagnostics);
    const expression = Array.isArray(i?.expression) ? i.expression.slice(0, OUTCOME_LIMITS.expressions).flatMap((e) => text(e, OUTCOME_LIMITS.expression) ?? []) : [];
    return {
      severity: (['fatal', 'error', 'warning', 'information'].includes(i?.severity) ? i.severity : 'error') as OperationOutcome['issue'][number]['severity'],
      code: (typeof i?.code === 'string' && /^[a-z-]{1,40}$/.test(i.code) ? i.code : 'unknown') as OperationOutcome['issue'][number]['code'],
      ...(details ? { details: { text: details } } : {}),
      ...(diagnostics ? { diagnostics } : {}),
      ...(expression.length ? { expression } : {}),
    };
  });
  return issue.length ? { resourceType: 'OperationOutcome', issue } : undefined;
}

/**
 * A failed call in one line, with what the EHR said: the method, URL and status (or the token
 * endpoint's error and description), whether it is retried, and the first issue of the EHR's
 * OperationOutcome (`code: details.text / diagnostics`). Shown to the referrer and operators
 * (summary `lastError`, records `failureReason`, admin delivery list); not logged.
 */
export function describeOutboundFailure(err: OutboundError): string {
  const first = err instanceof OutboundHttpError ? keptOutcome(err.outcome)?.issue[0] : undefined;
  const said = first ? [first.details?.text, first.diagnostics].filter(Boolean).join(' / ') : '';
  const ehr = first ? `; the EHR said: ${first.code}${said ? `: ${said}` : ''}` : '';
  return cap(`${err.name}: ${err.message} (${err.failureClass}${err.retryable ? '' : ', not retried'})${ehr}`, 1000);
}

/**
 * The same failure without the EHR's free text, for a Task's business status, which a consulting
 * clinic may read: the method, URL (no query) and status or OAuth error code, and the issue codes.
 */
export function briefOutboundFailure(err: OutboundError): string {
  let what = err.message;
  if (err instanceof OutboundAuthError) what = `Token request to ${err.tokenUrl} failed: ${err.failure === 'http' ? `HTTP ${err.status}${err.oauthError ? ` ${err.oauthError}` : ''}` : err.failure === 'timeout' ? 'timed out' : 'connection failed'}`;
  const codes = err instanceof OutboundHttpError ? [...new Set(keptOutcome(err.outcome)?.issue.map((i) => i.code) ?? [])] : [];
  return cap(`${what}${codes.length ? ` (${codes.join(', ')})` : ''}${err.retryable ? '' : ': permanent, not retried'}`, 300);
}

function cap(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

/** The URL without query string and fragment; unparseable input is reduced to what precedes `?`/`#`. */
export function stripQuery(url: string): string {
  try {
    const u = new URL(url);
    u.search = '';
    u.hash = '';
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url.split(/[?#]/, 1)[0] ?? '';
  }
}

/** `https://ehr.example` of a URL: which server, not which resource. */
function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

/**
 * Maps a fetch rejection to a typed error: AbortSignal timeouts become `timeout`, anything else
 * (ECONNREFUSED, ECONNRESET, DNS) `network`. Errors that are already outbound errors pass through.
 */
export function toTransportError(err: unknown, method: string, url: string): OutboundError {
  if (err instanceof OutboundError) return err;
  return new OutboundHttpError({ status: 0, failure: transportFailure(err), method, url, cause: err });
}

/** `timeout` for AbortSignal.timeout() rejections, `network` for everything else fetch rejects with. */
export function transportFailure(err: unknown): OutboundFailure {
  return (err as { name?: string } | null)?.name === 'TimeoutError' ? 'timeout' : 'network';
}
