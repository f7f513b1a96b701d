import type { QueuePolicy } from './job-queue.ts';

/**
 * The durable queues of the service and their retry policies, declared in one place: the
 * queue is created at start-up (PgBossQueue needs every name up front).
 */
export const QUEUE = {
  /** Pull the referral's record set from the referring EHR (issue 3). Data: ids and version only. */
  assembleRecordSet: 'assemble-record-set',
  /** Post one opinion (consult note + Communication) to the referring EHR (issue 4 §3). Data: ids only. */
  deliverOpinion: 'deliver-opinion',
} as const;

/** Retry settings of the opinion delivery (config: DELIVERY_RETRY_*). */
export interface DeliveryRetry {
  retryLimit: number;
  retryDelaySeconds: number;
  retryDelayMaxSeconds: number;
}

/** Default delivery retries: 10 s doubling to 1 h, 30 retries: about a day before giving up. */
export const DEFAULT_DELIVERY_RETRY: DeliveryRetry = { retryLimit: 30, retryDelaySeconds: 10, retryDelayMaxSeconds: 3600 };

export function queuePolicies(delivery: DeliveryRetry = DEFAULT_DELIVERY_RETRY): QueuePolicy[] {
  return [
    // EHR outages: back off from 5 s up to an hour between attempts, give up after 12 (about half a day).
    { name: QUEUE.assembleRecordSet, policy: 'standard', retryLimit: 12, retryDelaySeconds: 5, retryDelayMaxSeconds: 3600, expireInSeconds: 900 },
    // One job per consult note at a time (singleton key = its id): a re-drive never runs beside a retry.
    { name: QUEUE.deliverOpinion, policy: 'exclusive', ...delivery, expireInSeconds: 300 },
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

/** Job data of `deliver-opinion`: the delivery (= consult note) id only. */
export interface DeliverOpinionJob {
  [key: string]: string;
  deliveryId: string;
}
