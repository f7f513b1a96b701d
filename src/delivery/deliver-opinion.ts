/**
 * The `deliver-opinion` job: posts a consult note into the referring clinician's
 * EHR exactly once, then a Communication telling the requesting practitioner the opinion is
 * in. Exactly once rests on the EHR, not on us: both are conditional creates on identifiers
 * this service owns (`If-None-Exist: identifier=system|value`), so a retry after a crash,
 * a timeout that hid a success, or a second replica running the same job finds what the first
 * attempt created instead of creating it again.
 *
 * Every attempt that ends is audited as a disclosure (success or failure); one cut short by
 * a crash is counted by the next (`attempts` is at least the queue's attempt number, and that
 * attempt's AuditEvent says which attempt it was).
 *
 * Failures are classified once (outbound-errors.ts `classifyFailure`): a transient
 * one (EHR down, busy, slow) is retried with backoff, not before the EHR's `Retry-After`; a
 * permanent one (403, 400, 404, 422, 401 after a fresh token...) stops at once, since the same
 * request would get the same answer until someone fixes the configuration. Either way, once it
 * stops, the delivery is `failed` with the EHR's OperationOutcome kept (summary, admin list) and
 * the Task's business status says delivery failed (which notifies the referrer's webhook:
 * notify/task-notifications.ts); `POST /admin/deliveries/{id}/retry` re-drives.
 */
