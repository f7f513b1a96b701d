import { AsyncLocalStorage } from 'node:async_hooks';
import type { ReferralScope } from '../auth/referral-scope.ts';
import type { Logger } from '../log/logger.ts';

/** Who is calling: resolved once from the bearer token by the auth middleware. */
export interface Caller {
  /** The registered client system (SMART Backend Services client id). */
  clientId: string;
  /** The participant (organization) the client belongs to. */
  participantId: string;
  /** The participant's roles in the network: referrer, consultant, physician, auditor, admin. */
  roles: readonly string[];
  /** Granted SMART scopes. */
  scopes: readonly string[];
  /** Whose referrals the caller may read (referrers and physicians only; see auth/referral-scope.ts). */
  referrals?: ReferralScope;
}

/** Request context carried through async calls (AsyncLocalStorage). */
export interface RequestContext {
  requestId: string;
  /** W3C trace id from `traceparent`, or a new one. Travels into jobs and outbound calls. */
  traceId: string;
  log: Logger;
  caller?: Caller;
}

const storage = new AsyncLocalStorage<RequestContext>();

export function runWithContext<T>(ctx: RequestContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

export function getContext(): RequestContext | undefined {
  return storage.getStore();
}
