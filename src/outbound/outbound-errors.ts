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

/** Common base: every outbound failure says whether trying again later can help. */
export class OutboundError extends Error {
  readonly retryable: boolean;

  constructor(message: string, retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OutboundError';
    this.retryable = retryable;
  }

  [LOG_FIELDS](): LogFields {
    return { retryable: this.retryable };
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

  constructor(args: { status: number; failure: OutboundFailure; method: string; url: string; outcome?: OperationOutcome; cause?: unknown }) {
    const what = args.failure === 'http' ? `HTTP ${args.status}` : args.failure === 'timeout' ? 'timed out' : 'connection failed';
    super(`${args.method} ${stripQuery(args.url)} ${what}`, isRetryable(args.status, args.failure), { cause: args.cause });
    this.name = 'OutboundHttpError';
    this.status = args.status;
    this.failure = args.failure;
    this.method = args.method;
    this.url = stripQuery(args.url);
    if (args.outcome) this.outcome = args.outcome;
  }

  override [LOG_FIELDS](): LogFields {
    return { ...super[LOG_FIELDS](), failure: this.failure, method: this.method, origin: originOf(this.url) };
  }
}

/**
 * The token endpoint refused or failed (SMART Backend Services, RFC 6749 §5.2). Keeps the
 * status and the OAuth `error` code; `invalid_client` means our registration or key is wrong
 * and is not retryable, a 5xx or timeout is.
 */
export class OutboundAuthError extends OutboundError {
  readonly status: number;
  readonly failure: OutboundFailure;
  readonly oauthError?: string;
  readonly tokenUrl: string;

  constructor(args: { status: number; failure: OutboundFailure; tokenUrl: string; oauthError?: string; cause?: unknown }) {
    const what = args.failure === 'http' ? `HTTP ${args.status}${args.oauthError ? ` ${args.oauthError}` : ''}` : args.failure === 'timeout' ? 'timed out' : 'connection failed';
    const retryable = args.failure !== 'http' || args.status >= 500 || args.status === 429;
    super(`Token request to ${stripQuery(args.tokenUrl)} failed: ${what}`, retryable, { cause: args.cause });
    this.name = 'OutboundAuthError';
    this.status = args.status;
    this.failure = args.failure;
    this.tokenUrl = stripQuery(args.tokenUrl);
    if (args.oauthError) this.oauthError = args.oauthError;
  }

  /** `oauthError` comes from the EHR and may be any printable text: logged only when shaped like an RFC 6749 code. */
  override [LOG_FIELDS](): LogFields {
    const oauthError = this.oauthError && /^[a-z_]{1,64}$/.test(this.oauthError) ? this.oauthError : undefined;
    return { ...super[LOG_FIELDS](), failure: this.failure, oauthError, origin: originOf(this.tokenUrl) };
  }
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

/** True when trying again later can help (5xx, 401, 408, 429, timeouts, connection refused or reset). */
export function isRetryableError(err: unknown): boolean {
  return err instanceof OutboundError && err.retryable;
}

/**
 * 5xx, 408, 429 and failures without a response are transient; so is a 401 that survived one
 * retry with a fresh token (the EHR's auth server may be mid-rotation). Other 4xx are not.
 */
export function isRetryable(status: number, failure: OutboundFailure = 'http'): boolean {
  if (failure !== 'http') return true;
  return status >= 500 || status === 401 || status === 408 || status === 429;
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
