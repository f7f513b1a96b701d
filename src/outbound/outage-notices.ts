import type { Logger } from '../log/logger.ts';
import { OutboundAuthError, OutboundHttpError } from './outbound-errors.ts';

/**
 * One warning per outage per participant's FHIR server, instead of one `connection failed`
 * per job attempt that says neither which EHR is down nor what to do.
 *
 * A call that gets no answer (connection refused, reset, timed out) starts an outage: one
 * `warn` line names the participant id, its server's origin (never a path: paths name
 * resources) and a hint. While it lasts, a reminder with the number of failed calls since is
 * logged at most every {@link OutageNoticesOptions.reminderMs}, and the jobs' own lines for
 * failures of the same kind are lowered to `debug` ({@link OutageNotices.covers}). The first
 * answer from that server (any HTTP status) ends the outage with an `info` line.
 */
export interface OutageNoticesOptions {
  log: Logger;
  /** Per participant: what to tell the operator (for the example network: start the sandbox). */
  hint?: (participantId: string) => string | undefined;
  /** Least time between two reminders of one outage; default 5 minutes. */
  reminderMs?: number;
  now?: () => number;
}

interface Outage {
  /** The server's origin and that of the failed call (a token endpoint may live elsewhere). */
  origins: Set<string>;
  since: number;
  lastLoggedAt: number;
  failedSinceLog: number;
  failed: number;
}

export const DEFAULT_OUTAGE_REMINDER_MS = 5 * 60_000;

/** Failures that mean "no answer from the server", as opposed to an HTTP error it sent. */
export function unreachable(err: unknown): err is OutboundHttpError | OutboundAuthError {
  return (err instanceof OutboundHttpError || err instanceof OutboundAuthError) && err.failure !== 'http';
}

export class OutageNotices {
  private readonly outages = new Map<string, Outage>();
  private readonly reminderMs: number;
  private readonly now: () => number;
  private readonly options: OutageNoticesOptions;

  constructor(options: OutageNoticesOptions) {
    this.options = options;
    this.reminderMs = options.reminderMs ?? DEFAULT_OUTAGE_REMINDER_MS;
    this.now = options.now ?? Date.now;
  }

  /** A call to `participantId`'s server (at `baseUrl`) failed with `err`. */
  failed(participantId: string, baseUrl: string, err: unknown): void {
    if (!unreachable(err)) return;
    const now = this.now();
    const origin = originOf(baseUrl);
    const outage = this.outages.get(participantId);
    const hint = this.options.hint?.(participantId);
    const fields = { event: 'outbound.unreachable', participant: participantId, origin, failure: err.failure, ...(hint ? { hint } : {}) };
    if (!outage) {
      this.outages.set(participantId, { origins: new Set([origin, errorOrigin(err)]), since: now, lastLoggedAt: now, failedSinceLog: 0, failed: 1 });
      this.options.log.warn(fields, `cannot reach the FHIR server of participant ${participantId} (${origin}): ${err.failure === 'timeout' ? 'timed out' : 'connection failed'}; jobs will retry${hint ? `. ${hint}` : ''}`);
      return;
    }
    outage.origins.add(errorOrigin(err));
    outage.failed++;
    outage.failedSinceLog++;
    if (now - outage.lastLoggedAt < this.reminderMs) return;
    this.options.log.warn({ ...fields, failedCalls: outage.failedSinceLog, sinceSeconds: Math.round((now - outage.since) / 1000) }, `still cannot reach the FHIR server of participant ${participantId} (${origin})${hint ? `. ${hint}` : ''}`);
    outage.lastLoggedAt = now;
    outage.failedSinceLog = 0;
  }

  /** `participantId`'s server answered (any status): ends its outage, if any. */
  answered(participantId: string, baseUrl: string): void {
    const outage = this.outages.get(participantId);
    if (!outage) return;
    this.outages.delete(participantId);
    this.options.log.info(
      { event: 'outbound.reachable', participant: participantId, origin: originOf(baseUrl), failedCalls: outage.failed, outageSeconds: Math.round((this.now() - outage.since) / 1000) },
      `the FHIR server of participant ${participantId} answers again`,
    );
  }

  /** True when `err` is a no-answer failure from a server whose outage was already announced. */
  covers(err: unknown): boolean {
    if (!unreachable(err)) return false;
    const origin = errorOrigin(err);
    return [...this.outages.values()].some((outage) => outage.origins.has(origin));
  }
}

function errorOrigin(err: OutboundHttpError | OutboundAuthError): string {
  return originOf(err instanceof OutboundHttpError ? err.url : err.tokenUrl);
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(unparsable URL)';
  }
}

/** The hint for the shipped example network, whose referrer's EHR is the sandbox. */
export function exampleNetworkHint(): string {
  return 'The example network expects the sandbox EHR: start it with `npm run sandbox` in another terminal';
}
