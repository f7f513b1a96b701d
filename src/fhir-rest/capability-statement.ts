import type { CapabilityStatement, CapabilityStatementRestResource, ResourceType } from '@medplum/fhirtypes';
import { PROFILE } from '../fhir/constants.ts';
import { BACKPORT_EXTENSION, BACKPORT_OPERATION, BACKPORT_PROFILE, BACKPORT_SERVER_CAPABILITIES, TASK_TOPIC } from '../subscriptions/backport.ts';
import { COMMON_PARAMETERS, SEARCH_PARAMETERS, type SearchParamKind } from './search-parameters.ts';

/** Which of our profiles each served type conforms to. */
const SUPPORTED_PROFILES: Partial<Record<ResourceType, string[]>> = {
  ServiceRequest: [PROFILE.serviceRequest],
  Task: [PROFILE.task],
};

/** CapabilityStatement search parameter type of each kind in the search-parameter table. */
const SEARCH_PARAM_TYPE = {
  reference: 'reference',
  token: 'token',
  identifier: 'token',
  id: 'token',
  coding: 'token',
  'last-updated': 'date',
} as const satisfies Record<SearchParamKind, 'reference' | 'token' | 'date'>;

const DOCUMENTATION: Partial<Record<ResourceType, string>> = {
  AuditEvent: 'Audit trail of reads and disclosures (IHE BALP coding): only for participants with the auditor role',
};

/**
 * `GET /fhir/metadata`: exactly what this endpoint supports, generated from the same
 * search-parameter table the search code uses, with our profiles and the SMART Backend
 * Services token endpoint.
 */
export function capabilityStatement(publicUrl: string, software: { name: string; version: string }, date: string): CapabilityStatement {
  const searchable: CapabilityStatementRestResource[] = Object.entries(SEARCH_PARAMETERS).map(([type, params]) => ({
    type: type as ResourceType,
    ...(DOCUMENTATION[type as ResourceType] ? { documentation: DOCUMENTATION[type as ResourceType] } : {}),
    ...(SUPPORTED_PROFILES[type as ResourceType] ? { supportedProfile: SUPPORTED_PROFILES[type as ResourceType] } : {}),
    interaction: [{ code: 'read' }, { code: 'vread' }, { code: 'history-instance' }, { code: 'search-type' }],
    versioning: 'versioned',
    readHistory: true,
    updateCreate: false,
    conditionalRead: 'not-match',
    searchParam: [
      ...(params ?? []).map((p) => ({
        name: p.name,
        definition: p.definition,
        type: SEARCH_PARAM_TYPE[p.kind],
        documentation: p.documentation,
      })),
      { name: '_lastUpdated', definition: 'http://hl7.org/fhir/SearchParameter/Resource-lastUpdated', type: 'date' as const, documentation: 'eq, ne, gt, lt, ge, le prefixes; repeat to AND' },
    ],
  }));
  // Binary: the record sets' attachment bytes, read only (streamed, with Range).
  const binary: CapabilityStatementRestResource = {
    type: 'Binary',
    documentation: 'Attachment bytes of record-set documents: read only, for the participants the record set is disclosed to; supports Range',
    interaction: [{ code: 'read' }],
  };
  // Topic-based Subscriptions (R5 Backport IG): the caller's own, on the one Task topic.
  const subscription: CapabilityStatementRestResource = {
    type: 'Subscription',
    extension: [{ url: BACKPORT_EXTENSION.topicCanonical, valueCanonical: TASK_TOPIC }],
    documentation: `Topic ${TASK_TOPIC} (a consult Task was created or changed status): rest-hook channel, payload id-only or empty; filters Task?owner= and Task?requester=, within the Tasks the caller may read`,
    supportedProfile: [BACKPORT_PROFILE.subscription],
    interaction: [{ code: 'create' }, { code: 'read' }, { code: 'search-type' }, { code: 'delete' }],
    searchParam: [{ name: 'status', definition: 'http://hl7.org/fhir/SearchParameter/Subscription-status', type: 'token' }],
    operation: [
      { name: 'status', definition: BACKPORT_OPERATION.status },
      { name: 'events', definition: BACKPORT_OPERATION.events },
    ],
  };
  const resources = [...searchable, binary, subscription];
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date,
    kind: 'instance',
    instantiates: [BACKPORT_SERVER_CAPABILITIES],
    software,
    implementation: { description: 'Second-opinion referral service', url: `${publicUrl}/fhir` },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        documentation: `Search result parameters: ${COMMON_PARAMETERS.join(', ')}. Send "Prefer: handling=strict" to have unknown parameters refused.`,
        security: {
          cors: false,
          service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
          description: 'SMART Backend Services (client_credentials with a private_key_jwt client assertion, RS384 or ES384)',
          extension: [
            {
              url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
              extension: [{ url: 'token', valueUri: `${publicUrl}/auth/token` }],
            },
          ],
        },
        resource: resources,
      },
    ],
  };
}
