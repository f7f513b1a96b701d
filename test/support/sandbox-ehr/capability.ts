/**
 * The sandbox EHR's discovery documents: `GET [base]/metadata` (a CapabilityStatement, which
 * fhir-router would otherwise treat as a search) and `GET [base]/.well-known/smart-configuration`.
 */
import type { CapabilityStatement } from '@medplum/fhirtypes';

/** Resource types the sandbox holds and advertises. */
export const SANDBOX_RESOURCE_TYPES = [
  'Patient', 'Practitioner', 'Organization', 'DocumentReference', 'DiagnosticReport', 'ImagingStudy', 'Endpoint', 'Consent', 'Binary', 'Communication',
  'ServiceRequest', 'Task', 'Provenance', 'AuditEvent',
] as const;

/** A CapabilityStatement (R4 4.0.1) describing what the sandbox really supports. */
export function capabilityStatement(baseUrl: string, tokenUrl: string): CapabilityStatement {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2024-06-01',
    kind: 'instance',
    software: { name: 'Second-opinion sandbox EHR (@medplum/fhir-router MemoryRepository)' },
    implementation: { description: 'Synthetic test EHR - no real patients', url: baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        security: {
          service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
          extension: [
            {
              url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
              extension: [{ url: 'token', valueUri: tokenUrl }],
            },
          ],
        },
        resource: SANDBOX_RESOURCE_TYPES.map((type) => ({
          type,
          interaction: (['read', 'vread', 'search-type', 'create', 'update'] as const).map((code) => ({ code })),
          conditionalCreate: true,
          versioning: 'versioned',
          ...(type === 'DocumentReference'
            ? { searchParam: ['patient', 'subject', 'type', 'category', 'date'].map((name) => ({ name, type: name === 'date' ? 'date' : name === 'type' || name === 'category' ? 'token' : 'reference' })) }
            : {}),
        })) as NonNullable<CapabilityStatement['rest']>[number]['resource'],
        interaction: [{ code: 'batch' }, { code: 'transaction' }],
      },
    ],
  };
}

/** SMART configuration (Backend Services subset): where to get tokens and how to authenticate. */
export function smartConfiguration(tokenUrl: string): Record<string, unknown> {
  return {
    token_endpoint: tokenUrl,
    grant_types_supported: ['client_credentials'],
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    scopes_supported: ['system/*.rs', 'system/*.read', 'system/*.cruds'],
    capabilities: ['client-confidential-asymmetric', 'permission-v2'],
  };
}
