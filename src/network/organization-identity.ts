/**
 * Recognising a participant's organization in resources that come from an EHR.
 *
 * Every FHIR server assigns its own ids: the referring EHR names the consulting clinic as
 * `Organization/44e70d60-…`, never as the service's `Organization/lakeside`. So an EHR's
 * reference names a participant only by what both sides share: one of the participant's
 * identifiers (network file `organization.identifier`), given inline as a logical reference or
 * carried by the Organization the EHR's reference points to, or the EHR's own id of it when the
 * network file lists one (`fhir.aliases` of that EHR). Never by the service's local id alone.
 */
import type { Identifier, Organization, Reference } from '@medplum/fhirtypes';
import { sameResourceReference } from '../fhir/references.ts';
import type { FhirClient } from '../outbound/fhir-client.ts';
import { isRetryableError, OutboundHttpError } from '../outbound/outbound-errors.ts';

/** What a participant's organization is known as on one EHR. */
export interface OrganizationOnEhr {
  /** For people: the organization's name. */
  display: string;
  /** The participant's identifiers (network file). */
  identifiers: readonly Identifier[];
  /**
   * The EHR's own references to it: its alias in the network file, and the Organizations read
   * from the EHR that carry one of the identifiers.
   */
  references: readonly string[];
}

/** Same system and value (both required). */
export function sameIdentifier(a: Identifier, b: Identifier): boolean {
  return !!a.system && !!a.value && a.system === b.system && a.value === b.value;
}

/** Whether any of `candidates` is one of `known`. */
export function sharesIdentifier(candidates: readonly Identifier[] | undefined, known: readonly Identifier[]): boolean {
  return (candidates ?? []).some((c) => known.some((k) => sameIdentifier(c, k)));
}

/** Whether an EHR's reference names the organization: by identifier, or by one of the EHR's own references to it. */
export function namesOrganization(reference: Reference | undefined, organization: OrganizationOnEhr): boolean {
  if (!reference) return false;
  if (reference.identifier && sharesIdentifier([reference.identifier], organization.identifiers)) return true;
  const literal = reference.reference;
  return !!literal && organization.references.some((r) => sameResourceReference(literal, r));
}

/** `Lakeside Clinic (identifier https://registry.example.org/organizations|ORG-2001)`: how refusals name it. */
export function describeOrganization(organization: Pick<OrganizationOnEhr, 'display' | 'identifiers'>): string {
  const ids = organization.identifiers.map((i) => `${i.system ?? ''}|${i.value ?? ''}`);
  return ids.length > 0 ? `${organization.display} (identifier ${ids.join(', ')})` : organization.display;
}

/** An Organization the EHR would not let us read. */
export interface UnreadableOrganization {
  reference: string;
  /** The EHR's HTTP status (0: no response). */
  status: number;
}

/** The identifiers of the Organizations read from an EHR, by the reference they were read with. */
export interface OrganizationsOnEhr {
  identifiers: Map<string, readonly Identifier[]>;
  unreadable: UnreadableOrganization[];
}

/**
 * Reads the Organizations an EHR's references point to, once each, for their identifiers (what
 * names a participant across servers). References the network file already aliases on this EHR
 * are not read: the alias says who they are. A transient failure (EHR down, 5xx, timeout) is
 * thrown, so the caller retries or says so rather than refusing on a guess; a permanent one (403,
 * 404) is reported in `unreadable`. Used for a consent's recipients and for the clinics a FHIR
 * referral names by the EHR's own reference.
 */
export async function readOrganizationsOnEhr(
  references: readonly string[],
  aliases: Readonly<Record<string, string>> | undefined,
  client: Pick<FhirClient, 'readReference'>,
): Promise<OrganizationsOnEhr> {
  const identifiers = new Map<string, readonly Identifier[]>();
  const unreadable: UnreadableOrganization[] = [];
  for (const reference of new Set(references)) {
    if (Object.values(aliases ?? {}).some((alias) => sameResourceReference(alias, reference))) continue;
    try {
      const organization = await client.readReference<Organization>(reference);
      identifiers.set(reference, organization.resourceType === 'Organization' ? (organization.identifier ?? []) : []);
    } catch (err) {
      if (isRetryableError(err)) throw err;
      unreadable.push({ reference, status: err instanceof OutboundHttpError ? err.status : 0 });
    }
  }
  return { identifiers, unreadable };
}
