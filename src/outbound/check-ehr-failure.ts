/**
 * How the connection check (check-ehr.ts) words what went wrong: the HTTP status and the EHR's
 * own OperationOutcome text, the kind of transport failure, or the token endpoint's OAuth
 * error. Texts from the EHR are cut to printable ASCII and capped: they are shown to an
 * integrator, never logged.
 */
import type { OperationOutcome } from '@medplum/fhirtypes';
import { AttachmentTooLargeError, OutboundAuthError, OutboundHttpError, OutboundUrlError } from './outbound-errors.ts';

/** Longest text quoted from the EHR. */
export const MAX_QUOTED = 200;

/** `text` as printable ASCII (other characters dropped, runs of spaces folded), at most `max` characters. */
export function printable(text: string, max = MAX_QUOTED): string {
  const clean = text.replace(/[^\x20-\x7e]+/g, ' ').replace(/ {2,}/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

/** The first issue of an OperationOutcome: `code: text`. */
export function outcomeText(outcome: OperationOutcome | undefined): string | undefined {
  const first = outcome?.issue?.[0];
  if (!first) return undefined;
  const text = first.details?.text ?? first.diagnostics;
  return printable(text ? `${first.code}: ${text}` : first.code);
}

/** What a failed outbound call looked like, in one phrase (`HTTP 403 (forbidden: ...)`, `connection failed (ECONNREFUSED)`). */
export function describeFailure(err: unknown): string {
  if (err instanceof OutboundHttpError) {
    if (err.failure === 'timeout') return 'timed out';
    if (err.failure === 'network') return `connection failed${systemCode(err) ? ` (${systemCode(err)})` : ''}`;
    const text = outcomeText(err.outcome);
    return `HTTP ${err.status}${text ? ` (${text})` : ''}`;
  }
  if (err instanceof OutboundAuthError) return `token request failed: ${err.failure === 'http' ? `HTTP ${err.status}` : err.failure === 'timeout' ? 'timed out' : 'connection failed'}`;
  if (err instanceof AttachmentTooLargeError) return `larger than ${err.maxBytes} bytes`;
  if (err instanceof OutboundUrlError) return printable(err.message);
  if ((err as { name?: unknown } | null)?.name === 'TimeoutError') return 'timed out';
  const code = systemCode(err);
  return code ? `connection failed (${code})` : 'failed (unexpected error)';
}

/** The HTTP status of a failed call, 0 when none arrived. */
export function statusOf(err: unknown): number {
  return err instanceof OutboundHttpError || err instanceof OutboundAuthError ? err.status : 0;
}

/** ECONNREFUSED, ENOTFOUND...: the system error code under a fetch failure, when there is one. */
function systemCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9_]{2,40}$/.test(code)) return code;
  }
  return undefined;
}
