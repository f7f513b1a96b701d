import type { QueuePolicy } from './job-queue.ts';

/**
 * The durable queues of the service and their retry policies, declared in one place: the
 * queue is created at start-up (PgBossQueue needs every name up front).
 */
export const QUEUE = {
  /** Pull the referral's record set from the referring EHR. Data: ids and version only. */
  assembleRecordSet: 'assemble-record-set',
  /** Post one opinion (consult note + Communication) to the referring EHR. Data: ids only. */
  deliverOpinion: 'deliver-opinion',
  /** Post one follow-up answer (and its question) to the referring EHR. Data: the follow-up (question) id only. */
  deliverFollowUpAnswer: 'deliver-follow-up-answer',
  /** Push one record-set version to a consulting clinic's own FHIR server. Data: the push id only. */
  pushRecordSet: 'push-record-set',
  /** POST one signed, id-only notification of a Task change to a participant's webhook. Data: ids only. */
  notifyWebhook: 'notify-webhook',
  /** POST one FHIR Subscription notification (handshake, heartbeat, event) to its endpoint. Data: ids only. */
  notifySubscription: 'notify-subscription',
} as const;

/** Retry settings of the opinion delivery (config: DELIVERY_RETRY_*). */
export interface DeliveryRetry {
  retryLimit: number;
  retryDelaySeconds: number;
  retryDelayMaxSeconds: number;
}

/** Default delivery retries: 10 s doubling to 1 h, 30 retries: about a day before giving up. */
export const DEFAULT_DELIVERY_RETRY: DeliveryRetry = { retryLimit: 30, retryDelaySeconds: 10, retryDelayMaxSeconds: 3600 };

/** Retry settings of webhook notifications (config: WEBHOOK_*). */
export interface WebhookRetry {
  retryLimit: number;
  retryDelaySeconds: number;
  /** Timeout of one notification POST (config WEBHOOK_TIMEOUT_MS); the lease of an attempt follows from it. Default 5000. */
  timeoutMs?: number;
}

/**
 * Lease of one notification attempt (webhook or Subscription): the POST's timeout plus 25 s for
 * the reads and writes around it. An attempt whose process died is retried once its lease
 * runs out, so the lease is kept short: 30 s with the default 5 s timeout.
 */
export function notificationLeaseSeconds(timeoutMs = 5_000): number {
  return Math.ceil(timeoutMs / 1000) + 25;
}

/** Delays between record-assembly attempts (config ASSEMBLY_RETRY_*); 12 retries, fixed. */
export interface AssemblyRetry {
  retryDelaySeconds: number;
  retryDelayMaxSeconds: number;
}

export const DEFAULT_ASSEMBLY_RETRY: AssemblyRetry = { retryDelaySeconds: 5, retryDelayMaxSeconds: 3600 };

export const DEFAULT_WEBHOOK_RETRY: WebhookRetry = { retryLimit: 20, retryDelaySeconds: 5 };

export interface QueueSettings {
  delivery?: DeliveryRetry;
  /** Lease of one delivery attempt (config DELIVERY_ATTEMPT_TIMEOUT_SECONDS). Default 300. */
  deliveryAttemptTimeoutSeconds?: number;
  /** Lease of one record-assembly attempt (config ASSEMBLY_ATTEMPT_TIMEOUT_SECONDS). Default 900. */
  assemblyAttemptTimeoutSeconds?: number;
  /** Delays between record-assembly attempts (config ASSEMBLY_RETRY_*). */
  assemblyRetry?: AssemblyRetry;
  webhook?: WebhookRetry;
}

