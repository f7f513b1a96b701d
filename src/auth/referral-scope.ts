/**
 * Which referrals a caller may read: the referrer sees the referrals it placed; a
 * participant with the `physician` role sees only those its clinicians requested, through the
 * referrer it acts for (network `actsFor`); and a referrer token issued for one practitioner
 * (`practitioner` in the token request) narrows the referrer to that clinician's referrals.
 *
 * Requesters are compared as absolute references on the referrer's EHR, the way intake stores
 * `ServiceRequest.requester`.
 */
import { absoluteReference, sameResourceReference } from '../fhir/references.ts';
import type { Network, Participant } from '../network/network.ts';
import { PRACTITIONER_REFERENCE } from '../network/network-schema.ts';

export interface ReferralScope {
  /** The referrer participant whose referrals are visible. */
  referrer: string;
  /** When set, only referrals whose requester is one of these (absolute Practitioner URLs). */
  requesters?: readonly string[];
}

export class PractitionerRefused extends Error {}

/**
 * The scope of a participant, optionally narrowed to one practitioner (`claim`). Undefined for
 * participants that read no referrals (consultants, auditors). Throws PractitionerRefused when
 * the claim is not a practitioner this participant may act for.
 */
export function referralScopeOf(participant: Participant, network: Pick<Network, 'get'>, claim?: string): ReferralScope | undefined {
  if (claim !== undefined && !PRACTITIONER_REFERENCE.test(claim)) throw new PractitionerRefused('practitioner must be a Practitioner reference (Practitioner/<id> or an absolute URL)');
  if (participant.roles.includes('referrer')) {
    const base = participant.fhir?.baseUrl;
    return { referrer: participant.id, ...(claim !== undefined ? { requesters: [base ? absoluteReference(base, claim) : claim] } : {}) };
  }
  if (participant.roles.includes('physician') && participant.actsFor) {
    const base = network.get(participant.actsFor.referrer)?.fhir?.baseUrl;
    const abs = (ref: string) => (base ? absoluteReference(base, ref) : ref);
    const registered = participant.actsFor.practitioners.map(abs);
    if (claim === undefined) return { referrer: participant.actsFor.referrer, requesters: registered };
    const wanted = abs(claim);
    if (!registered.some((r) => sameResourceReference(r, wanted))) throw new PractitionerRefused('practitioner is not one this participant acts for (network actsFor.practitioners)');
    return { referrer: participant.actsFor.referrer, requesters: [wanted] };
  }
  if (claim !== undefined) throw new PractitionerRefused('practitioner is only for participants with the referrer or physician role');
  return undefined;
}

/** Whether a referral placed by `placedBy` with this requester is within the scope. */
export function inReferralScope(scope: ReferralScope | undefined, placedBy: string, requester: string | undefined): boolean {
  if (!scope || scope.referrer !== placedBy) return false;
  if (!scope.requesters) return true;
  return !!requester && scope.requesters.some((r) => sameResourceReference(r, requester));
}
