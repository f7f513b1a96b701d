/**
 * Records supplied later: about 10 % of the soak's referrals leave out the record their kind
 * requires (a revision's surgical operation note), so the first assembly reports it missing
 * (`awaiting-records`). The driver then writes that record on the sandbox EHR, as the
 * referrer's staff would (a DocumentReference and a Binary of its own, a PDF whose bytes are
 * unique to the referral, so its size and SHA-1 identify it), and the referrer names it with
 * `POST /second-opinions/{id}/records`. The clinic must then find it in the newest record set,
 * its attachment matching what the EHR holds.
 */
import type { Binary, DocumentReference } from '@medplum/fhirtypes';
import { makePdf, sha1Base64 } from '../../test/support/sandbox-ehr/documents.ts';
import type { SandboxEhr } from '../../test/support/sandbox-ehr/server.ts';

/** What the driver knows of the record it wrote on the EHR. */
export interface LaterRecord {
  /** `DocumentReference/{id}` on the EHR. */
  reference: string;
  size: number;
  sha1: string;
}

/** The required record the soak leaves out and supplies later: LOINC 11504-8, which a revision needs. */
export const LATER_RECORD_LOINC = '11504-8';

/**
 * Writes a surgical operation note for the seeded patient on the EHR. Dated before the
 * other referrals' search window (`since` 2023-01-01 in the intake example), so only the
 * referral that names it gets it.
 */
export async function writeLaterRecord(ehr: Pick<SandboxEhr, 'repo' | 'blobs' | 'seeded'>, label: string): Promise<LaterRecord> {
  const bytes = makePdf({ title: 'Operative note (supplied later)', lines: ['Synthetic record - Alex Example (not a real person)', `Soak record ${label}.`] });
  const contentType = 'application/pdf';
  const binary = await ehr.repo.createResource<Binary>({ resourceType: 'Binary', contentType });
  ehr.blobs.set(binary.id as string, { bytes, contentType });
  const date = '2022-11-03T10:00:00Z';
  const sha1 = sha1Base64(bytes);
  const doc = await ehr.repo.createResource<DocumentReference>({
    resourceType: 'DocumentReference',
    status: 'current',
    docStatus: 'final',
    type: { coding: [{ system: 'http://loinc.org', code: LATER_RECORD_LOINC, display: 'Surgical operation note' }], text: 'Surgical operation note' },
    category: [{ coding: [{ system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category', code: 'clinical-note', display: 'Clinical Note' }] }],
    subject: { reference: `Patient/${ehr.seeded.patientId}` },
    date,
    author: [{ reference: `Practitioner/${ehr.seeded.practitionerId}` }],
    custodian: { reference: `Organization/${ehr.seeded.organizationId}` },
    description: 'Surgical operation note',
    content: [{ attachment: { contentType, size: bytes.length, hash: sha1, title: 'Surgical operation note.pdf', creation: date, url: `Binary/${binary.id}` } }],
    context: { period: { start: date } },
  });
  return { reference: `DocumentReference/${doc.id}`, size: bytes.length, sha1 };
}

/** True when `source` (a copy's `meta.source`) names the EHR record `reference` (`DocumentReference/{id}`), absolute or relative, with or without `_history`. */
export function namesRecord(source: string | undefined, reference: string): boolean {
  if (!source) return false;
  const bare = source.replace(/\/_history\/[^/]+$/, '');
  return bare === reference || bare.endsWith(`/${reference}`);
}
