import type { Caller } from './caller.ts';
import type { Reader } from '../store/resource-store.ts';
import { requesterKey } from './audience.ts';

/**
 * The one way a caller's reads are filtered (access/audience.ts): a participant reads what names
 * it; a caller restricted to clinicians (a referrer token issued for one practitioner, a physician
 * participant) reads only what names one of those clinicians' requester keys. Every use case
 * that reads on a caller's behalf reads through this, so no door can forget the restriction.
 */
export function readerOf(caller: Pick<Caller, 'participantId' | 'referrals'>): Reader {
  const scope = caller.referrals;
  if (scope?.requesters) {
    const keys = scope.requesters.flatMap((r) => requesterKey(scope.referrer, r) ?? []);
    return { anyOf: keys };
  }
  return { participantId: caller.participantId };
}
