/**
 * Who the consent's recipients are, in the network's terms.
 *
 * The referring EHR's Consent names the consulting clinic by the EHR's own Organization id.
 * Before the consent policy compares recipients with consultants, the Organizations the consent
 * names by literal reference are read from the EHR once each, and a consultant is known by every
 * one that carries one of its identifiers (network file `organization.identifier`), plus the
 * alias the network file gives it on this EHR (`fhir.aliases`). See network/organization-identity.ts.
 */
import type { Consent, Identifier } from '@medplum/fhirtypes';
import { readOrganizationsOnEhr, sharesIdentifier, type OrganizationOnEhr, type UnreadableOrganization } from '../network/organization-identity.ts';
import type { FhirClient } from '../outbound/fhir-client.ts';
import { organizationActorReferences } from './consent-policy.ts';

/** A participant as recognition needs it. */
export interface RecognisableParticipant {
  id: string;
  name: string;
  organization: { display?: string; identifier?: Identifier[] };
}

/** A recipient Organization the EHR would not let us read. */
export type UnreadableRecipient = UnreadableOrganization;

export interface RecognisedConsultants {
  /** Participant id -> how the referring EHR knows it. */
  byParticipant: Map<string, OrganizationOnEhr>;
  unreadable: UnreadableRecipient[];
}

/** More than this many distinct recipient Organizations in one consent are not read (the rest cannot match). */
export const MAX_RECIPIENT_READS = 20;

/**
 * Reads the consent's recipient Organizations from the referring EHR and tells, for each
 * consultant, which of the EHR's references name it. A transient failure (EHR down) is thrown,
 * so the job retries rather than refusing on a guess; a permanent one (403, 404) leaves that
 * reference unmatched and is reported in `unreadable`.
 */
export async function recognizeConsultants(
  consent: Consent | undefined,
  consultants: readonly RecognisableParticipant[],
  aliases: Readonly<Record<string, string>> | undefined,
  client: Pick<FhirClient, 'readReference'>,
): Promise<RecognisedConsultants> {
  // An alias already says who a recipient is: only the others are read.
  const { identifiers: read, unreadable } = await readOrganizationsOnEhr(organizationActorReferences(consent).slice(0, MAX_RECIPIENT_READS), aliases, client);
  const byParticipant = new Map<string, OrganizationOnEhr>();
  for (const consultant of consultants) {
    const identifiers = consultant.organization.identifier ?? [];
    const alias = aliases?.[consultant.id];
    const references = [...(alias ? [alias] : []), ...[...read].filter(([, ids]) => sharesIdentifier(ids, identifiers)).map(([reference]) => reference)];
    byParticipant.set(consultant.id, { display: consultant.organization.display ?? consultant.name, identifiers, references });
  }
  return { byParticipant, unreadable };
}

/** The hint a "not a recipient" refusal gets when some recipients could not be read. */
export function unreadableHint(unreadable: readonly UnreadableRecipient[]): string {
  if (unreadable.length === 0) return '';
  const statuses = [...new Set(unreadable.map((u) => (u.status ? `HTTP ${u.status}` : 'no response')))].join(', ');
  return `; ${unreadable.length} recipient Organization(s) named by the consent could not be read from the EHR (${statuses}): the service recognises consultants by their identifiers and needs system/Organization.r there`;
}
