import { createHash, randomUUID } from 'node:crypto';
import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { and, eq, sql, type SQL } from 'drizzle-orm';
import { referrerAudience } from '../access/audience.ts';
import { sameResourceReference } from '../fhir/references.ts';
import type { Caller } from '../access/caller.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { QUEUE, type AssembleRecordSetJob } from '../jobs/queues.ts';
import { conflictError, HttpOutcomeError, issue, outcome, unprocessable } from '../fhir/outcomes.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { intakeRequests } from '../store/schema.ts';
import { textArray } from '../store/write-batch.ts';
import { buildReferral, dueDateFor, type ParticipantRef } from './build-referral.ts';
import type { IntakeRequest } from './intake-request.ts';
import { intakeReferences, refuseForeignReferences } from './own-server-references.ts';

/** What intake needs to know of a participant (network/ provides it). */
export interface DirectoryParticipant extends ParticipantRef {
  roles: readonly string[];
  fhir?: { baseUrl: string };
}

export interface ParticipantDirectory {
  get(id: string): DirectoryParticipant | undefined;
}

export interface IntakeDeps {
  store: ResourceStore;
  network: ParticipantDirectory;
  dueDays: Record<'routine' | 'urgent' | 'asap', number>;
  now: () => Date;
  /** Record assembly is a durable job, enqueued in intake's transaction (exists iff the referral does). */
  jobs: Pick<JobQueue, 'enqueue' | 'enqueueParts'>;
}

export interface IntakeResult {
  /** False when the same request was received before (idempotent replay). */
  created: boolean;
  serviceRequest: ServiceRequest;
  tasks: Task[];
}

/**
 * Intake of a second-opinion request: checks the clinical and network rules,
 * then writes the ServiceRequest, one Task per consultant, the first opinion and a
 * Provenance in one transaction, with the durable job that assembles the record set. The
 * referrer's request id is the idempotency key.
 */
export async function createSecondOpinion(request: IntakeRequest, caller: Caller, deps: IntakeDeps): Promise<IntakeResult> {
  const now = deps.now();
  if (request.priority === 'stat') {
    throw unprocessable([
      issue(
        'business-rule',
        'A second opinion must not delay emergency care: a stat request is refused. Treat the patient now; request a second opinion once the emergency is over.',
        'priority',
      ),
    ]);
  }
  const referrer = deps.network.get(caller.participantId);
  if (!referrer?.fhir?.baseUrl) {
    // The network file guarantees every referrer has an EHR endpoint; reaching this is a configuration bug.
    throw new Error('referrer has no FHIR endpoint configured');
  }
  checkRequester(request, caller);
  refuseForeignReferences(intakeReferences(request), referrer.fhir.baseUrl);
  const consultants = checkConsultants(request.consultants, deps.network);
  if (request.dueDate && new Date(request.dueDate).getTime() <= now.getTime()) {
    throw unprocessable([issue('business-rule', 'dueDate must lie in the future', 'dueDate')]);
  }

  const contentHash = hashRequest(request);
  const ids = {
    serviceRequest: randomUUID(),
    tasks: consultants.map(() => randomUUID()),
    firstOpinion: request.firstOpinion ? randomUUID() : undefined,
    provenance: randomUUID(),
  };
  const referral = buildReferral({
    request: { ...request, priority: request.priority },
    referrer,
    referrerBaseUrl: referrer.fhir.baseUrl,
    consultants,
    ids,
    now,
    due: dueDateFor(request.priority, now, deps.dueDays, request.dueDate),
  });

  // Nothing of the case reaches a consultant before the patient's consent covers it: the record
  // assembly admits each consultant it may disclose to (access/consultant-admission.ts).
  const access = referrerAudience(referrer.id, referral.serviceRequest.requester?.reference);
  const job: AssembleRecordSetJob = { serviceRequestId: ids.serviceRequest, taskIds: ids.tasks, serviceRequestVersion: '1', recordsRevision: '0' };
  // The idempotency key: claimed by the statement that writes the referral, which writes nothing
  // else when the key was taken (a replay, or a different request under the same requestId).
  const claim = {
    name: 'intake_claim',
    sql: (when: SQL) => sql`INSERT INTO ${intakeRequests} (participant_id, request_id, content_hash, service_request_id, task_ids, request, created_at)
      SELECT ${referrer.id}::text, ${request.requestId}::text, ${contentHash}::text, ${ids.serviceRequest}::text, ${textArray(ids.tasks)}, ${JSON.stringify(request)}::jsonb, ${now.toISOString()}::timestamptz
       WHERE ${when}
      ON CONFLICT DO NOTHING RETURNING service_request_id`,
  };
  // One statement: the claim, every resource of the referral and the assembly job. Without a
  // transaction when nobody is to be notified of the new Tasks (no webhook recipient, no listening
  // Subscription); else BEGIN, the statement, the notifications, COMMIT (ResourceStore.write).
  const { created, claimed } = await deps.store.write({
    claim,
    creates: [
      { resource: referral.serviceRequest, access },
      ...referral.tasks.map((task) => ({ resource: task, access })),
      ...(referral.firstOpinion ? [{ resource: referral.firstOpinion, access }] : []),
      { resource: referral.provenance, access },
    ],
    parts: deps.jobs.enqueueParts('assembly_job', QUEUE.assembleRecordSet, [{ data: job }], { onlyIf: claim.name }),
  });
  if (!claimed) return replay(deps.store, referrer.id, request.requestId, contentHash);
  const [serviceRequest, ...rest] = created;
  return { created: true, serviceRequest: serviceRequest as ServiceRequest, tasks: rest.slice(0, referral.tasks.length) as Task[] };
}

