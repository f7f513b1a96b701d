/**
 * Consent to disclose (records leave the originating organization
 * only with the patient's consent to disclose them to that consultant).
 *
 * Evaluates an R4 Consent read from the referring EHR for one disclosure: these records, of
 * this patient, to this consultant organization, now, for treatment. Pure: the caller reads
 * the Consent and passes the clock. Anything it cannot positively read as a permission is a
 * refusal (fail closed).
 *
 * @see https://hl7.org/fhir/R4/consent.html
 */
import type { Coding, CodeableConcept, Consent, ConsentProvision, ConsentProvisionActor, Period, Reference } from '@medplum/fhirtypes';
import { CONSENT_SYSTEM, PURPOSE_TREATMENT } from '../fhir/constants.ts';
import { parseResourceReference } from '../fhir/references.ts';
import { describeOrganization, namesOrganization, type OrganizationOnEhr } from '../network/organization-identity.ts';

export type ConsentRefusalCode = 'missing' | 'inactive' | 'expired' | 'not-yet-valid' | 'denied' | 'wrong-patient' | 'not-a-recipient';

export type ConsentDecision =
  /** `basis` says what allowed it: a Consent, or the referrer's attestation (config-gated). */
  | { permitted: true; basis: 'consent' | 'attestation' }
  /** `reason` is for people (Task.businessStatus text, logs): it names no patient data. */
  | { permitted: false; code: ConsentRefusalCode; reason: string };

export interface ConsentContext {
  /**
   * The organization the records would be disclosed to, as the referring EHR knows it: its
   * identifiers and the EHR's own references to it (network/organization-identity.ts).
   */
  consultant: OrganizationOnEhr;
  /** The referral's patient (relative or absolute). */
  patientReference: string;
  now: Date;
  /** Config: a request without a consent reference may proceed on the referrer's attestation. Off by default. */
  attestationAllowed?: boolean;
  /** The request carries the referrer's attestation that consent was obtained. */
  attested?: boolean;
  /** Purpose of the disclosure; default treatment (v3-ActReason TREAT). */
  purpose?: Coding;
}

/**
 * Recipient roles (v3-ParticipationType): information recipient, primary information
 * recipient, referred to. When a provision names actors in one of these roles, only those
 * actors are recipients; otherwise every actor it names is.
 */
export const RECIPIENT_ROLES: readonly string[] = ['IRCP', 'PRCP', 'REFT'];

const PRIVACY_SCOPE = 'patient-privacy';
const DISCLOSE_ACTION = 'disclose';
const POLICY_OPT_IN = ['OPTIN', 'OPTINR'];

/**
 * Decides whether the Consent permits disclosing the patient's records to the consultant.
 *
 * Rules, in order: a Consent must exist (or, when config allows it, the request is attested);
 * `status` active; it is about this patient; its root provision's `period` covers now; it is
 * a privacy consent (scope patient-privacy, when coded); the root provision permits (type
 * permit, or no type under an opt-in policy); where it names actors, the consultant is among
 * the recipients; where it names purposes or actions, treatment and disclosure are among them.
 * Nested provisions are exceptions that apply when their own period, actors, purposes and
 * actions match this disclosure: a nested deny that applies refuses (deny wins), a nested
 * permit that applies lifts a root deny (opt-out with exceptions). A nested deny limited to
 * some data (class, code, data) refuses the whole disclosure: record sets are not disclosed
 * in part.
 */
export function evaluateConsent(consent: Consent | undefined, context: ConsentContext): ConsentDecision {
  if (!consent) {
    if (context.attestationAllowed && context.attested) return { permitted: true, basis: 'attestation' };
    return refuse('missing', 'No consent to disclose the records was provided with the request');
  }
  if (consent.status !== 'active') {
    return refuse('inactive', `The consent is not active (status ${consent.status ?? 'absent'})`);
  }
  const patient = consent.patient?.reference ? parseResourceReference(consent.patient.reference) : undefined;
  const ours = parseResourceReference(context.patientReference);
  if (!patient || !ours || patient.typeAndId !== ours.typeAndId) {
    return refuse('wrong-patient', 'The consent is not about the patient of this referral');
  }
  const root = consent.provision;
  if (!root) return refuse('denied', 'The consent states no provision permitting disclosure');

  const timing = periodStatus(root.period, context.now);
  if (timing === 'expired') return refuse('expired', 'The consent period has ended');
  if (timing === 'not-yet-valid') return refuse('not-yet-valid', 'The consent period has not started yet');
  if (timing === 'unreadable') return refuse('denied', 'The consent period cannot be read');

  const scopeCodes = consent.scope?.coding ?? [];
  if (scopeCodes.length > 0 && !scopeCodes.some((c) => c.system === CONSENT_SYSTEM.consentScope && c.code === PRIVACY_SCOPE)) {
    return refuse('denied', 'The consent is not a privacy consent (scope patient-privacy)');
  }

  const rootType = root.type ?? (isOptInPolicy(consent) ? 'permit' : undefined);
  if (rootType !== 'permit') {
    if (decide(root, context, 'deny') === 'deny') {
      return refuse('denied', 'The consent denies disclosure and makes no exception for this consultant');
    }
    return { permitted: true, basis: 'consent' };
  }
  if (root.actor?.length && !actorsInclude(root.actor, context.consultant)) {
    return refuse('not-a-recipient', `The consent does not name ${describeOrganization(context.consultant)} as a recipient`);
  }
  if (root.purpose?.length && !root.purpose.some((p) => sameCoding(p, purposeOf(context)))) {
    return refuse('denied', `The consent permits disclosure for other purposes than ${purposeOf(context).code}`);
  }
  if (root.action?.length && !includesDisclose(root.action)) {
    return refuse('denied', 'The consent does not permit disclosure (provision.action)');
  }
  if (decide(root, context, 'permit') === 'deny') {
    return refuse('denied', 'A provision of the consent denies disclosure to this consultant or for this purpose');
  }
  return { permitted: true, basis: 'consent' };
}

