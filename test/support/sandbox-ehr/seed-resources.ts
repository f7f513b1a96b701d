/**
 * Builders of the non-document resources of the sandbox chart (synthetic people and places only).
 *
 * Builders write the chart's LOCAL ids (`Patient/pat-1`, `Organization/st-olaf`, ...); with the
 * `serverIds` switch seed.ts stores each resource under a server-assigned UUID and rewrites the
 * references to it, so only `ehr.seeded` knows the ids a running sandbox uses.
 */
import type { Consent, DiagnosticReport, Endpoint, Identifier, ImagingStudy, Organization, Patient, Practitioner, Reference } from '@medplum/fhirtypes';

type OrgRef = Reference<Organization>;

/** The seeded patient's identifier (SSN-style, in the 999 range that is never issued): find the patient with `Patient?identifier=system|value`. */
export const SANDBOX_PATIENT_IDENTIFIER = { system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' } as const;

/** The organization registry the sandbox's Organizations are identified in (the `ownOrganizations` switch). */
export const ORGANIZATION_REGISTRY_SYSTEM = 'https://registry.example.org/organizations';

/**
 * The organizations the sandbox EHR knows, keyed by the id the example network file gives them
 * (`Organization/lakeside` there), with their names and registry identifiers. With
 * `ownOrganizations` the sandbox holds all of them under ids of its own, each carrying its
 * identifier; the network file names the same identifiers, which is how a participant is
 * recognised on an EHR that never heard of the network's ids. Harbor Clinic is not in the network.
 */
export const SANDBOX_ORGANIZATIONS = {
  'st-olaf': { name: 'St Olaf Hospital (example)', identifier: { system: ORGANIZATION_REGISTRY_SYSTEM, value: 'ORG-1001' } },
  'st-olaf-primary-care': { name: 'St Olaf Primary Care (example)', identifier: { system: ORGANIZATION_REGISTRY_SYSTEM, value: 'ORG-1002' } },
  lakeside: { name: 'Lakeside Clinic (example)', identifier: { system: ORGANIZATION_REGISTRY_SYSTEM, value: 'ORG-2001' } },
  'northfield-pathology': { name: 'Northfield Pathology Laboratory (example)', identifier: { system: ORGANIZATION_REGISTRY_SYSTEM, value: 'ORG-2002' } },
  'riverside-imaging': { name: 'Riverside Imaging Centre (example)', identifier: { system: ORGANIZATION_REGISTRY_SYSTEM, value: 'ORG-2003' } },
  'audit-office': { name: 'Audit Office (example)', identifier: { system: ORGANIZATION_REGISTRY_SYSTEM, value: 'ORG-3001' } },
  'harbor-clinic': { name: 'Harbor Clinic (example, not in the network)', identifier: { system: ORGANIZATION_REGISTRY_SYSTEM, value: 'ORG-9001' } },
} as const satisfies Record<string, { name: string; identifier: Identifier }>;

/** A key of {@link SANDBOX_ORGANIZATIONS}. */
export type SandboxOrganizationKey = keyof typeof SANDBOX_ORGANIZATIONS;

/**
 * The local id of an organization: with `own` (the `ownOrganizations` switch) one of the EHR's
 * own (`org-1001`, replaced by a UUID under `serverIds`), otherwise the network file's id.
 */
export function organizationLocalId(key: SandboxOrganizationKey, own: boolean): string {
  return own ? `org-${SANDBOX_ORGANIZATIONS[key].identifier.value.slice('ORG-'.length)}` : key;
}

/** The seeded patient: Alex Example; `hospital` is the managing organization's reference. */
export function makePatient(hospital = 'Organization/st-olaf'): Patient {
  return {
    resourceType: 'Patient',
    id: 'pat-1',
    identifier: [{ ...SANDBOX_PATIENT_IDENTIFIER }],
    name: [{ use: 'official', family: 'Example', given: ['Alex'] }],
    gender: 'other',
    birthDate: '1968-04-02',
    managingOrganization: { reference: hospital },
  };
}

/** The first-opinion surgeon. */
export function makePractitioner(): Practitioner {
  return {
    resourceType: 'Practitioner',
    id: 'dr-nilsen',
    name: [{ family: 'Nilsen', given: ['Ingrid'], prefix: ['Dr'] }],
    qualification: [{ code: { text: 'Orthopaedic surgeon' } }],
  };
}

/**
 * The EHR's Organizations: every one of {@link SANDBOX_ORGANIZATIONS} with its registry
 * identifier (the service recognises participants by identifier only), under an id of the EHR's
 * own with `own`, else under the network file's id.
 */
export function makeOrganizations(own: boolean): Organization[] {
  const keys = Object.keys(SANDBOX_ORGANIZATIONS) as SandboxOrganizationKey[];
  return keys.map((key) => ({
    resourceType: 'Organization',
    id: organizationLocalId(key, own),
    identifier: [{ ...SANDBOX_ORGANIZATIONS[key].identifier }],
    name: SANDBOX_ORGANIZATIONS[key].name,
    active: true,
  }));
}

/** The PACS endpoint the ImagingStudy points at (pixels are referenced, never copied). */
export function makeEndpoint(): Endpoint {
  return {
    resourceType: 'Endpoint',
    id: 'pacs-wado',
    status: 'active',
    connectionType: { system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code: 'dicom-wado-rs' },
    payloadType: [{ text: 'DICOM' }],
    payloadMimeType: ['application/dicom'],
    address: 'https://pacs.st-olaf.example/wado-rs',
  };
}

/** A knee X-ray study; series/instances listed, pixels only at the endpoint. */
export function makeImagingStudy(): ImagingStudy {
  return {
    resourceType: 'ImagingStudy',
    id: 'imaging-study-2024',
    identifier: [{ system: 'urn:dicom:uid', value: 'urn:oid:2.25.123456789012345678901234567890' }],
    status: 'available',
    subject: { reference: 'Patient/pat-1' },
    started: '2024-02-20T13:45:00Z',
    endpoint: [{ reference: 'Endpoint/pacs-wado' }],
    numberOfSeries: 1,
    numberOfInstances: 2,
    description: 'XR knee right, 2 views',
    series: [
      {
        uid: '2.25.223456789012345678901234567890',
        modality: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: 'DX' },
        bodySite: { system: 'http://snomed.info/sct', code: '72696002', display: 'Knee region structure' },
        instance: [
          { uid: '2.25.323456789012345678901234567891', sopClass: { system: 'urn:ietf:rfc:3986', code: 'urn:oid:1.2.840.10008.5.1.4.1.1.1.1' } },
          { uid: '2.25.323456789012345678901234567892', sopClass: { system: 'urn:ietf:rfc:3986', code: 'urn:oid:1.2.840.10008.5.1.4.1.1.1.1' } },
        ],
      },
    ],
  };
}

