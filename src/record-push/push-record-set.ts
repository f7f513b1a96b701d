/**
 * The `push-record-set` job: a consulting clinic whose network entry says
 * `recordSet: push` receives each version of its record set on its own FHIR server, as one
 * transaction (push-bundle.ts says what is in it and why it is idempotent).
 *
 * The push is scheduled by the record assembly, in the transaction that discloses the record set
 * to the clinic ({@link schedulePush}): it exists if and only if the disclosure does. The job
 * carries the push id only and re-reads the current state: a push whose record set is no longer
 * the Task's newest (a later version was assembled before it went out) or whose Task ended is
 * not sent (`superseded`); the newer version's own push carries every record.
 *
 * Failures are classified once (outbound-errors.ts `classifyFailure`), as for the post-back
 * (delivery/deliver-opinion.ts): a transient one is retried with backoff, not before the
 * server's `Retry-After`; a permanent one (403, 400, 412 on a Task the clinic changed meanwhile...)
 * stops at once. Once it stops the push is `failed`, with the server's OperationOutcome kept
 * (`GET /admin/record-pushes`), and `POST /admin/record-pushes/{id}/retry` re-drives it. Every
 * attempt that ends is audited as a disclosure (success or failure).
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, Identifier, Organization, Reference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { transitionTask } from '../consults/transition-task.ts';
import { and, desc, eq, sql } from 'drizzle-orm';
import type { DisclosureGate } from '../access/disclosure-gate.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { absoluteReference } from '../fhir/references.ts';
import { ResourceValidationError } from '../fhir/validator.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { RetryLaterError, type Job } from '../jobs/job-queue.ts';
import { QUEUE, type PushRecordSetJob } from '../jobs/queues.ts';
import { safeError } from '../log/safe-error.ts';
import type { FhirClient } from '../outbound/fhir-client.ts';
import { describeOutboundFailure, isPermanentError, keptOutcome, OutboundError, OutboundHttpError } from '../outbound/outbound-errors.ts';
import type { RecordResource } from '../records/record-set-bundle.ts';
import type { ResourceStore, ResourceValidator } from '../store/resource-store.ts';
import { intakeRequests, recordSetPushes, type PushedResources } from '../store/schema.ts';
import { buildPushBundle, readPushResponse, type PushTarget } from './push-bundle.ts';

/** A participant as the push needs it. */
export interface PushParticipant {
  id: string;
  roles: readonly string[];
  recordSet?: 'pull' | 'push';
  organization: { reference: string; display?: string; identifier?: Identifier[] };
  fhir?: { baseUrl: string; profiles?: 'keep' | 'omit' };
}

export interface PushDeps {
  store: ResourceStore;
  /** Outbound FHIR client per participant id (the clinic's own server). */
  clients: ReadonlyMap<string, FhirClient>;
  network: { get(id: string): PushParticipant | undefined; findByOrganization(reference: string): PushParticipant | undefined };
  /** Every pushed resource is checked against R4 before it leaves. */
  validator: ResourceValidator;
  audit: Pick<AuditLog, 'record'>;
  /** Consent withdrawn (access/disclosure-gate.ts): asked before every push; none in unit tests. */
  gate?: Pick<DisclosureGate, 'beforePush'>;
  /** Retries after the first attempt: the attempt `retryLimit + 1` is the last. */
  retryLimit: number;
  now: () => Date;
}

export type PushResult =
  | { outcome: 'pushed'; remote: PushedResources }
  | { outcome: 'skipped'; reason: string }
  | { outcome: 'failed'; reason: string; error?: unknown };

/** Whether this participant has its record sets pushed. */
export function pushesRecordSets(participant: PushParticipant | undefined): boolean {
  return participant?.recordSet === 'push' && participant.fhir !== undefined && participant.roles.includes('consultant');
}

/**
 * Schedules the push of record set `bundleId` to `participantId`'s server, inside the caller's
 * transaction (`tx`): the row and its job commit with the disclosure, or neither does. Once per
 * record set and clinic (a replayed assembly schedules nothing more).
 */
export async function schedulePush(tx: ResourceStore, jobs: Pick<JobQueue, 'enqueue'>, push: { participantId: string; taskId: string; serviceRequestId: string; bundleId: string }, now: Date): Promise<string | undefined> {
  const id = randomUUID();
  const inserted = await tx.database
    .insert(recordSetPushes)
    .values({ id, ...push, status: 'pending', attempts: 0, createdAt: now, updatedAt: now })
    .onConflictDoNothing()
    .returning({ id: recordSetPushes.id });
  if (inserted.length === 0) return undefined;
  const job: PushRecordSetJob = { pushId: id };
  await jobs.enqueue(tx.database, QUEUE.pushRecordSet, job, { singletonKey: id });
  return id;
}