/**
 * A caller restricted to clinicians (a referrer token issued for one practitioner) refers only
 * on their behalf: a referral it could not read afterwards is refused (403, naming the field).
 */
function checkRequester(request: IntakeRequest, caller: Caller): void {
  const requesters = caller.referrals?.requesters;
  if (!requesters || requesters.some((r) => sameResourceReference(r, request.requester.reference))) return;
  throw new HttpOutcomeError(403, outcome([issue('forbidden', 'This access token was issued for another practitioner: requester must be the practitioner named in the token request', 'requester.reference')]));
}

/** Every consultant must be a known participant with the consultant role; each bad one is named. */
function checkConsultants(ids: readonly string[], network: ParticipantDirectory): DirectoryParticipant[] {
  const problems = [];
  const found: DirectoryParticipant[] = [];
  for (const [i, id] of ids.entries()) {
    const p = network.get(id);
    if (!p) problems.push(issue('business-rule', `Unknown participant '${id}': see GET /participants?role=consultant`, `consultants[${i}]`));
    else if (!p.roles.includes('consultant')) problems.push(issue('business-rule', `Participant '${id}' is not a consultant`, `consultants[${i}]`));
    else found.push(p);
  }
  if (problems.length) throw unprocessable(problems);
  return found;
}

async function replay(tx: ResourceStore, participantId: string, requestId: string, contentHash: string): Promise<IntakeResult> {
  const existing = await findIntake(tx, participantId, requestId);
  if (!existing) throw new Error('intake key vanished during replay');
  if (existing.contentHash !== contentHash) {
    throw conflictError(
      `requestId '${requestId}' was already used for a different request (ServiceRequest/${existing.result.serviceRequest.id}); use a new requestId for a new referral`,
      'requestId',
    );
  }
  return existing.result;
}

/**
 * The referral a participant already placed under `requestId` (its idempotency key), as a
 * replay returns it; undefined when there is none. A FHIR conditional create (`If-None-Exist`
 * on the placer identifier) answers with it whatever the new request says.
 */
export async function findIntake(store: ResourceStore, participantId: string, requestId: string): Promise<{ contentHash: string; result: IntakeResult } | undefined> {
  const [existing] = await store.database
    .select()
    .from(intakeRequests)
    .where(and(eq(intakeRequests.participantId, participantId), eq(intakeRequests.requestId, requestId)));
  if (!existing) return undefined;
  const serviceRequest = await store.read<ServiceRequest>('ServiceRequest', existing.serviceRequestId, 'system');
  const tasks = await store.readMany<Task>('Task', existing.taskIds, 'system');
  if (!serviceRequest) throw new Error('intake key without its ServiceRequest');
  return { contentHash: existing.contentHash, result: { created: false, serviceRequest, tasks } };
}

/** Stable hash of the validated request (keys sorted), to tell a replay from a different request. */
export function hashRequest(request: IntakeRequest): string {
  return createHash('sha256').update(canonicalJson(request)).digest('base64url');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
