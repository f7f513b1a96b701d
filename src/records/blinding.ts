/**
 * Blinding of a record set: knowing the first opinion
 * can bias the second, so a blinded referral withholds the first clinician's assessment from
 * the consultant until the consultant has committed their own. Withheld records are kept
 * (stored apart) and released later; this module only decides which ones they are.
 */
import type { DiagnosticReport, DocumentReference, ImagingStudy } from '@medplum/fhirtypes';
import { LOINC_DOC, SYSTEM } from '../fhir/constants.ts';
import { sameResourceReference } from '../fhir/references.ts';

/** One fetched record and the reference it was read from on the referring EHR. */
export interface BlindingEntry {
  resource: DocumentReference | DiagnosticReport | ImagingStudy;
  /** The record's reference on the EHR, relative (`DocumentReference/d1`) or absolute, maybe with `_history`. */
  sourceReference: string;
}

export type WithheldReason = 'first-opinion-document' | 'consult-note';

export interface BlindingPartition<E extends BlindingEntry> {
  /** What the consultant may see now, in input order. */
  disclosed: E[];
  /** What is kept back until the consultant's own opinion is in, in input order. */
  withheld: { entry: E; reason: WithheldReason }[];
}

export interface BlindingOptions {
  blinded: boolean;
  /** `firstOpinion.documents` of the request: references on the referring EHR. */
  firstOpinionReferences: readonly string[];
}

/**
 * Splits fetched records into disclosed and withheld. When blinded, withholds the documents
 * named as the first opinion and every consult note (LOINC 11488-4: a consult note in the
 * chart is an earlier opinion). When not blinded, withholds nothing.
 */
export function partitionForBlinding<E extends BlindingEntry>(entries: readonly E[], options: BlindingOptions): BlindingPartition<E> {
  const partition: BlindingPartition<E> = { disclosed: [], withheld: [] };
  for (const entry of entries) {
    const reason = options.blinded ? withheldReason(entry, options.firstOpinionReferences) : undefined;
    if (reason) partition.withheld.push({ entry, reason });
    else partition.disclosed.push(entry);
  }
  return partition;
}

function withheldReason(entry: BlindingEntry, firstOpinion: readonly string[]): WithheldReason | undefined {
  if (firstOpinion.some((ref) => sameResourceReference(ref, entry.sourceReference))) return 'first-opinion-document';
  if (isConsultNote(entry.resource)) return 'consult-note';
  return undefined;
}

function isConsultNote(resource: BlindingEntry['resource']): boolean {
  const codings =
    resource.resourceType === 'DocumentReference'
      ? (resource.type?.coding ?? [])
      : resource.resourceType === 'DiagnosticReport'
        ? (resource.code?.coding ?? [])
        : [];
  return codings.some((c) => c.system === SYSTEM.loinc && c.code === LOINC_DOC.consultNote.code);
}
