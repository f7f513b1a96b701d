/**
 * The backport's notification Bundles (R4): a `history` Bundle whose first entry is the
 * SubscriptionStatus as a `Parameters` resource, then, for `id-only` payloads, one entry per
 * event focus carrying only its URL (no resource: no PHI leaves in a notification). `$status`
 * answers with the same Parameters in a `searchset`. Pure: built from plain values.
 *
 * @see https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-subscription-status-r4.html
 * @see https://hl7.org/fhir/uv/subscriptions-backport/notifications.html
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, Parameters, ParametersParameter } from '@medplum/fhirtypes';
import { BACKPORT_PROFILE, TASK_TOPIC, type NotificationType, type PayloadContent, type SubscriptionStatusCode } from './backport.ts';

/** One event of a Subscription: its number and the Task version it is about. */
export interface SubscriptionEvent {
  eventNumber: number;
  focusType: string;
  focusId: string;
  focusVersion: string;
  occurredAt: Date;
}

export interface StatusValues {
  fhirBaseUrl: string;
  subscriptionId: string;
  status: SubscriptionStatusCode;
  type: NotificationType;
  eventsSinceStart: number;
  /** Why deliveries fail, while they do. */
  error?: string;
}

/** The SubscriptionStatus (backport-subscription-status-r4) of one notification or query. */
export function subscriptionStatus(values: StatusValues, events: readonly SubscriptionEvent[], payload: PayloadContent): Parameters {
  const parameter: ParametersParameter[] = [
    { name: 'subscription', valueReference: { reference: `${values.fhirBaseUrl}/Subscription/${values.subscriptionId}` } },
    { name: 'topic', valueCanonical: TASK_TOPIC },
    { name: 'status', valueCode: values.status },
    { name: 'type', valueCode: values.type },
    // A string in R4 (the R5 element is an integer64).
    { name: 'events-since-subscription-start', valueString: String(values.eventsSinceStart) },
    ...events.map((e) => ({
      name: 'notification-event',
      part: [
        { name: 'event-number', valueString: String(e.eventNumber) },
        { name: 'timestamp', valueInstant: e.occurredAt.toISOString() },
        ...(payload === 'id-only' ? [{ name: 'focus', valueReference: { reference: focusUrl(values.fhirBaseUrl, e) } }] : []),
      ],
    })),
    ...(values.error ? [{ name: 'error', valueCodeableConcept: { text: values.error } }] : []),
  ];
  return { resourceType: 'Parameters', id: randomUUID(), meta: { profile: [BACKPORT_PROFILE.status] }, parameter };
}

/** The notification (or `$events` answer): a history Bundle, SubscriptionStatus first, then the foci for id-only. */
/** `id`: the notification's id (a retry sends the same one, so receivers can de-duplicate). */
export function notificationBundle(values: StatusValues, events: readonly SubscriptionEvent[], payload: PayloadContent, now: Date, id: string = randomUUID()): Bundle {
  const status = subscriptionStatus(values, events, payload);
  const statusEntry: BundleEntry = {
    fullUrl: `urn:uuid:${status.id}`,
    resource: status,
    // bdl-3/bdl-4: a history Bundle's entries carry request and response; the status entry's are those of $status.
    request: { method: 'GET', url: `${values.fhirBaseUrl}/Subscription/${values.subscriptionId}/$status` },
    response: { status: '200' },
  };
  const foci: BundleEntry[] =
    payload === 'id-only'
      ? events.map((e) => ({
          fullUrl: focusUrl(values.fhirBaseUrl, e),
          request: { method: e.focusVersion === '1' ? 'POST' : 'PUT', url: e.focusVersion === '1' ? e.focusType : `${e.focusType}/${e.focusId}` },
          response: { status: e.focusVersion === '1' ? '201' : '200', etag: `W/"${e.focusVersion}"` },
        }))
      : [];
  return {
    resourceType: 'Bundle',
    id,
    meta: { profile: [BACKPORT_PROFILE.notification] },
    type: 'history',
    timestamp: now.toISOString(),
    entry: [statusEntry, ...foci],
  };
}

/** `$status`: one SubscriptionStatus per Subscription (one at the instance level), in a searchset. */
export function statusBundle(values: readonly StatusValues[]): Bundle {
  const statuses = values.map((v) => subscriptionStatus(v, [], 'empty'));
  return { resourceType: 'Bundle', type: 'searchset', total: statuses.length, entry: statuses.map((status) => ({ fullUrl: `urn:uuid:${status.id}`, resource: status, search: { mode: 'match' } })) };
}

function focusUrl(fhirBaseUrl: string, e: SubscriptionEvent): string {
  return `${fhirBaseUrl}/${e.focusType}/${e.focusId}`;
}
