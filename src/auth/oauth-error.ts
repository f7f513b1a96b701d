import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';

/**
 * OAuth 2.0 token endpoint errors (RFC 6749 §5.2). The token endpoint answers these as
 * `{ error, error_description }` JSON, not as OperationOutcomes. `slow_down` (RFC 8628 §3.5,
 * registered for the token endpoint) is what the abuse limits answer: too fast, retry later.
 */
export type OAuthErrorCode = 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unauthorized_client' | 'unsupported_grant_type' | 'invalid_scope' | 'slow_down';

export class OAuthError extends Error {
  readonly error: OAuthErrorCode;
  /** Human-readable; never carries the assertion, a token or any secret. */
  readonly description: string;
  /** The description as logs carry it: the same, or fixed text when the description quotes the caller's input. */
  readonly reason: string;

  /** When the client may try again (the `Retry-After` header), for refusals by the abuse limits. */
  readonly retryAfterSeconds?: number;

  /**
   * @param options.reason fixed text for the logs, required when `description` quotes what the
   *   caller sent (a scope, a claim): a caller may put anything there, PHI included.
   */
  constructor(error: OAuthErrorCode, description: string, options?: ErrorOptions & { reason?: string; retryAfterSeconds?: number }) {
    super(`${error}: ${description}`, options);
    this.name = 'OAuthError';
    this.error = error;
    this.description = description;
    this.reason = options?.reason ?? description;
    if (options?.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }

  [LOG_FIELDS](): LogFields {
    return { error: this.error, reason: this.reason };
  }

  /** 401 for a failed client authentication, 429 for too many requests, 400 for everything else (RFC 6749 §5.2, RFC 6585 §4). */
  get status(): 400 | 401 | 429 {
    if (this.error === 'slow_down') return 429;
    return this.error === 'invalid_client' ? 401 : 400;
  }

  toJSON(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.error, error_description: this.description };
  }
}