const TERMINAL = new Set<Task['status']>(['completed', 'cancelled', 'rejected', 'failed', 'entered-in-error']);

export async function pushRecordSet(job: Job<PushRecordSetJob>, deps: PushDeps): Promise<PushResult> {
  const { pushId } = job.data;
  const [push] = await deps.store.database.select().from(recordSetPushes).where(eq(recordSetPushes.id, pushId));
  if (!push) return { outcome: 'skipped', reason: 'no such push' };
  if (push.status === 'pushed' || push.status === 'superseded' || push.status === 'refused') return { outcome: 'skipped', reason: `already ${push.status}` };
  const task = await deps.store.read<Task>('Task', push.taskId, 'system');
  const serviceRequest = await deps.store.read<ServiceRequest>('ServiceRequest', push.serviceRequestId, 'system');
  const bundle = await deps.store.read<Bundle>('Bundle', push.bundleId, 'system');
  if (!task || !serviceRequest || !bundle) return { outcome: 'skipped', reason: 'the record set or its referral is gone' };
  // Consent withdrawn (by the referrer, or the EHR's Consent ended): nothing more reaches the clinic, and the refusal is audited.
  const refusal = await deps.gate?.beforePush(push.serviceRequestId, push.bundleId, push.participantId);
  if (refusal) {
    await deps.store.withTransaction(async (tx) => {
      await tx.database.update(recordSetPushes).set({ status: 'refused', lastError: refusal, updatedAt: deps.now() }).where(eq(recordSetPushes.id, pushId));
      await deps.audit.record({ action: 'disclose', outcome: 'refused', agent: { participantId: push.participantId }, entities: [{ reference: `Bundle/${push.bundleId}` }], description: refusal }, tx);
    });
    return { outcome: 'skipped', reason: 'consent withdrawn' };
  }
  const newest = task.input?.find((i) => i.valueReference?.reference?.startsWith('Bundle/'))?.valueReference?.reference;
  if (TERMINAL.has(task.status) || newest !== `Bundle/${push.bundleId}`) {
    await deps.store.database.update(recordSetPushes).set({ status: 'superseded', updatedAt: deps.now() }).where(eq(recordSetPushes.id, pushId));
    return { outcome: 'skipped', reason: TERMINAL.has(task.status) ? 'the Task has ended' : 'a newer record set replaces this one' };
  }
  const records = (bundle.entry ?? []).map((e) => e.resource as RecordResource);
  const patientReference = serviceRequest.subject?.reference;
  const description = `Record set Bundle/${push.bundleId} of ServiceRequest/${push.serviceRequestId} pushed to the consultant's FHIR server`;
  const [intake] = await deps.store.database.select({ participantId: intakeRequests.participantId }).from(intakeRequests).where(eq(intakeRequests.serviceRequestId, push.serviceRequestId));
  const referrerBase = intake ? deps.network.get(intake.participantId)?.fhir?.baseUrl : undefined;

  try {
    const clinic = deps.network.get(push.participantId);
    const client = deps.clients.get(push.participantId);
    if (!pushesRecordSets(clinic) || !client) throw new Error('The consultant has no FHIR server to push record sets to (network file: recordSet push and a fhir block)');
    const patientReferences = new Set(patientReference ? [patientReference, ...(referrerBase ? [absoluteReference(referrerBase, patientReference)] : [])] : []);

    // The latest earlier push of this Task to this clinic: its Task is updated, its records replaced.
    const [earlier] = await deps.store.database
      .select({ remote: recordSetPushes.remote })
      .from(recordSetPushes)
      .where(and(eq(recordSetPushes.taskId, push.taskId), eq(recordSetPushes.participantId, push.participantId), eq(recordSetPushes.status, 'pushed')))
      .orderBy(desc(recordSetPushes.pushedAt))
      .limit(1);
    const remoteTask = earlier?.remote ? await client.readReference<Task>(earlier.remote.task) : undefined;

    const target = pushTarget(client.baseUrl, clinic?.fhir?.profiles, deps.network);
    const request = buildPushBundle(
      {
        records,
        serviceRequest,
        task,
        patientReferences,
        ...(serviceRequest.subject?.identifier ? { patientIdentifier: serviceRequest.subject.identifier } : {}),
        ...(earlier?.remote && remoteTask ? { previous: { remote: earlier.remote, task: remoteTask } } : {}),
      },
      target,
    );
    for (const entry of request.entry ?? []) if (entry.resource) deps.validator.validate(entry.resource);
    const response = await client.transaction(request);
    const remote = readPushResponse(request, response, records);
    const now = deps.now();
    await deps.store.withTransaction(async (tx) => {
      await tx.database
        .update(recordSetPushes)
        .set({ status: 'pushed', attempts: sql`greatest(${recordSetPushes.attempts} + 1, ${job.attempt})`, lastError: null, lastOutcome: null, remote, updatedAt: now, pushedAt: now })
        .where(eq(recordSetPushes.id, pushId));
      await deps.audit.record(disclosure(push, records, patientReference, referrerBase, 'success', `${description} (attempt ${job.attempt})`), tx);
      // The clinic's server accepted the record set: the Task has reached the clinic (received).
      const current = await tx.read<Task>('Task', push.taskId, 'system');
      if (current?.status === 'requested' && clinic) {
        const agent = { reference: clinic.organization.reference, ...(clinic.organization.display ? { display: clinic.organization.display } : {}) } as Reference<Organization>;
        // In a savepoint: a clinic acting on the Task at this very moment (accept) wins; the push stays made.
        await tx.withTransaction((inner) => transitionTask(inner, { task: current, action: 'receive', actor: 'service', agent, now, change: (next) => next })).catch(() => undefined);
      }
    });
    return { outcome: 'pushed', remote };
  } catch (err) {
    const reason = err instanceof OutboundError ? describeOutboundFailure(err) : internalFailure(err);
    // A resource that does not validate would not validate on the next attempt either.
    const permanent = isPermanentError(err) || err instanceof ResourceValidationError;
    const last = permanent || job.attempt >= deps.retryLimit + 1;
    const kept = err instanceof OutboundHttpError ? keptOutcome(err.outcome) : undefined;
    const now = deps.now();
    await deps.store.withTransaction(async (tx) => {
      await tx.database
        .update(recordSetPushes)
        .set({ status: last ? 'failed' : 'pending', attempts: sql`greatest(${recordSetPushes.attempts} + 1, ${job.attempt})`, lastError: reason, lastOutcome: kept ?? null, updatedAt: now })
        .where(eq(recordSetPushes.id, pushId));
      const what = `Record set push attempt ${job.attempt} failed${last && permanent ? ' permanently (not retried)' : ''}`;
      await deps.audit.record(disclosure(push, records, patientReference, referrerBase, 'failure', what), tx);
    });
    if (last) return { outcome: 'failed', reason, error: err };
    if (err instanceof OutboundError && err.retryAt) throw new RetryLaterError(err.retryAt, { cause: err });
    throw err;
  }
}

