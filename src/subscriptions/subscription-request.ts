/**
 * What a client may ask for at `POST /fhir/Subscription` (Subscriptions R5 Backport IG, R4
 * form), checked field by field so every refusal names its field as a FHIRPath expression.
 * Pure: no store, no door.
 */
import type { Extension, OperationOutcomeIssue, Subscription } from '@medplum/fhirtypes';
import { issue, invalid, unprocessable } from '../fhir/outcomes.ts';
import { parseResourceReference } from '../fhir/references.ts';
import { findUnstorableText } from '../fhir/unstorable-text.ts';
import { BACKPORT_EXTENSION, TASK_TOPIC, type PayloadContent, type TaskFilter } from './backport.ts';

/** The parts of a Subscription the service acts on. */
export interface SubscriptionRequest {
  /** The client's resource, as sent (kept for reads). */
  resource: Subscription;
  filters: TaskFilter[];
  endpoint: string;
  headers: string[];
  payload: PayloadContent;
  heartbeatSeconds?: number;
  /** `backport-timeout`: seconds to wait for the endpoint, when asked for (else the service's own timeout). */
  timeoutSeconds?: number;
  /** `backport-max-count`, when asked for: honoured, since every notification carries one event. */
  maxCount?: number;
  end?: Date;
}

export interface SubscriptionLimits {
  /** Shortest heartbeat period a client may ask for, in seconds. */
  minHeartbeatSeconds: number;
  /** Longest `backport-timeout` a client may ask for, in seconds (the service's own notification timeout). */
  maxTimeoutSeconds: number;
  /** Origins (scheme://host:port) the caller's notifications may go to (its systems in the network file). */
  allowedOrigins: readonly string[];
  /** Now: `end` must be later. */
  now: Date;
}

const MAX_HEADERS = 5;
const HEADER_LINE = /^([A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}):[ \t]*([\x20-\x7e]{1,2048})$/;
/** Headers the service sets itself. */
const RESERVED_HEADERS = new Set(['host', 'content-type', 'content-length', 'transfer-encoding', 'connection', 'user-agent']);
const FILTER = /^Task\?(owner|requester)=(.+)$/;

/**
 * Reads and checks the body of `POST /fhir/Subscription`.
 * 400: not a Subscription at all; 422: a Subscription this service cannot honour (another topic,
 * another channel, full-resource payload, an endpoint outside the caller's systems...).
 */
