/**
 * Consent gates every disclosure to a consulting clinic, not only the record set: until the
 * patient's Consent (or the configured attestation) covers a clinic, no resource of the case
 * names it, so its worklist, its webhooks and every door (`/consults`, `/fhir`, Binary) show
 * nothing of the case and answer 404. The record assembly admits a clinic in the transaction
 * that discloses the record set to it.
 */
import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { EXTENSION } from '../fhir/constants.ts';
import type { ResourceStore } from '../store/resource-store.ts';

/**
 * Lets `participantId` read the referral, its own Task and, unless the referral is blinded,
 * the first opinion (a blinded one is released after its own opinion: consults/submit-opinion.ts).
 * Returns the references it was newly given, for the disclosure's AuditEvent.
 */
export async function admitConsultant(tx: ResourceStore, serviceRequest: ServiceRequest, task: Task, participantId: string): Promise<string[]> {
  const admitted: string[] = [];
  const grant = async (type: string, id: string | undefined) => {
    if (id && (await tx.grantAccess(type, [id], participantId)) > 0) admitted.push(`${type}/${id}`);
  };
  await grant('ServiceRequest', serviceRequest.id);
  await grant('Task', task.id);
  const blinded = serviceRequest.extension?.find((e) => e.url === EXTENSION.blinded)?.valueBoolean === true;
  const firstOpinion = serviceRequest.supportingInfo?.find((s) => s.reference?.startsWith('ClinicalImpression/'))?.reference;
  if (!blinded && firstOpinion) await grant('ClinicalImpression', firstOpinion.slice('ClinicalImpression/'.length));
  return admitted;
}
