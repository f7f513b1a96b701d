/**
 * Consulting clinics added to a referral whose record set is current receive
 * that very record set: this `assemble-record-set` job checks the patient's consent for each
 * new clinic and grants it the assembled Bundle (its copies, attachments and Provenance), with
 * the referral and its own Task, in one transaction; nothing is fetched from the EHR but the
 * Consent. A clinic the consent does not cover waits in `awaiting-consent`, as at intake.
 */
import type { Bundle, Provenance, ServiceRequest, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { admitConsultant } from '../access/consultant-admission.ts';
import { businessStatus } from '../fhir/business-status.ts';
import { absoluteReference } from '../fhir/references.ts';
import type { IntakeRequest } from '../intake/intake-request.ts';
import type { Job } from '../jobs/job-queue.ts';
import type { ReuseRecordSetJob } from '../jobs/queues.ts';
import { briefOutboundFailure, isPermanentError, isRetryableError, type OutboundError } from '../outbound/outbound-errors.ts';
import { pushesRecordSets, schedulePush } from '../record-push/push-record-set.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { intakeRequests, recordSetAssemblies } from '../store/schema.ts';
import type { AssembleRecordSetDeps, AssemblyResult, AssemblyStatus, ConsentOutcome } from './assemble-record-set.ts';
import { describeMissing, type ChecklistEntry } from './checklist.ts';
import { CONSENT_UNREADABLE_REASON, failTasksWithoutRecords, NO_ENDPOINT_REASON, type AssemblyFailure } from './assembly-failure.ts';
import { consentSubjects, decideConsents } from './consent-decisions.ts';

/** Only Tasks still waiting for their first record set are this job's to move on. */
const fresh = (t: Task): boolean => t.status === 'requested' && t.businessStatus?.coding?.[0]?.code === 'records-pending';

/**
 * Runs one attempt. Skipped when the referral is no longer active, when a newer assembly has
 * replaced the record set (it covered the new Tasks too), or when the Tasks have moved on.
 * A transient EHR failure throws (the queue retries); a permanent one, or the last attempt,
 * fails the new Tasks (`failed`, business status `records-failed`, the reason in `statusReason`).
 */
export async function admitToRecordSet(job: Job<ReuseRecordSetJob>, deps: AssembleRecordSetDeps): Promise<AssemblyResult> {
  const { serviceRequestId, reuseBundleId: bundleId } = job.data;
  const [intake] = await deps.store.database.select().from(intakeRequests).where(eq(intakeRequests.serviceRequestId, serviceRequestId));
  const serviceRequest = await deps.store.read<ServiceRequest>('ServiceRequest', serviceRequestId, 'system');
  if (!intake || !serviceRequest || serviceRequest.status !== 'active') return { outcome: 'skipped', reason: 'ServiceRequest not active' };
  const [report] = await deps.store.database.select().from(recordSetAssemblies).where(eq(recordSetAssemblies.serviceRequestId, serviceRequestId));
  if (!report || report.bundleId !== bundleId) return { outcome: 'skipped', reason: 'a newer assembly replaced the record set' };
  const tasks = (await deps.store.readMany<Task>('Task', job.data.taskIds, 'system')).filter(fresh);
  if (tasks.length === 0) return { outcome: 'skipped', reason: 'the new Tasks have moved on' };

  const request = intake.request as IntakeRequest;
  const subjects = consentSubjects(request, intake.addedConsultants, (id) => deps.network.get(id), tasks.map((t) => t.id as string));
  const statuses: Record<string, AssemblyStatus> = {};
  const checklistComplete = report.status === 'records-ready' || report.status === 'awaiting-consent';
  const referrer = deps.network.get(intake.participantId);
  const client = deps.clients.get(intake.participantId);
  if (!referrer || !client) return giveUp(deps, serviceRequestId, intake.taskIds, tasks, { taskText: 'The referring participant has no FHIR endpoint configured', statusReason: NO_ENDPOINT_REASON });

  let decisions;
  try {
    decisions = checklistComplete
      ? await decideConsents(subjects, { patientReference: request.patient.reference, client, aliases: referrer.fhir?.aliases, now: deps.now(), attestationAllowed: deps.consentAttestationAllowed ?? false })
      : new Map();
  } catch (err) {
    if (isRetryableError(err) && !isPermanentError(err) && job.attempt < deps.retryLimit + 1) throw err;
    if (!isRetryableError(err) && !isPermanentError(err)) throw err;
    return giveUp(deps, serviceRequestId, intake.taskIds, tasks, { taskText: `The referring EHR refused or failed the consent read: ${briefOutboundFailure(err as OutboundError)}`, statusReason: CONSENT_UNREADABLE_REASON });
  }

  const now = deps.now();
  const missing = ((report.missingRequired ?? []) as ChecklistEntry[]).map(describeMissing).join('; ');
  const outcomes: ConsentOutcome[] = [];
  await deps.store.withTransaction(async (tx) => {
    const bundle = await tx.read<Bundle>('Bundle', bundleId, 'system');
    for (const task of tasks) {
      const participant = subjects.find((s) => s.participant.organization.reference === task.owner?.reference)?.participant;
      const decision = participant ? decisions.get(participant.id) : undefined;
      if (participant && decision) {
        outcomes.push(decision.permitted ? { participant: participant.id, permitted: true, basis: decision.basis } : { participant: participant.id, permitted: false, code: decision.code, reason: decision.reason });
      }
      let update: Task;
      if (!checklistComplete) update = { ...task, businessStatus: businessStatus('awaiting-records', `Missing required records: ${missing}`) };
      else if (!participant || !decision?.permitted) {
        update = { ...task, businessStatus: businessStatus('awaiting-consent', decision && !decision.permitted ? decision.reason : 'The consultant is not in the network') };
      } else {
        const disclosed = await grantRecordSet(tx, bundle, participant.id);
        const admitted = await admitConsultant(tx, serviceRequest, task, participant.id);
        if (deps.jobs && pushesRecordSets(participant)) await schedulePush(tx, deps.jobs, { participantId: participant.id, taskId: task.id as string, serviceRequestId, bundleId }, now);
        await deps.audit.recordMany(
          [
            {
              action: 'disclose',
              outcome: 'success',
              agent: { participantId: participant.id },
              patientReference: absoluteReference(client.baseUrl, request.patient.reference),
              entities: [...admitted, ...disclosed].map((reference) => ({ reference })),
              description: `Record set of ServiceRequest/${serviceRequestId} made available to the consultant`,
            },
          ],
          tx,
        );
        update = { ...task, businessStatus: businessStatus('records-ready'), input: [{ type: { text: 'record-set' }, valueReference: { reference: `Bundle/${bundleId}` } }] };
      }
      const code = update.businessStatus?.coding?.[0]?.code as AssemblyStatus;
      if (participant) statuses[participant.id] = code;
      await tx.update<Task>({ ...update, lastModified: now.toISOString() }, { expectedVersion: task.meta?.versionId });
    }
    // The referrer's summary lists every clinic's consent decision: the new ones join the list.
    const kept = (report.consent as ConsentOutcome[]).filter((c) => !outcomes.some((o) => o.participant === c.participant));
    await tx.database.update(recordSetAssemblies).set({ consent: [...kept, ...outcomes], updatedAt: now }).where(eq(recordSetAssemblies.serviceRequestId, serviceRequestId));
  });
  return { outcome: 'assembled', bundleId, statuses };
}

/** Lets the clinic read the record-set Bundle, every copy in it and its Provenance; returns what it was newly given. */
async function grantRecordSet(tx: ResourceStore, bundle: Bundle | undefined, participantId: string): Promise<string[]> {
  if (!bundle?.id) return [];
  const granted: string[] = [];
  const byType = new Map<string, string[]>([['Bundle', [bundle.id]]]);
  for (const entry of bundle.entry ?? []) {
    const r = entry.resource;
    if (r?.id) byType.set(r.resourceType, [...(byType.get(r.resourceType) ?? []), r.id]);
  }
  const provenance = await tx.search<Provenance>({ resourceType: 'Provenance', contains: [[{ target: [{ reference: `Bundle/${bundle.id}` }] }]], count: 10 }, 'system');
  byType.set('Provenance', provenance.resources.map((p) => p.id as string));
  for (const [type, ids] of byType) {
    await tx.grantAccess(type, ids, participantId);
    granted.push(...ids.map((id) => `${type}/${id}`));
  }
  return granted;
}

/** Gives up for the new Tasks only (they become `failed`, assembly-failure.ts): the record set of the others stands. */
async function giveUp(deps: AssembleRecordSetDeps, serviceRequestId: string, referralTaskIds: readonly string[], tasks: Task[], failure: AssemblyFailure): Promise<AssemblyResult> {
  const now = deps.now();
  await deps.store.withTransaction((tx) => failTasksWithoutRecords(tx, { serviceRequestId, referralTaskIds, taskIds: tasks.map((t) => t.id as string), failure, now }));
  return { outcome: 'failed', reason: failure.taskText };
}