/** Declared facts of the document a report presents (see seed.ts `SeededDocument`). */
export interface PresentedDocument {
  id: string;
  contentType: string;
  size: number;
  sha1Base64: string;
  url?: string;
}

/** A final pathology (LOINC 11526-1) or imaging (18748-4) report presenting the seeded document. */
export function makeReport(id: string, kind: 'pathology' | 'imaging', doc: PresentedDocument, hospital = 'Organization/st-olaf'): DiagnosticReport {
  const pathology = kind === 'pathology';
  return {
    resourceType: 'DiagnosticReport',
    id,
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: pathology ? 'SP' : 'RAD' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: pathology ? '11526-1' : '18748-4', display: pathology ? 'Pathology study' : 'Diagnostic imaging study' }] },
    subject: { reference: 'Patient/pat-1' },
    effectiveDateTime: pathology ? '2024-03-14T12:00:00Z' : '2024-02-20T13:45:00Z',
    issued: pathology ? '2024-03-15T09:00:00Z' : '2024-02-20T14:00:00Z',
    performer: [{ reference: hospital }],
    ...(pathology ? {} : { imagingStudy: [{ reference: 'ImagingStudy/imaging-study-2024' }] }),
    conclusion: pathology ? 'Chronic synovitis; no malignancy.' : 'Periprosthetic lucency, tibial component.',
    presentedForm: [{ contentType: doc.contentType, size: doc.size, hash: doc.sha1Base64, url: doc.url }],
  };
}

/**
 * Recipients as the lenient chart's consents name them (the network file's ids, which only
 * exist on a sandbox without `ownOrganizations`). For a running sandbox prefer
 * `organizationReference(ehr.seeded, key)` (seed.ts), right under every switch.
 */
export const CONSENT_ACTORS: Record<'lakeside' | 'other', OrgRef> = {
  lakeside: consentRecipient('lakeside', false),
  other: consentRecipient('harbor-clinic', false),
};

/** The recipient a consent names: the organization's reference on this EHR (no inline identifier: the reader resolves it) and its name. */
export function consentRecipient(key: SandboxOrganizationKey, own: boolean): OrgRef {
  return { reference: `Organization/${organizationLocalId(key, own)}`, display: SANDBOX_ORGANIZATIONS[key].name };
}

/**
 * An R4 patient-privacy Consent (LOINC 59284-0) permitting disclosure of Alex Example's records
 * to `recipient` (provision.actor role IRCP, "information recipient") during `start`..`end`.
 */
export function makeConsent(id: string, start: Date, end: Date, recipient: OrgRef, hospital = 'Organization/st-olaf'): Consent {
  return {
    resourceType: 'Consent',
    id,
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy', display: 'Privacy Consent' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0', display: 'Patient Consent' }] }],
    patient: { reference: 'Patient/pat-1' },
    dateTime: start.toISOString(),
    organization: [{ reference: hospital }],
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    provision: {
      type: 'permit',
      period: { start: start.toISOString(), end: end.toISOString() },
      actor: [
        {
          role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP', display: 'information recipient' }] },
          reference: recipient,
        },
      ],
      purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT', display: 'treatment' }],
    },
  };
}
