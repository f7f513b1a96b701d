import { AsyncLocalStorage } from 'node:async_hooks';
import type { Caller } from '../access/caller.ts';
import type { Logger } from '../log/logger.ts';

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