export function parseSubscriptionRequest(body: unknown, limits: SubscriptionLimits): SubscriptionRequest {
  const unstorable = findUnstorableText(body);
  if (unstorable.length) throw invalid(unstorable.map(({ path, reason }) => issue('value', `Subscription.${fieldPath(path)} ${reason}`, `Subscription.${fieldPath(path)}`)));
  if (typeof body !== 'object' || body === null || Array.isArray(body) || (body as { resourceType?: unknown }).resourceType !== 'Subscription') {
    throw invalid([issue('structure', 'The body must be a Subscription resource', 'Subscription.resourceType')]);
  }
  const resource = body as Subscription;
  const problems: OperationOutcomeIssue[] = [];
  const bad = (text: string, expression: string) => problems.push(issue('value', text, expression));

  if (resource.status !== 'requested' && resource.status !== 'active') bad("Subscription.status must be 'requested' (the server activates it after the handshake)", 'Subscription.status');
  if (resource.criteria !== TASK_TOPIC) bad(`Subscription.criteria must be the topic ${TASK_TOPIC}`, 'Subscription.criteria');

  const filters: TaskFilter[] = [];
  const criteriaExtensions = ((resource as { _criteria?: { extension?: Extension[] } })._criteria?.extension ?? []);
  criteriaExtensions.forEach((ext, i) => {
    if (ext.url !== BACKPORT_EXTENSION.filterCriteria) return;
    const at = `Subscription.criteria.extension[${i}].valueString`;
    const m = FILTER.exec(ext.valueString ?? '');
    const reference = m?.[2] ? decodeURIComponentSafe(m[2]) : undefined;
    if (!m || !reference || !parseResourceReference(reference)) {
      bad('A filter must be Task?owner={reference} or Task?requester={reference}', at);
      return;
    }
    filters.push({ param: m[1] as TaskFilter['param'], reference });
  });

  const channel = resource.channel as Subscription['channel'] | undefined;
  if (channel?.type !== 'rest-hook') bad("Subscription.channel.type must be 'rest-hook'", 'Subscription.channel.type');
  const endpoint = channel?.endpoint ?? '';
  const origin = originOf(endpoint);
  if (!origin) bad('Subscription.channel.endpoint must be an absolute http(s) URL', 'Subscription.channel.endpoint');
  else if (!limits.allowedOrigins.includes(origin)) {
    bad(`Notifications go only to the caller's own systems (the origins of its notify URL or FHIR base in the network file${limits.allowedOrigins.length ? `: ${limits.allowedOrigins.join(', ')}` : '; none is registered'})`, 'Subscription.channel.endpoint');
  }
  if (channel?.payload !== undefined && channel.payload !== 'application/fhir+json') bad("Subscription.channel.payload must be 'application/fhir+json'", 'Subscription.channel.payload');

  const payloadExtensions = ((channel as { _payload?: { extension?: Extension[] } } | undefined)?._payload?.extension ?? []);
  let payload: PayloadContent = 'id-only';
  payloadExtensions.forEach((ext, i) => {
    if (ext.url !== BACKPORT_EXTENSION.payloadContent) return;
    if (ext.valueCode === 'id-only' || ext.valueCode === 'empty') payload = ext.valueCode;
    else bad("Payload content must be 'id-only' or 'empty': notifications never carry resources (no PHI leaves in a notification)", `Subscription.channel.payload.extension[${i}].valueCode`);
  });

  let heartbeatSeconds: number | undefined;
  let timeoutSeconds: number | undefined;
  let maxCount: number | undefined;
  (channel?.extension ?? []).forEach((ext, i) => {
    if (ext.url === BACKPORT_EXTENSION.heartbeatPeriod) {
      const v = ext.valueUnsignedInt;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < limits.minHeartbeatSeconds || v > 86_400) {
        bad(`The heartbeat period must be whole seconds from ${limits.minHeartbeatSeconds} to 86400`, `Subscription.channel.extension[${i}].valueUnsignedInt`);
      } else heartbeatSeconds = v;
    } else if (ext.url === BACKPORT_EXTENSION.timeout) {
      // Honoured up to the service's own timeout: a longer wait is refused rather than silently cut.
      const v = ext.valueUnsignedInt;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > limits.maxTimeoutSeconds) {
        bad(`The timeout (backport-timeout) must be whole seconds from 1 to ${limits.maxTimeoutSeconds}`, `Subscription.channel.extension[${i}].valueUnsignedInt`);
      } else timeoutSeconds = v;
    } else if (ext.url === BACKPORT_EXTENSION.maxCount) {
      // Honoured as asked: every notification carries exactly one event, never more than any max-count.
      const v = ext.valuePositiveInt;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) bad('The most events per notification (backport-max-count) must be a whole number from 1', `Subscription.channel.extension[${i}].valuePositiveInt`);
      else maxCount = v;
    }
  });

  const headers = channel?.header ?? [];
  if (!Array.isArray(headers) || headers.length > MAX_HEADERS) bad(`At most ${MAX_HEADERS} channel headers`, 'Subscription.channel.header');
  else headers.forEach((h, i) => {
    const m = typeof h === 'string' ? HEADER_LINE.exec(h) : null;
    if (!m?.[1]) bad("A channel header must be one 'Name: value' line", `Subscription.channel.header[${i}]`);
    else if (RESERVED_HEADERS.has(m[1].toLowerCase())) bad(`The header ${m[1]} is set by the service`, `Subscription.channel.header[${i}]`);
  });

  let end: Date | undefined;
  if (resource.end !== undefined) {
    end = new Date(resource.end);
    if (typeof resource.end !== 'string' || Number.isNaN(end.getTime())) bad('Subscription.end must be an instant', 'Subscription.end');
    else if (end.getTime() <= limits.now.getTime()) bad('Subscription.end must be in the future', 'Subscription.end');
  }

  if (problems.length) throw unprocessable(problems);
  return {
    resource,
    filters,
    endpoint,
    headers: Array.isArray(headers) ? headers : [],
    payload,
    ...(heartbeatSeconds !== undefined ? { heartbeatSeconds } : {}),
    ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
    ...(maxCount !== undefined ? { maxCount } : {}),
    ...(end ? { end } : {}),
  };
}

/**
 * The `backport-timeout` of a stored Subscription (checked at creation), in seconds: the delivery
 * job waits the shorter of it and the service's own timeout.
 */
export function requestedTimeoutSeconds(subscription: Subscription): number | undefined {
  const v = subscription.channel?.extension?.find((e) => e.url === BACKPORT_EXTENSION.timeout)?.valueUnsignedInt;
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}

/** `['channel', 'header', 0]` -> `channel.header[0]`. */
function fieldPath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
}

function originOf(url: string): string | undefined {
  try {
    const u = new URL(url);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.origin : undefined;
  } catch {
    return undefined;
  }
}

/** The origin of each URL (notify URL, FHIR base) a participant's systems have in the network file. */
export function originsOf(urls: readonly (string | undefined)[]): string[] {
  return [...new Set(urls.flatMap((u) => (u ? (originOf(u) ?? []) : [])))];
}

function decodeURIComponentSafe(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}
