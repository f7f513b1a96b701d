/**
 * Builders of the non-document resources of the sandbox chart (synthetic people and places only).
 */
import type { Consent, DiagnosticReport, Endpoint, ImagingStudy, Organization, Patient, Practitioner, Reference } from '@medplum/fhirtypes';

type OrgRef = Reference<Organization>;

/** The seeded patient: Alex Example, SSN-style identifier in the 999 (never issued) range. */
export function makePatient(): Patient {
  return {
    resourceType: 'Patient',
    id: 'pat-1',
    identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.1', value: '999-00-1234' }],
    name: [{ use: 'official', family: 'Example', given: ['Alex'] }],
    gender: 'other',
    birthDate: '1968-04-02',
    managingOrganization: { reference: 'Organization/st-olaf' },
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

/** The organization registry the example network's participants are identified in (examples/network.json). */
export const ORGANIZATION_REGISTRY = 'https://registry.example.org/organizations';

const registered = (value: string) => [{ system: ORGANIZATION_REGISTRY, value }];

/** The referring hospital, the clinics it refers to (Lakeside is named in the valid consent), and an unrelated clinic, with their registry identifiers. */
export function makeOrganizations(): Organization[] {
  return [
    { resourceType: 'Organization', id: 'st-olaf', identifier: registered('ORG-1001'), name: 'St Olaf Hospital (example)', active: true },
    { resourceType: 'Organization', id: 'lakeside', identifier: registered('ORG-2001'), name: 'Lakeside Clinic (example)', active: true },
    { resourceType: 'Organization', id: 'northfield-pathology', identifier: registered('ORG-2002'), name: 'Northfield Pathology Laboratory (example)', active: true },
    { resourceType: 'Organization', id: 'riverside-imaging', identifier: registered('ORG-2003'), name: 'Riverside Imaging Centre (example)', active: true },
    { resourceType: 'Organization', id: 'harbor-clinic', identifier: registered('ORG-9001'), name: 'Harbor Clinic (example, not in the network)', active: true },
  ];
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
export function makeReport(id: string, kind: 'pathology' | 'imaging', doc: PresentedDocument): DiagnosticReport {
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
    performer: [{ reference: 'Organization/st-olaf' }],
    ...(pathology ? {} : { imagingStudy: [{ reference: 'ImagingStudy/imaging-study-2024' }] }),
    conclusion: pathology ? 'Chronic synovitis; no malignancy.' : 'Periprosthetic lucency, tibial component.',
    presentedForm: [{ contentType: doc.contentType, size: doc.size, hash: doc.sha1Base64, url: doc.url }],
  };
}

/** Recipients a consent can name. */
export const CONSENT_ACTORS: Record<'lakeside' | 'other', OrgRef> = {
  lakeside: { reference: 'Organization/lakeside', display: 'Lakeside Clinic (example)' },
  other: { reference: 'Organization/harbor-clinic', display: 'Harbor Clinic (example)' },
};

/**
 * An R4 patient-privacy Consent (LOINC 59284-0) permitting disclosure of Alex Example's records
 * to `recipient` (provision.actor role IRCP, "information recipient") during `start`..`end`.
 */
export function makeConsent(id: string, start: Date, end: Date, recipient: OrgRef): Consent {
  return {
    resourceType: 'Consent',
    id,
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy', display: 'Privacy Consent' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0', display: 'Patient Consent' }] }],
    patient: { reference: 'Patient/pat-1' },
    dateTime: start.toISOString(),
    organization: [{ reference: 'Organization/st-olaf' }],
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
