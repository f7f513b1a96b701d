/**
 * Who sees what of a referral, written once as data: for each kind of resource the service keeps,
 * the viewers on its access list. The use cases that write each kind build its access list to
 * match its row (intake, record assembly, consultant admission, the opinion, blinding's release:
 * each with access/audience.ts), the store filters every read by the list (`readerOf`), and the
 * access-matrix test (test/access-matrix.test.ts) drives every row over HTTP for every kind of
 * caller, computing what it expects from this table. The access table in docs/security.md shows it.
 *
 * Viewers:
 * - `referrer`: the participant that placed the referral (the whole organization);
 * - `requester`: the clinician who requested it: a referrer token issued for that practitioner,
 *   and a physician participant acting for that clinician (network `actsFor`);
 * - `consultant`: each consulting clinic admitted to the case: the patient's Consent (or the
 *   configured attestation) covers it and its record set is complete. Before that a clinic sees
 *   nothing of the case, not even that it exists. Once the patient withdraws consent for it
 *   (access/consent-withdrawal.ts) it loses the record sets and the first opinion again, and
 *   keeps the referral and its own Task (to see that, and why, the Task was cancelled);
 * - `consultant-unless-blinded`: as `consultant`, when the referral is not blinded;
 * - `owner`: the admitted clinic that owns the Task;
 * - `consultant-after-opinion`: an admitted clinic once its own opinion is in (blinding ends);
 * - `author`: the clinic that wrote the opinion;
 * - `later-consultant`: another clinic of the referral that comes to it after the opinion was
 *   returned (a third or fourth opinion): when admitted, unless the referral is blinded; on a
 *   blinded one, once its own opinion is in. Each such disclosure is audited;
 * - `auditor`: participants with the auditor role (AuditEvents belong to no participant).
 */
export type Viewer = 'referrer' | 'requester' | 'consultant' | 'consultant-unless-blinded' | 'owner' | 'consultant-after-opinion' | 'author' | 'later-consultant' | 'auditor';

export type ResourceKind = 'referral' | 'task' | 'intake-provenance' | 'first-opinion' | 'record-set' | 'withheld-record-set' | 'consult-note' | 'audit-event';

export interface ResourceAudience {
  /** The FHIR resources of this kind. */
  resources: string;
  viewers: readonly Viewer[];
}

export const RESOURCE_AUDIENCES: Readonly<Record<ResourceKind, ResourceAudience>> = {
  referral: { resources: 'ServiceRequest', viewers: ['referrer', 'requester', 'consultant'] },
  task: { resources: 'Task, and the Provenance of each change', viewers: ['referrer', 'requester', 'owner'] },
  'intake-provenance': { resources: 'Provenance of the intake', viewers: ['referrer', 'requester'] },
  'first-opinion': { resources: 'ClinicalImpression (the first opinion)', viewers: ['referrer', 'requester', 'consultant-unless-blinded', 'consultant-after-opinion'] },
  'record-set': {
    resources: 'record-set Bundle, its copies (DocumentReference, DiagnosticReport, ImagingStudy), their Provenance and attachment bytes (Binary)',
    viewers: ['referrer', 'requester', 'consultant'],
  },
  'withheld-record-set': { resources: 'withheld record set of a blinded referral (the first opinion\'s documents), as above', viewers: ['referrer', 'requester', 'consultant-after-opinion'] },
  'consult-note': { resources: 'consult note (DocumentReference) and its Provenance', viewers: ['referrer', 'requester', 'author', 'later-consultant'] },
  'audit-event': { resources: 'AuditEvent', viewers: ['auditor'] },
};

/** Whether a caller who is each of `viewers` for a resource of `kind` may see it. */
export function mayView(kind: ResourceKind, viewers: Iterable<Viewer>): boolean {
  const allowed = RESOURCE_AUDIENCES[kind].viewers;
  for (const v of viewers) if (allowed.includes(v)) return true;
  return false;
}
