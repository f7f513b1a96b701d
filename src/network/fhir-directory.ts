/**
 * The network as FHIR: an `Organization` for every participant and an `Endpoint`
 * for every FHIR server the network file names, so a client discovers clinics and where to reach
 * them with plain FHIR reads and searches instead of our `/participants` JSON.
 *
 * Built once from the network file (the service reads it at start-up), so every resource is
 * version 1, last updated when the service started. What is published is what the directory
 * JSON shows (name, roles, the organization's id and identifiers) plus the FHIR base URL; never
 * client registrations, keys, token URLs or the webhook URL (the service alone posts to a
 * participant's webhook: no other participant has a use for it).
 */
import { createHash } from 'node:crypto';
import type { Endpoint, Organization, Resource } from '@medplum/fhirtypes';
import { PARTICIPANT_ROLE_DISPLAY, SYSTEM } from '../fhir/constants.ts';
import type { Network, Participant, Role } from './network.ts';

const ROLE_DISPLAY: Record<Role, string> = PARTICIPANT_ROLE_DISPLAY;

/** The types the directory serves. */
export const DIRECTORY_TYPES = ['Organization', 'Endpoint'] as const;
export type DirectoryType = (typeof DIRECTORY_TYPES)[number];

export function isDirectoryType(type: string): type is DirectoryType {
  return (DIRECTORY_TYPES as readonly string[]).includes(type);
}

const MAX_ID = 64;

/** `lakeside-fhir`: the id of an organization's FHIR Endpoint (a digest when that would pass 64 characters). */
export function endpointId(organizationId: string): string {
  const id = `${organizationId}-fhir`;
  return id.length <= MAX_ID ? id : `${createHash('sha256').update(organizationId).digest('hex').slice(0, MAX_ID - 5)}-fhir`;
}

function organizationOf(p: Participant, meta: Resource['meta'], endpoint: string | undefined): Organization {
  const id = p.organization.reference.slice('Organization/'.length);
  return {
    resourceType: 'Organization',
    id,
    meta,
    ...(p.organization.identifier?.length ? { identifier: p.organization.identifier.map((i) => ({ system: i.system, value: i.value })) } : {}),
    active: true,
    type: p.roles.map((role) => ({ coding: [{ system: SYSTEM.participantRole, code: role, display: ROLE_DISPLAY[role] }] })),
    name: p.organization.display ?? p.name,
    ...(endpoint ? { endpoint: [{ reference: `Endpoint/${endpoint}` }] } : {}),
  };
}

function fhirEndpointOf(p: Participant, id: string, meta: Resource['meta']): Endpoint {
  return {
    resourceType: 'Endpoint',
    id,
    meta,
    status: 'active',
    connectionType: { system: SYSTEM.endpointConnectionType, code: 'hl7-fhir-rest', display: 'HL7 FHIR' },
    name: `${p.organization.display ?? p.name}: FHIR server`,
    managingOrganization: { reference: p.organization.reference, display: p.organization.display ?? p.name },
    payloadType: [{ coding: [{ system: SYSTEM.endpointPayloadType, code: 'any', display: 'Any' }] }],
    payloadMimeType: ['application/fhir+json'],
    address: p.fhir?.baseUrl as string,
  };
}

/** The directory's resources and what searches need of the network. */
export class FhirDirectory {
  readonly organizations: readonly Organization[];
  readonly endpoints: readonly Endpoint[];
  readonly #network: Network;

  constructor(network: Network, builtAt: Date) {
    this.#network = network;
    const meta = { versionId: '1', lastUpdated: builtAt.toISOString() };
    const organizations: Organization[] = [];
    const endpoints: Endpoint[] = [];
    for (const p of network.participants) {
      const orgId = p.organization.reference.slice('Organization/'.length);
      const endpoint = p.fhir?.baseUrl ? fhirEndpointOf(p, endpointId(orgId), meta) : undefined;
      if (endpoint) endpoints.push(endpoint);
      organizations.push(organizationOf(p, meta, endpoint?.id));
    }
    this.organizations = organizations;
    this.endpoints = endpoints;
  }

  /** Every resource of `type`. */
  all(type: DirectoryType): readonly Resource[] {
    return type === 'Organization' ? this.organizations : this.endpoints;
  }

  read(type: DirectoryType, id: string): Resource | undefined {
    return this.all(type).find((r) => r.id === id);
  }

  /**
   * The EHR bases a caller's relative patient reference (`patient=Patient/123`) may mean: its own
   * EHR when it has one (a referrer; a physician portal, its referrer's), else every EHR of the
   * network (a clinic has no EHR of the patient; the access filter still decides what it sees).
   */
  patientBasesFor(participantId: string): string[] {
    const participant = this.#network.get(participantId);
    const own = participant?.fhir?.baseUrl ?? (participant?.actsFor ? this.#network.get(participant.actsFor.referrer)?.fhir?.baseUrl : undefined);
    if (own) return [own];
    return this.#network.participants.filter((p) => p.roles.includes('referrer') && p.fhir?.baseUrl).map((p) => p.fhir?.baseUrl as string);
  }
}
