import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';

/**
 * OAuth 2.0 token endpoint errors (RFC 6749 §5.2). The token endpoint answers these as
 * `{ error, error_description }` JSON, not as OperationOutcomes.
 */
export type OAuthErrorCode = 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unauthorized_client' | 'unsupported_grant_type' | 'invalid_scope';

export class OAuthError extends Error {
  readonly error: OAuthErrorCode;
  /** Human-readable; never carries the assertion, a token or any secret. */
  readonly description: string;
  /** The description as logs carry it: the same, or fixed text when the description quotes the caller's input. */
  readonly reason: string;

  /**
   * @param options.reason fixed text for the logs, required when `description` quotes what the
   *   caller sent (a scope, a claim): a caller may put anything there, PHI included.
   */
  constructor(error: OAuthErrorCode, description: string, options?: ErrorOptions & { reason?: string }) {
    super(`${error}: ${description}`, options);
    this.name = 'OAuthError';
    this.error = error;
    this.description = description;
    this.reason = options?.reason ?? description;
  }

  [LOG_FIELDS](): LogFields {
    return { error: this.error, reason: this.reason };
  }

  /** 401 for a failed client authentication, 400 for everything else (RFC 6749 §5.2). */
  get status(): 400 | 401 {
    return this.error === 'invalid_client' ? 401 : 400;
  }

  toJSON(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.error, error_description: this.description };
  }
}