import type { Communication, DocumentReference, Identifier, Reference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { AuditLog } from '../audit/audit-log.ts';
import { businessStatus } from '../fhir/business-status.ts';
import { CANONICAL_BASE } from '../fhir/constants.ts';
import { absoluteReference } from '../fhir/references.ts';
import { RetryLaterError, type Job } from '../jobs/job-queue.ts';
import type { DeliverOpinionJob } from '../jobs/queues.ts';
import { safeError } from '../log/safe-error.ts';
import { referencesForEhr, type EhrReferenceContext } from '../outbound/ehr-references.ts';
import type { FhirClient } from '../outbound/fhir-client.ts';
import { briefOutboundFailure, describeOutboundFailure, isPermanentError, keptOutcome, OutboundError, OutboundHttpError } from '../outbound/outbound-errors.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { opinionDeliveries } from '../store/schema.ts';
import { readDeliveryContext } from './delivery-context.ts';
import { recordAttempt } from './delivery-record.ts';
import type { DeliveryKind, ServiceMetrics } from '../metrics/metrics.ts';

/** Identifies the Communication that announces one opinion (value: the delivery id). */
export const OPINION_NOTIFICATION_SYSTEM = `${CANONICAL_BASE}/NamingSystem/opinion-notification`;

export interface DeliveryDeps {
  store: ResourceStore;
  /** Outbound FHIR client per participant id (the referrer's EHR). */
  clients: ReadonlyMap<string, FhirClient>;
  audit: Pick<AuditLog, 'build'>;
  network: {
    get(id: string): DeliveryParticipant | undefined;
    findByOrganization(reference: string): DeliveryParticipant | undefined;
  };
  /** Retries after the first attempt: the attempt `retryLimit + 1` is the last. */
  retryLimit: number;
  now: () => Date;
  /** Where each attempt's outcome is counted. */
  metrics?: Pick<ServiceMetrics, 'deliveryAttempt'>;
}

/** A participant as delivery needs it: how to name its organization on an EHR, and (for the referrer) its EHR's settings. */
export interface DeliveryParticipant {
  organization: { reference: string; display?: string; identifier?: Identifier[] };
  fhir?: { profiles?: 'keep' | 'omit' };
}

export type DeliveryResult =
  | { outcome: 'delivered'; document: string; communication: string }
  | { outcome: 'skipped'; reason: string }
  /** `error`: what ended it, for the job's log line (logged through its allowlist). */
  | { outcome: 'failed'; reason: string; error?: unknown };

/**
 * Four SQL statements when the post-back succeeds (one read, then BEGIN, one write, COMMIT;
 * delivery-context.ts and delivery-record.ts); two (the read, one write) when a failed attempt
 * will be retried, four when the last one fails the Task. The Task's webhook and Subscription
 * notifications add theirs, as for any Task change.
 */
export async function deliverOpinion(job: Job<DeliverOpinionJob>, deps: DeliveryDeps): Promise<DeliveryResult> {
  return countedAttempt('opinion', deps, () => attemptOpinionDelivery(job, deps));
}

/**
 * Runs one post-back attempt and counts how it ended: its result's outcome, or `retrying` when
 * it throws (the queue retries it).
 */
export async function countedAttempt<R extends { outcome: 'delivered' | 'skipped' | 'failed' }>(kind: DeliveryKind, deps: Pick<DeliveryDeps, 'metrics'>, attempt: () => Promise<R>): Promise<R> {
  let result: R;
  try {
    result = await attempt();
  } catch (err) {
    deps.metrics?.deliveryAttempt(kind, 'retrying');
    throw err;
  }
  deps.metrics?.deliveryAttempt(kind, result.outcome);
  return result;
}

async function attemptOpinionDelivery(job: Job<DeliverOpinionJob>, deps: DeliveryDeps): Promise<DeliveryResult> {
  const { deliveryId } = job.data;
  const context = await readDeliveryContext(deps.store, deliveryId);
  if (!context) return { outcome: 'skipped', reason: 'no such delivery' };
  const { delivery, note, task, serviceRequest } = context;
  if (delivery.status === 'delivered') return { outcome: 'skipped', reason: 'already delivered' };
  const client = deps.clients.get(delivery.participantId);
  if (!note || !task || !serviceRequest) return { outcome: 'skipped', reason: 'the opinion or its referral is gone' };

  const patientReference = note.subject?.reference;
  const attempts = sql`greatest(${opinionDeliveries.attempts} + 1, ${job.attempt})`;
  try {
    if (!client) throw new Error('The referring participant has no FHIR endpoint configured');
    const target = ehrTarget(client.baseUrl, deps.network.get(delivery.participantId)?.fhir?.profiles, deps.network);
    const outbound = toEhrDocument(note, target, serviceRequest, context.requestId);
    const identifier = note.identifier?.[0];
    if (!identifier?.system || !identifier.value) throw new Error('The consult note has no identifier to deliver it idempotently');
    const remote = await client.createIfNoneExist(outbound, `identifier=${encodeURIComponent(identifier.system)}|${encodeURIComponent(identifier.value)}`);
    const communication = await client.createIfNoneExist(
      toCommunication({ deliveryId, remoteDocumentId: remote.id as string, note, serviceRequest, task, now: deps.now() }, target),
      `identifier=${encodeURIComponent(OPINION_NOTIFICATION_SYSTEM)}|${encodeURIComponent(deliveryId)}`,
    );
    const document = `${client.baseUrl}/DocumentReference/${remote.id}`;
    const communicationUrl = `${client.baseUrl}/Communication/${communication.id}`;
    const now = deps.now();
    await recordAttempt(deps, {
      deliveryId,
      row: { status: 'delivered', attempts, lastError: null, lastOutcome: null, remoteDocument: document, remoteCommunication: communicationUrl, updatedAt: now, deliveredAt: now },
      task: { current: task, businessStatus: businessStatus('opinion-delivered', `Delivered to the referring EHR as ${document}`) },
      audit: disclosure(delivery.participantId, deliveryId, patientReference, 'success', `Opinion delivered to the referring EHR (attempt ${job.attempt})`),
    });
    return { outcome: 'delivered', document, communication: communicationUrl };
  } catch (err) {
    const reason = describeDeliveryFailure(err);
    const permanent = isPermanentError(err);
    const last = permanent || job.attempt >= deps.retryLimit + 1;
    const ehrOutcome = err instanceof OutboundHttpError ? keptOutcome(err.outcome) : undefined;
    const what = `Opinion delivery attempt ${job.attempt} failed${permanent ? ' permanently (not retried)' : ''}`;
    await recordAttempt(deps, {
      deliveryId,
      row: { status: last ? 'failed' : 'pending', attempts, lastError: reason, lastOutcome: ehrOutcome ?? null, updatedAt: deps.now() },
      ...(last ? { task: { current: task, businessStatus: businessStatus('delivery-failed', taskFailureText(err)) } } : {}),
      audit: disclosure(delivery.participantId, deliveryId, patientReference, 'failure', what),
    });
    if (last) return { outcome: 'failed', reason, error: err };
    // The EHR said when to come back (429/503 Retry-After): the queue holds the retry until then.
    if (err instanceof OutboundError && err.retryAt) throw new RetryLaterError(err.retryAt, { cause: err });
    throw err;
  }
}

function disclosure(participantId: string, deliveryId: string, patientReference: string | undefined, outcome: 'success' | 'failure', description: string) {
  return {
    action: 'disclose' as const,
    outcome,
    agent: { participantId },
    entities: [{ reference: `DocumentReference/${deliveryId}` }],
    ...(patientReference ? { patientReference } : {}),
    description,
  };
}

/**
 * The failure as the referrer's summary and the admin delivery list show it (`lastError`). The
 * EHR's answer, its OperationOutcome's first issue included, is the referrer's to see; any other
 * failure is internal, and its message may quote SQL and its parameters (the opinion itself), so
 * only its type and code are kept.
 */
export function describeDeliveryFailure(err: unknown): string {
  if (err instanceof OutboundError) return describeOutboundFailure(err);
  return internalFailure(err);
}

/**
 * The failure as the Task's business status says it. The consulting clinic reads its Task too,
 * so the EHR's free text stays out: the call, the status and the issue codes only.
 */
function taskFailureText(err: unknown): string {
  if (err instanceof OutboundError) return briefOutboundFailure(err);
  return internalFailure(err);
}

function internalFailure(err: unknown): string {
  const { type, code } = safeError(err);
  return `Internal error (${type}${code !== undefined ? ` ${code}` : ''})`;
}

/** Where an opinion goes: the EHR's base, whether `meta.profile` is kept there, how participants are named there. */
export interface EhrTarget extends EhrReferenceContext {
  /** Network file `fhir.profiles`; default `omit`. */
  profiles: 'keep' | 'omit';
}

/** The target for the referrer's EHR at `ehrBaseUrl`. */
export function ehrTarget(ehrBaseUrl: string, profiles: 'keep' | 'omit' | undefined, network: Pick<DeliveryDeps['network'], 'findByOrganization'>): EhrTarget {
  return {
    ehrBaseUrl,
    profiles: profiles ?? 'omit',
    organization: (reference) => {
      const organization = network.findByOrganization(reference)?.organization;
      return organization ? { ...(organization.identifier ? { identifier: organization.identifier } : {}), ...(organization.display ? { display: organization.display } : {}) } : undefined;
    },
  };
}

/**
 * The consult note as the referring EHR stores it: no id, version or timestamps of ours;
 * `meta.profile` only where the network file says `profiles: keep` (an EHR that resolves
 * profiles with the caller's rights refuses it otherwise); `context.related` naming the
 * referrer's own request by its placer identifier; and references only to what exists on the
 * EHR (the patient there, the consulting clinic by identifier: outbound/ehr-references.ts).
 */
export function toEhrDocument(note: DocumentReference, target: EhrTarget, serviceRequest: ServiceRequest, requestId: string | undefined): DocumentReference {
  // No copy of the note here: referencesForEhr returns a deep copy, and nothing below changes `rest`.
  const { id: _id, meta, ...rest } = note;
  const placer = serviceRequest.identifier?.find((i) => i.type?.coding?.some((c) => c.code === 'PLAC')) ?? serviceRequest.identifier?.[0];
  const related: Reference[] = placer && requestId ? [{ identifier: { ...(placer.system ? { system: placer.system } : {}), value: requestId }, display: 'Second-opinion request' }] : [];
  const document = {
    ...rest,
    ...(target.profiles === 'keep' && meta?.profile ? { meta: { profile: meta.profile } } : {}),
    context: { ...(rest.context ?? {}), related },
  } as DocumentReference;
  return referencesForEhr(document, target);
}

/**
 * The Communication telling the requesting practitioner the opinion is in: sent by the
 * consulting clinic (named by identifier), about the note just created on the EHR, to the
 * requester the EHR gave us, about the EHR's patient.
 */
export function toCommunication(
  args: { deliveryId: string; remoteDocumentId: string; note: DocumentReference; serviceRequest: ServiceRequest; task: Task; now: Date },
  target: EhrTarget,
): Communication {
  const consultant = args.task.owner?.display ?? 'The consultant';
  const requester = args.serviceRequest.requester;
  const communication: Communication = {
    resourceType: 'Communication',
    identifier: [{ system: OPINION_NOTIFICATION_SYSTEM, value: args.deliveryId }],
    status: 'completed',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/communication-category', code: 'notification', display: 'Notification' }] }],
    ...(args.note.subject ? { subject: args.note.subject as Reference<never> } : {}),
    sent: args.now.toISOString(),
    ...(requester?.reference ? { recipient: [{ reference: requester.reference, ...(requester.display ? { display: requester.display } : {}) } as Reference<never>] } : {}),
    ...(args.task.owner ? { sender: args.task.owner as Reference<never> } : {}),
    about: [{ reference: absoluteReference(target.ehrBaseUrl, `DocumentReference/${args.remoteDocumentId}`) }],
    payload: [{ contentString: `${consultant} has returned the second opinion you requested. It is filed as a consult note.` }],
  };
  return referencesForEhr(communication, target);
}
