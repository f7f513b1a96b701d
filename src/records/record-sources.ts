/**
 * What the record assembly reads from the referring EHR: the documents the request names, the
 * searches its kind calls for, the Consent; and how a failed read is told apart (a record that
 * is not there, or a failure of the call).
 */
import type { Consent, DiagnosticReport, DocumentReference, ImagingStudy } from '@medplum/fhirtypes';
import type { Kind } from '../fhir/constants.ts';
import { absoluteReference, parseResourceReference } from '../fhir/references.ts';
import type { IntakeRequest } from '../intake/intake-request.ts';
import type { FhirClient } from '../outbound/fhir-client.ts';
import { isNotFound, OutboundAuthError, OutboundHttpError } from '../outbound/outbound-errors.ts';
import type { RecordResource } from './record-set-bundle.ts';
import type { MissingDocument } from './store-record.ts';

const REPORT_KINDS: readonly Kind[] = ['pathology-review', 'imaging-review'];
const STUDY_KINDS: readonly Kind[] = ['imaging-review', 'pathology-review'];

/** A read the EHR answers this way is a record that is not there (FHIR: 410 is a deleted resource's read). */
export function isMissing(err: unknown): boolean {
  return isNotFound(err) || (err instanceof OutboundHttpError && err.status === 410);
}

/** A failure of the call itself (HTTP status, no answer, token): classified, retried or ending the job, never a missing record. */
export function isCallFailure(err: unknown): boolean {
  return err instanceof OutboundHttpError || err instanceof OutboundAuthError;
}

/** A record read from the EHR and its absolute reference there. */
export type Source = { resource: RecordResource; source: string };

/** Named documents, the DocumentReference search, and reports and studies where the kind needs them; deduplicated, a page at a time. */
export async function* collectSources(request: IntakeRequest, client: FhirClient, missing: MissingDocument[]): AsyncGenerator<Source[]> {
  const found = new Set<string>();
  const fresh = (resources: RecordResource[]): Source[] => {
    const out: Source[] = [];
    for (const resource of resources) {
      const key = `${resource.resourceType}/${resource.id}`;
      if (found.has(key)) continue;
      found.add(key);
      out.push({ resource, source: absoluteReference(client.baseUrl, key) });
    }
    return out;
  };
  const named: RecordResource[] = [];
  const add = (resource: RecordResource) => named.push(resource);
  const references = [...(request.records.documents ?? []), ...(request.firstOpinion?.documents ?? [])].map((d) => d.reference);
  for (const reference of new Set(references)) {
    try {
      // A record named by the referrer: a document, or a report or study (RECORD_TYPES of intake).
      const record = await client.readReference<RecordResource>(reference);
      if (record.resourceType === 'DocumentReference' || record.resourceType === 'DiagnosticReport' || record.resourceType === 'ImagingStudy') add(record);
      else missing.push({ reference, reason: 'unreadable' });
    } catch (err) {
      if (isMissing(err)) missing.push({ reference, reason: 'not-found', status: (err as OutboundHttpError).status });
      else if (isCallFailure(err)) throw err;
      // A reference the client will not follow (contained, another server): this record is unreadable.
      else missing.push({ reference, reason: 'unreadable' });
    }
  }

  yield fresh(named);

  const patient = patientParam(request.patient.reference, client.baseUrl);
  const search = request.records.search;
  const since: Record<string, string> = search?.since ? { date: `ge${search.since}` } : {};
  if (search) {
    const params: Record<string, string> = { patient, ...since };
    if (search.type?.length) params.type = search.type.join(',');
    if (search.category?.length) params.category = search.category.join(',');
    for await (const page of client.searchPages<DocumentReference>('DocumentReference', params)) yield fresh(page);
  }
  if (REPORT_KINDS.includes(request.kind)) {
    const params: Record<string, string> = { patient, ...since };
    if (search?.type?.length) params.code = search.type.join(',');
    for await (const page of client.searchPages<DiagnosticReport>('DiagnosticReport', params)) yield fresh(page);
  }
  if (STUDY_KINDS.includes(request.kind)) {
    for await (const page of client.searchPages<ImagingStudy>('ImagingStudy', { patient })) yield fresh(page);
  }
}

/** `Patient/id` when the patient lives on this EHR (or was given relative), else the absolute reference. */
function patientParam(reference: string, baseUrl: string): string {
  const parsed = parseResourceReference(reference);
  if (!parsed) return reference;
  if (parsed.base === '' || parsed.base.replace(/\/+$/, '') === baseUrl.replace(/\/+$/, '')) return parsed.typeAndId;
  return `${parsed.base}/${parsed.typeAndId}`;
}

/** The Consent named in the request, read from the referring EHR; undefined when none was named or it is gone. */
export async function readConsent(request: IntakeRequest, client: FhirClient): Promise<Consent | undefined> {
  if (!request.consent) return undefined;
  try {
    const consent = await client.readReference<Consent>(request.consent.reference);
    return consent.resourceType === 'Consent' ? consent : undefined;
  } catch (err) {
    // Gone or never there: no consent. A refused or failed read is a failure of the call (classified above).
    if (isMissing(err) || !isCallFailure(err)) return undefined;
    throw err;
  }
}
