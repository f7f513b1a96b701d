/**
 * The SMART scopes the service needs on a referrer's EHR, derived from what it does there:
 * EHRs that enforce scopes (Medplum, most vendors) refuse anything else, and
 * the post-back failed with 403 while the old default scope named no write at all.
 *
 * A participant's `fhir.scope` in the network file replaces the requested scope (to narrow or
 * extend it); whatever it leaves out of these needs is reported at start-up, and whatever the
 * EHR's token response does not grant is reported when the token arrives.
 */
import { hasScope, type Interaction } from '../auth/scopes.ts';

export interface OutboundNeed {
  type: string;
  interactions: readonly Interaction[];
  /** What the service does with it, for the reports. */
  why: string;
}

export const OUTBOUND_NEEDS: readonly OutboundNeed[] = [
  { type: 'DocumentReference', interactions: ['c', 'r', 's'], why: 'record sets are searched and read; the consult note is posted back (conditional create)' },
  { type: 'DiagnosticReport', interactions: ['r', 's'], why: 'pathology and imaging reports join the record set' },
  { type: 'ImagingStudy', interactions: ['r', 's'], why: 'imaging studies join the record set' },
  { type: 'Consent', interactions: ['r'], why: "the patient's consent is read before any disclosure" },
  { type: 'Patient', interactions: ['r'], why: 'the patient the referral is about' },
  { type: 'Organization', interactions: ['r'], why: "the consent's recipients are recognised by the identifiers of the Organizations it names" },
  { type: 'Binary', interactions: ['r'], why: 'attachment bytes are fetched and verified' },
  { type: 'Communication', interactions: ['c', 's'], why: 'the referring clinician is told the opinion arrived, and follow-up questions with their answers are posted back (conditional creates: a create and a search each)' },
];

/** What `fhir.profiles: keep` adds: the EHR resolves each `meta.profile` of a write with the caller's rights. */
export const PROFILE_NEED: OutboundNeed = {
  type: 'StructureDefinition',
  interactions: ['r', 's'],
  why: 'meta.profile is kept on what is posted (fhir.profiles: keep), and the EHR resolves each profile with the caller\'s rights',
};

/**
 * What pushing a record set to a consulting clinic's own server needs there (network file
 * `recordSet: push`): one transaction of conditional creates (a create and a search each) of
 * the record copies, the referral and its Task, and, for a later version of the record set, a
 * read and an update (If-Match) of the Task already pushed.
 */
export const PUSH_NEEDS: readonly OutboundNeed[] = [
  { type: 'DocumentReference', interactions: ['c', 's'], why: 'the record set is pushed (conditional create of each DocumentReference)' },
  { type: 'DiagnosticReport', interactions: ['c', 's'], why: 'reports of the record set are pushed (conditional create)' },
  { type: 'ImagingStudy', interactions: ['c', 's'], why: 'imaging studies of the record set are pushed (conditional create)' },
  { type: 'ServiceRequest', interactions: ['c', 's'], why: 'a copy of the referral is pushed with the record set (conditional create)' },
  { type: 'Task', interactions: ['c', 'r', 'u', 's'], why: "a copy of the clinic's Task is pushed (conditional create), and updated (If-Match) when a new version of the record set follows" },
];

/** The EHR settings the needs depend on (network file `fhir` block, and what the participant does). */
export interface OutboundSettings {
  profiles?: 'keep' | 'omit';
  /** Records are read and opinions posted there (a referrer's EHR). Default true. */
  referrer?: boolean;
  /** Record sets are pushed there (network file `recordSet: push`). Default false. */
  push?: boolean;
}

/** What the service needs on an EHR with these settings. */
export function outboundNeeds(settings: OutboundSettings = {}): readonly OutboundNeed[] {
  const needs = [...(settings.referrer === false ? [] : OUTBOUND_NEEDS), ...(settings.push ? PUSH_NEEDS : [])];
  return settings.profiles === 'keep' ? [...needs, PROFILE_NEED] : needs;
}

const ORDER: readonly Interaction[] = ['c', 'r', 'u', 'd', 's'];

/** One SMART v2 scope per need, letters in SMART's order: `system/DocumentReference.crs ...`. */
export function outboundScope(settings: OutboundSettings = {}): string {
  return outboundNeeds(settings).map((n) => `system/${n.type}.${ORDER.filter((i) => n.interactions.includes(i)).join('')}`).join(' ');
}

/** The scope requested from an EHR whose `fhir` block names none (and keeps no profiles). */
export const DEFAULT_OUTBOUND_SCOPE = outboundScope();

/** The needs `scopes` do not cover, one `system/<Type>.<letter>` each (empty when all are covered). */
export function missingOutboundScopes(scopes: readonly string[], settings: OutboundSettings = {}): string[] {
  return outboundNeeds(settings).flatMap((n) => n.interactions.filter((i) => !hasScope(scopes, n.type, i)).map((i) => `system/${n.type}.${i}`));
}
