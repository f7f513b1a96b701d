/**
 * Consent gates every disclosure to a consulting clinic, not only the record set: until the
 * patient's Consent (or the configured attestation) covers a clinic, no resource of the case
 * names it, so its worklist, its webhooks and every door (`/consults`, `/fhir`, Binary) show
 * nothing of the case and answer 404. The record assembly admits a clinic in the transaction
 * that discloses the record set to it.
 */
import type { Provenance, ServiceRequest, Task } from '@medplum/fhirtypes';
import { EXTENSION } from '../fhir/constants.ts';
import type { ResourceStore } from '../store/resource-store.ts';

/**
 * Lets `participantId` read the referral, its own Task and, unless the referral is blinded,
 * the first opinion and the opinions other clinics already returned on it (a clinic added
 * later, e.g. for a third opinion, sees what the first two said). A blinded referral releases
 * them after the clinic's own opinion (consults/submit-opinion.ts). Returns the references it
 * was newly given, for the disclosure's AuditEvent.
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
  // Only at the clinic's first admission: opinions returned later are not pushed to it.
  if (!blinded && admitted.includes(`Task/${task.id}`)) {
    admitted.push(...(await grantOpinions(tx, await returnedOpinions(tx, serviceRequest.id as string, task.id as string), participantId)));
  }
  return admitted;
}

/**
 * Lets `participantId` read these consult notes (`DocumentReference/{id}`) and their
 * Provenance; returns the references it was newly given, for the disclosure's AuditEvent.
 */
export async function grantOpinions(tx: ResourceStore, notes: readonly string[], participantId: string): Promise<string[]> {
  const granted: string[] = [];
  for (const note of notes) {
    if ((await tx.grantAccess('DocumentReference', [note.slice('DocumentReference/'.length)], participantId)) === 0) continue;
    granted.push(note);
    const provenance = await tx.search<Provenance>({ resourceType: 'Provenance', contains: [[{ target: [{ reference: note }] }]], count: 10 }, 'system');
    const ids = provenance.resources.map((p) => p.id as string);
    await tx.grantAccess('Provenance', ids, participantId);
    granted.push(...ids.map((id) => `Provenance/${id}`));
  }
  return granted;
}

/**
 * The opinions (consult-note DocumentReferences, `DocumentReference/{id}`) returned on a
 * referral by every clinic but the one whose Task is `exceptTaskId`.
 */
export async function returnedOpinions(tx: ResourceStore, serviceRequestId: string, exceptTaskId: string): Promise<string[]> {
  const page = await tx.search<Task>(
    { resourceType: 'Task', contains: [[{ focus: { reference: `ServiceRequest/${serviceRequestId}` } }], [{ status: 'completed' }]], count: 100 },
    'system',
  );
  return page.resources
    .filter((t) => t.id !== exceptTaskId)
    .flatMap((t) => (t.output ?? []).map((o) => o.valueReference?.reference))
    .filter((r): r is string => r?.startsWith('DocumentReference/') === true);
}
