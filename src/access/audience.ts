/**
 * Who may read a resource is its access list (`resource.access`): the keys of its audience.
 * A caller reads a resource when one of its own keys (`readerOf`, access/reader.ts) is on the list.
 *
 * Keys:
 * - a participant id (`st-olaf`, `lakeside-consults`): the whole organization;
 * - a requester key (`st-olaf|Practitioner/dr-nilsen`): the one clinician of the referrer who
 *   requested the referral. A referrer token issued for one practitioner, and a physician
 *   participant acting for that referrer's clinicians, read with requester keys only, so they
 *   see exactly the referrals their clinician requested, at every door (JSON, /fhir, Binary).
 *   Participant ids are slugs, so a key with `|` can never be mistaken for one.
 *
 * What the referrer may read of a referral, the referral's requester may read too: every
 * referrer-side access list is built by `referrerAudience`.
 */
import { parseResourceReference } from '../fhir/references.ts';

/**
 * The key of `requester` (a Practitioner or PractitionerRole reference on the referrer's EHR,
 * relative or absolute) among `referrerId`'s clinicians; undefined for a reference that names
 * no resource. The EHR base is left out: every reference of a referrer is on its own EHR.
 */
export function requesterKey(referrerId: string, requester: string | undefined): string | undefined {
  const parsed = requester ? parseResourceReference(requester) : undefined;
  return parsed ? `${referrerId}|${parsed.typeAndId}` : undefined;
}

/** The referrer-side audience of a referral's resources: the referrer and the referral's requester. */
export function referrerAudience(referrerId: string, requester: string | undefined): string[] {
  const key = requesterKey(referrerId, requester);
  return key ? [referrerId, key] : [referrerId];
}
