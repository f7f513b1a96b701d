import { isOnFhirBase } from '../fhir/references.ts';
import { issue, unprocessable } from '../fhir/outcomes.ts';
import type { DocumentRef, IntakeRequest } from './intake-request.ts';

/** A reference a request carries, and the field it is in (`records.documents[0].reference`). */
export interface CarriedReference {
  field: string;
  reference: string;
}

/** The documents of a `documents` array (intake's two, the body of `/records` and `/info`). */
export function documentReferences(prefix: string, documents: readonly DocumentRef[] | undefined): CarriedReference[] {
  return (documents ?? []).map((d, i) => ({ field: `${prefix}[${i}].reference`, reference: d.reference }));
}

/** Every reference an intake request carries: each names a resource on the referrer's EHR. */
export function intakeReferences(request: IntakeRequest): CarriedReference[] {
  return [
    { field: 'patient.reference', reference: request.patient.reference },
    { field: 'requester.reference', reference: request.requester.reference },
    ...documentReferences('firstOpinion.documents', request.firstOpinion?.documents),
    ...documentReferences('records.documents', request.records.documents),
    ...(request.consent ? [{ field: 'consent.reference', reference: request.consent.reference }] : []),
  ];
}

/**
 * 422 naming every reference that leaves the referrer's own FHIR server (`baseUrl` from the
 * network file). The service later reads these references with its credentials for that
 * EHR: one to another host (`http://127.0.0.1:...`, `169.254.169.254`) would make it a proxy
 * into wherever it runs, or hand the EHR's token to a stranger. Relative references stay fine.
 */
export function refuseForeignReferences(references: readonly CarriedReference[], baseUrl: string): void {
  const foreign = references.filter((r) => !isOnFhirBase(baseUrl, r.reference));
  if (foreign.length === 0) return;
  throw unprocessable(
    foreign.map((r) =>
      issue('business-rule', `${r.field} must be relative (e.g. DocumentReference/123) or an absolute URL on your own FHIR server ${baseUrl}: references to other servers are refused`, r.field),
    ),
  );
}
