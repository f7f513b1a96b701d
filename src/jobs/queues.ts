import type { QueuePolicy } from './job-queue.ts';

/**
 * The durable queues of the service and their retry policies, declared in one place: the
 * queue is created at start-up (PgBossQueue needs every name up front).
 */
export const QUEUE = {
  /** Pull the referral's record set from the referring EHR (issue 3). Data: ids and version only. */
  assembleRecordSet: 'assemble-record-set',
} as const;

export const QUEUE_POLICIES: readonly QueuePolicy[] = [
  // EHR outages: back off from 5 s up to an hour between attempts, give up after 12 (about half a day).
  { name: QUEUE.assembleRecordSet, policy: 'standard', retryLimit: 12, retryDelaySeconds: 5, retryDelayMaxSeconds: 3600, expireInSeconds: 900 },
];

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