/** The clinic's server as the push names things there. */
export function pushTarget(baseUrl: string, profiles: 'keep' | 'omit' | undefined, network: Pick<PushDeps['network'], 'findByOrganization'>): PushTarget {
  return {
    ehrBaseUrl: baseUrl,
    profiles: profiles ?? 'omit',
    organization: (reference) => {
      const organization = network.findByOrganization(reference)?.organization;
      return organization ? { ...(organization.identifier ? { identifier: organization.identifier } : {}), ...(organization.display ? { display: organization.display } : {}) } : undefined;
    },
  };
}

function disclosure(
  push: { participantId: string; bundleId: string },
  records: readonly RecordResource[],
  patientReference: string | undefined,
  referrerBase: string | undefined,
  outcome: 'success' | 'failure',
  description: string,
) {
  const patient = patientReference && referrerBase ? absoluteReference(referrerBase, patientReference) : patientReference;
  return {
    action: 'disclose' as const,
    outcome,
    agent: { participantId: push.participantId },
    entities: [{ reference: `Bundle/${push.bundleId}` }, ...records.map((r) => ({ reference: `${r.resourceType}/${r.id}` }))],
    ...(patient ? { patientReference: patient } : {}),
    description,
  };
}

/** A failure that is not the server's answer (a bug, a resource that does not validate): its type and code only, no message (it may quote PHI). */
function internalFailure(err: unknown): string {
  const { type, code } = safeError(err);
  return `Internal error (${type}${code !== undefined ? ` ${code}` : ''})`;
}
