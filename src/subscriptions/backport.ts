/**
 * Topic-based Subscriptions in R4, as the Subscriptions R5 Backport IG (STU 1.1) carries them:
 * the canonicals this service publishes and the backport's profiles, extensions and operations.
 *
 * @see https://hl7.org/fhir/uv/subscriptions-backport/
 */
import { CANONICAL_BASE } from '../fhir/constants.ts';

/**
 * The one topic this service publishes: a consult Task was created or its status or business
 * status changed. In R4 a topic is named by its canonical URL in `Subscription.criteria`;
 * filters: `Task?owner=Organization/{id}`, `Task?requester={reference}`. The focus of each
 * event is the Task (at the version the change made).
 */
export const TASK_TOPIC = `${CANONICAL_BASE}/SubscriptionTopic/task-status`;

const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport';

export const BACKPORT_PROFILE = {
  subscription: `${BACKPORT}/StructureDefinition/backport-subscription`,
  status: `${BACKPORT}/StructureDefinition/backport-subscription-status-r4`,
  notification: `${BACKPORT}/StructureDefinition/backport-subscription-notification-r4`,
} as const;

export const BACKPORT_EXTENSION = {
  /** On `Subscription.criteria`: one filter (valueString, `Task?owner=...`). */
  filterCriteria: `${BACKPORT}/StructureDefinition/backport-filter-criteria`,
  /** On `Subscription.channel`: seconds between heartbeats (valueUnsignedInt). */
  heartbeatPeriod: `${BACKPORT}/StructureDefinition/backport-heartbeat-period`,
  /** On `Subscription.channel`: seconds to wait for the endpoint before an attempt fails (valueUnsignedInt). */
  timeout: `${BACKPORT}/StructureDefinition/backport-timeout`,
  /** On `Subscription.channel`: most triggering resources in one notification (valuePositiveInt). */
  maxCount: `${BACKPORT}/StructureDefinition/backport-max-count`,
  /** On `Subscription.channel.payload`: empty | id-only | full-resource (valueCode). */
  payloadContent: `${BACKPORT}/StructureDefinition/backport-payload-content`,
  /** On a CapabilityStatement's Subscription resource: a topic the server supports (valueCanonical). */
  topicCanonical: `${BACKPORT}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical`,
} as const;

export const BACKPORT_OPERATION = {
  status: `${BACKPORT}/OperationDefinition/backport-subscription-status`,
  events: `${BACKPORT}/OperationDefinition/backport-subscription-events`,
} as const;

/** The backport's R4 server CapabilityStatement, which ours instantiates. */
export const BACKPORT_SERVER_CAPABILITIES = `${BACKPORT}/CapabilityStatement/backport-subscription-server-r4`;

export type PayloadContent = 'empty' | 'id-only';
export type SubscriptionStatusCode = 'requested' | 'active' | 'error' | 'off';
export type NotificationType = 'handshake' | 'heartbeat' | 'event-notification' | 'query-status' | 'query-event';

/** A Task filter of a Subscription: the Task's `owner` or `requester` is this reference (ANDed with the others). */
export interface TaskFilter {
  param: 'owner' | 'requester';
  /** `Type/id`, as `parseResourceReference` names it. */
  reference: string;
}
