/**
 * Webhook notifications: whenever a Task's status or business status changes
 * (and when it is created), every participant that may read the Task and registered
 * `notify` in the network file gets an id-only JSON POST, signed (webhook-signature.ts).
 *
 * The same change stream feeds the FHIR Subscriptions: one observer, two kinds of
 * recipients, webhooks from the network file and Subscriptions a participant created
 * (subscriptions/subscription-delivery.ts), each with its own durable job.
 *
 * Durable: the observer enqueues one `notify-webhook` job per recipient inside the
 * transaction that writes the Task, so a notification exists if and only if the change
 * commits; the job retries with backoff until the receiver answers 2xx.
 *
 * No PHI: the body carries ids, versions and status codes only. Receivers read the Task
 * (and whatever else they may) over FHIR with their own token. Notifications can arrive
 * more than once (a retry after a lost 2xx) and out of order: de-duplicate on `id`
 * (header webhook-id) and order by `data.taskVersion`.
 */
import type { Task } from '@medplum/fhirtypes';
import { randomUUID } from 'node:crypto';
import { parseResourceReference } from '../fhir/references.ts';
import type { Job, JobQueue } from '../jobs/job-queue.ts';
import { type NotifyWebhookJob, QUEUE } from '../jobs/queues.ts';
import type { Participant } from '../network/network.ts';
import type { WriteObserver } from '../store/resource-store.ts';
import { noSubscriptionListening, subscriptionCandidates, type SubscriptionCandidate, subscriptionEventsFor } from '../subscriptions/subscription-delivery.ts';
import { textArray } from '../store/write-batch.ts';
import { signWebhook } from './webhook-signature.ts';

export const TASK_NOTIFICATION_TYPE = 'task.status-changed';

export interface NotificationDeps {
  jobs: Pick<JobQueue, 'enqueue'>;
  network: { get(id: string): Participant | undefined };
  now: () => Date;
}

/** The store observer that turns Task writes into `notify-webhook` and `notify-subscription` jobs. */
export function taskNotificationObserver(deps: NotificationDeps): WriteObserver {
  return {
    resourceType: 'Task',
    // The Subscriptions that may hear a new Task version are read by the statement writing it.
    lookup: (access) => subscriptionCandidates(access, deps.now()),
    // A new Task is heard by the network file's webhook recipients among its readers, and by the
    // Subscriptions listening for them; with neither, `onWrite` writes nothing.
    quietOnCreate: ({ access }) => (access.some((id) => deps.network.get(id)?.notify) ? false : noSubscriptionListening(textArray(access), deps.now())),
    async onWrite(tx, change) {
      const task = change.resource as Task;
      const businessStatus = task.businessStatus?.coding?.[0]?.code ?? '';
      const { previous } = change;
      if (previous && previous.status === task.status && (previous.businessStatus ?? '') === businessStatus) return;
      await subscriptionEventsFor(tx, change, deps, change.lookup as SubscriptionCandidate[] | undefined);
      const recipients = [...new Set(change.access)].filter((id) => deps.network.get(id)?.notify);
      if (recipients.length === 0) return;
      const focus = task.focus?.reference ?? task.basedOn?.[0]?.reference;
      const serviceRequestId = focus ? (parseResourceReference(focus)?.typeAndId.split('/')[1] ?? '') : '';
      const occurredAt = task.meta?.lastUpdated ?? deps.now().toISOString();
      for (const participantId of recipients) {
        const data: NotifyWebhookJob = {
          participantId,
          notificationId: randomUUID(),
          taskId: task.id as string,
          taskVersion: task.meta?.versionId ?? '1',
          status: task.status,
          businessStatus,
          serviceRequestId,
          occurredAt,
        };
        await deps.jobs.enqueue(tx.database, QUEUE.notifyWebhook, data);
      }
    },
  };
}

/** The JSON body a receiver gets (Standard Webhooks shape: type, timestamp, data). */
export interface TaskNotification {
  id: string;
  type: typeof TASK_NOTIFICATION_TYPE;
  timestamp: string;
  data: {
    task: string;
    taskVersion: string;
    status: string;
    businessStatus?: string;
    serviceRequest?: string;
  };
}

export function notificationBody(job: NotifyWebhookJob, fhirBaseUrl: string): TaskNotification {
  return {
    id: job.notificationId,
    type: TASK_NOTIFICATION_TYPE,
    timestamp: job.occurredAt,
    data: {
      task: `${fhirBaseUrl}/Task/${job.taskId}`,
      taskVersion: job.taskVersion,
      status: job.status,
      ...(job.businessStatus ? { businessStatus: job.businessStatus } : {}),
      ...(job.serviceRequestId ? { serviceRequest: `${fhirBaseUrl}/ServiceRequest/${job.serviceRequestId}` } : {}),
    },
  };
}

export interface SendDeps {
  network: { get(id: string): Participant | undefined };
  /** The service's FHIR base (`${PUBLIC_URL}/fhir`), for the references in the body. */
  fhirBaseUrl: string;
  timeoutMs: number;
  now: () => Date;
  fetch?: typeof fetch;
}

/** The receiver answered with a non-2xx status: the job is retried, and the log says which status. */
export class WebhookRefusedError extends Error {
  readonly status: number;

  constructor(status: number) {
    super(`webhook answered HTTP ${status}`);
    this.name = 'WebhookRefusedError';
    this.status = status;
  }
}

export type SendResult = { outcome: 'sent'; status: number } | { outcome: 'skipped'; reason: string };

/** The `notify-webhook` job: one signed POST; a non-2xx answer or a network error throws (retry). */
export async function sendTaskNotification(job: Job<NotifyWebhookJob>, deps: SendDeps): Promise<SendResult> {
  const notify = deps.network.get(job.data.participantId)?.notify;
  // The participant left the network or removed its webhook since: nothing to send.
  if (!notify) return { outcome: 'skipped', reason: 'the participant has no webhook any more' };
  const body = JSON.stringify(notificationBody(job.data, deps.fhirBaseUrl));
  const timestamp = Math.floor(deps.now().getTime() / 1000);
  const response = await (deps.fetch ?? fetch)(notify.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'user-agent': 'second-opinion-referrals webhook',
      'webhook-id': job.data.notificationId,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signWebhook(notify.secret, job.data.notificationId, timestamp, body),
    },
    body,
    redirect: 'manual',
    signal: AbortSignal.timeout(deps.timeoutMs),
  });
  // The receiver's body is not read beyond draining it: it may echo anything.
  await response.body?.cancel().catch(() => undefined);
  if (response.status < 200 || response.status > 299) throw new WebhookRefusedError(response.status);
  return { outcome: 'sent', status: response.status };
}