export function queuePolicies(settings: QueueSettings = {}): QueuePolicy[] {
  const delivery = settings.delivery ?? DEFAULT_DELIVERY_RETRY;
  const webhook = settings.webhook ?? DEFAULT_WEBHOOK_RETRY;
  return [
    // EHR outages: back off from 5 s up to an hour between attempts, give up after 12 (about half a day).
    { name: QUEUE.assembleRecordSet, policy: 'standard', retryLimit: 12, ...(settings.assemblyRetry ?? DEFAULT_ASSEMBLY_RETRY), expireInSeconds: settings.assemblyAttemptTimeoutSeconds ?? 900 },
    // One job per consult note at a time (singleton key = its id): a re-drive never runs beside a retry.
    { name: QUEUE.deliverOpinion, policy: 'exclusive', ...delivery, expireInSeconds: settings.deliveryAttemptTimeoutSeconds ?? 300 },
    // One job per follow-up question's answer (singleton key = the question's id), retried like the opinion's post-back.
    { name: QUEUE.deliverFollowUpAnswer, policy: 'exclusive', ...delivery, expireInSeconds: settings.deliveryAttemptTimeoutSeconds ?? 300 },
    // One job per push (singleton key = its id), retried like the post-back: a re-drive never runs beside a retry.
    { name: QUEUE.pushRecordSet, policy: 'exclusive', ...delivery, expireInSeconds: settings.deliveryAttemptTimeoutSeconds ?? 300 },
    // One job per Task change; a receiver that is down gets the notification later, in no particular order.
    { name: QUEUE.notifyWebhook, policy: 'standard', retryLimit: webhook.retryLimit, retryDelaySeconds: webhook.retryDelaySeconds, retryDelayMaxSeconds: 3600, expireInSeconds: notificationLeaseSeconds(webhook.timeoutMs) },
    // Subscription notifications retry exactly as the webhooks do; the last failure puts the Subscription in `error`.
    { name: QUEUE.notifySubscription, policy: 'standard', retryLimit: webhook.retryLimit, retryDelaySeconds: webhook.retryDelaySeconds, retryDelayMaxSeconds: 3600, expireInSeconds: notificationLeaseSeconds(webhook.timeoutMs) },
  ];
}

export const QUEUE_POLICIES: readonly QueuePolicy[] = queuePolicies();

/** Job data of `assemble-record-set`: ids and the request version, never resources or PHI. */
export interface AssembleRecordSetJob {
  [key: string]: string | string[];
  serviceRequestId: string;
  taskIds: string[];
  /** Version of the ServiceRequest the job was enqueued for; the handler re-reads current state. */
  serviceRequestVersion: string;
  /**
   * `intake_request.records_revision` the job was enqueued for . A job whose
   * revision an assembly has already covered is skipped.
   */
  recordsRevision: string;
}

/**
 * An `assemble-record-set` job for consulting clinics added to a referral whose record set is
 * current: `taskIds` are their new Tasks, and `reuseBundleId` (the assembled
 * record set) is what they receive once consent covers them; nothing is fetched again.
 */
export interface ReuseRecordSetJob extends AssembleRecordSetJob {
  reuseBundleId: string;
}

/** Whether an `assemble-record-set` job admits added clinics to an existing record set. */
export function reusesRecordSet(data: AssembleRecordSetJob): data is ReuseRecordSetJob {
  return typeof data.reuseBundleId === 'string';
}

/** Job data of `notify-webhook`: which participant to tell, about which Task version. No PHI. */
export interface NotifyWebhookJob {
  [key: string]: string;
  /** The participant whose `notify.url` receives it. */
  participantId: string;
  /** Unique id of the notification (receivers de-duplicate on it). */
  notificationId: string;
  taskId: string;
  taskVersion: string;
  /** The Task's status after the change. */
  status: string;
  /** Its business-status code after the change ('' when none). */
  businessStatus: string;
  serviceRequestId: string;
  /** When the change happened (ISO 8601). */
  occurredAt: string;
}

/** Job data of `notify-subscription`: which Subscription, which notification, which event. No PHI. */
export interface NotifySubscriptionJob {
  [key: string]: string;
  subscriptionId: string;
  /** handshake | heartbeat | event-notification */
  type: 'handshake' | 'heartbeat' | 'event-notification';
  /** The event's number ('0' for handshakes and heartbeats). */
  eventNumber: string;
  /** Unique id of this notification (the Bundle's id: receivers de-duplicate on it). */
  notificationId: string;
}

/** Job data of `deliver-opinion`: the delivery (= consult note) id only. */
export interface DeliverOpinionJob {
  [key: string]: string;
  deliveryId: string;
}

/** Job data of `deliver-follow-up-answer`: the follow-up (= question Communication) id only. */
export interface DeliverFollowUpAnswerJob {
  [key: string]: string;
  followUpId: string;
}

/** Job data of `push-record-set`: the push (record_set_push row) id only. */
export interface PushRecordSetJob {
  [key: string]: string;
  pushId: string;
}