/** `own` (the provision's effective type), overridden by the nested provisions that apply (deny wins). */
function decide(provision: ConsentProvision, context: ConsentContext, own: 'permit' | 'deny'): 'permit' | 'deny' {
  let decision = own;
  for (const nested of provision.provision ?? []) {
    if (!applies(nested, context)) continue;
    // A nested provision with no type is an exception to a permit: treated as deny.
    if (nested.type !== 'permit' || decide(nested, context, 'permit') === 'deny') return 'deny';
    decision = 'permit';
  }
  return decision;
}

/** A nested provision applies when each condition it states matches this disclosure. */
function applies(provision: ConsentProvision, context: ConsentContext): boolean {
  if (provision.period && periodStatus(provision.period, context.now) !== 'covers') return false;
  if (provision.actor?.length && !actorsInclude(provision.actor, context.consultant)) return false;
  if (provision.purpose?.length && !provision.purpose.some((p) => sameCoding(p, purposeOf(context)))) return false;
  if (provision.action?.length && !includesDisclose(provision.action)) return false;
  return true;
}

function actorsInclude(actors: readonly ConsentProvisionActor[], consultant: ConsentContext['consultant']): boolean {
  return recipientsOf(actors).some(({ reference }) => namesOrganization(reference, consultant));
}

/** The actors a provision discloses to: those in a recipient role, or all of them when none has one. */
function recipientsOf(actors: readonly ConsentProvisionActor[]): ConsentProvisionActor[] {
  const recipients = actors.filter((a) =>
    (a.role?.coding ?? []).some((c) => c.system === CONSENT_SYSTEM.participationType && RECIPIENT_ROLES.includes(c.code ?? '')),
  );
  return recipients.length > 0 ? recipients : [...actors];
}

/**
 * Every actor reference of the consent's provisions (root and nested) that names an
 * Organization by a literal reference: the ones to read from the EHR so their identifiers can
 * be compared with the consultants' (a reference with an inline identifier needs no read).
 */
export function organizationActorReferences(consent: Consent | undefined): string[] {
  const out = new Set<string>();
  const walk = (provision: ConsentProvision | undefined): void => {
    if (!provision) return;
    for (const { reference } of provision.actor ?? []) {
      if (isOrganizationLiteral(reference)) out.add(reference.reference);
    }
    for (const nested of provision.provision ?? []) walk(nested);
  };
  walk(consent?.provision);
  return [...out];
}

function isOrganizationLiteral(reference: Reference | undefined): reference is Reference & { reference: string } {
  if (!reference?.reference || reference.identifier?.value) return false;
  return parseResourceReference(reference.reference)?.typeAndId.startsWith('Organization/') ?? false;
}

function includesDisclose(actions: readonly CodeableConcept[]): boolean {
  return actions.some((a) => (a.coding ?? []).some((c) => c.system === CONSENT_SYSTEM.consentAction && c.code === DISCLOSE_ACTION));
}

function isOptInPolicy(consent: Consent): boolean {
  return (consent.policyRule?.coding ?? []).some((c) => POLICY_OPT_IN.includes(c.code ?? ''));
}

function purposeOf(context: ConsentContext): Coding {
  return context.purpose ?? PURPOSE_TREATMENT;
}

function sameCoding(a: Coding, b: Coding): boolean {
  return a.system === b.system && a.code === b.code;
}

function refuse(code: ConsentRefusalCode, reason: string): ConsentDecision {
  return { permitted: false, code, reason };
}

type PeriodStatus = 'covers' | 'expired' | 'not-yet-valid' | 'unreadable';

/** Whether `now` falls in the period, both ends inclusive at their own precision (`2025` ends with 2025). */
export function periodStatus(period: Period | undefined, now: Date): PeriodStatus {
  const at = now.getTime();
  const start = period?.start ? dateTimeRange(period.start) : undefined;
  const end = period?.end ? dateTimeRange(period.end) : undefined;
  if ((period?.start && !start) || (period?.end && !end)) return 'unreadable';
  if (start && at < start.first) return 'not-yet-valid';
  if (end && at > end.last) return 'expired';
  return 'covers';
}

const PARTIAL_DATE = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$/;

/** The first and last millisecond a FHIR dateTime stands for (partial dates in UTC). */
function dateTimeRange(value: string): { first: number; last: number } | undefined {
  const partial = PARTIAL_DATE.exec(value);
  if (partial) {
    const [year, month, day] = [Number(partial[1]), partial[2] ? Number(partial[2]) - 1 : undefined, partial[3] ? Number(partial[3]) : undefined];
    const first = Date.UTC(year, month ?? 0, day ?? 1);
    const next = day !== undefined ? Date.UTC(year, month!, day + 1) : month !== undefined ? Date.UTC(year, month + 1, 1) : Date.UTC(year + 1, 0, 1);
    return { first, last: next - 1 };
  }
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value)) return undefined;
  const instant = Date.parse(value);
  return Number.isNaN(instant) ? undefined : { first: instant, last: instant };
}
