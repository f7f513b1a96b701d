import type { OperationOutcomeIssue, Subscription } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { HttpOutcomeError } from '../fhir/outcomes.ts';
import { BACKPORT_EXTENSION, TASK_TOPIC } from './backport.ts';
import { originsOf, parseSubscriptionRequest, requestedTimeoutSeconds, type SubscriptionLimits } from './subscription-request.ts';

const NOW = new Date('2026-11-02T10:00:00.000Z');
const limits: SubscriptionLimits = { minHeartbeatSeconds: 60, maxTimeoutSeconds: 10, allowedOrigins: ['https://ehr.example'], now: NOW };

type Body = Record<string, unknown>;

/** A Subscription the service honours; `change` edits a copy. */
function body(change: (s: Body & { channel: Body }) => void = () => undefined): Body {
  const s = {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'our Tasks',
    criteria: TASK_TOPIC,
    _criteria: { extension: [{ url: BACKPORT_EXTENSION.filterCriteria, valueString: 'Task?owner=Organization/lakeside' }] },
    channel: {
      type: 'rest-hook',
      endpoint: 'https://ehr.example/hook',
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: BACKPORT_EXTENSION.payloadContent, valueCode: 'empty' }] },
      header: ['Authorization: Bearer x'],
      extension: [
        { url: BACKPORT_EXTENSION.heartbeatPeriod, valueUnsignedInt: 120 },
        { url: BACKPORT_EXTENSION.timeout, valueUnsignedInt: 5 },
        { url: BACKPORT_EXTENSION.maxCount, valuePositiveInt: 3 },
      ],
    },
    end: '2026-12-01T00:00:00Z',
  };
  change(s);
  return s;
}

/** The refusal's status and its issues as [expression, text]. */
function refusal(input: unknown, at: SubscriptionLimits = limits): { status: number; issues: [string | undefined, string | undefined][] } {
  try {
    parseSubscriptionRequest(input, at);
  } catch (err) {
    if (!(err instanceof HttpOutcomeError)) throw err;
    return { status: err.status, issues: (err.outcome.issue as OperationOutcomeIssue[]).map((i) => [i.expression?.[0], i.details?.text]) };
  }
  throw new Error('accepted');
}

describe('parseSubscriptionRequest', () => {
  it('reads what the service acts on: filters, endpoint, headers, payload, heartbeat, timeout, max-count, end', () => {
    const request = parseSubscriptionRequest(body(), limits);
    expect(request).toEqual({
      resource: body(),
      filters: [{ param: 'owner', reference: 'Organization/lakeside' }],
      endpoint: 'https://ehr.example/hook',
      headers: ['Authorization: Bearer x'],
      payload: 'empty',
      heartbeatSeconds: 120,
      timeoutSeconds: 5,
      maxCount: 3,
      end: new Date('2026-12-01T00:00:00Z'),
    });
    expect(requestedTimeoutSeconds(request.resource)).toBe(5);
  });

  it('defaults: id-only payload, no heartbeat, the service\'s timeout, no end, no filter; a URL-encoded filter reference is decoded', () => {
    const request = parseSubscriptionRequest(
      body((s) => {
        delete s.end;
        s._criteria = { extension: [{ url: BACKPORT_EXTENSION.filterCriteria, valueString: 'Task?requester=Organization%2Fst-olaf' }] };
        s.channel = { type: 'rest-hook', endpoint: 'https://ehr.example/hook' };
      }),
      limits,
    );
    expect(request).toMatchObject({ payload: 'id-only', headers: [], filters: [{ param: 'requester', reference: 'Organization/st-olaf' }] });
    expect(request).not.toHaveProperty('heartbeatSeconds');
    expect(request).not.toHaveProperty('timeoutSeconds');
    expect(request).not.toHaveProperty('end');
    expect(requestedTimeoutSeconds(request.resource)).toBeUndefined();
  });

  it('400 for what is not a Subscription, or text no resource can hold', () => {
    expect(refusal({ resourceType: 'Task' })).toEqual({ status: 400, issues: [['Subscription.resourceType', 'The body must be a Subscription resource']] });
    expect(refusal([body()])).toEqual({ status: 400, issues: [['Subscription.resourceType', 'The body must be a Subscription resource']] });
    expect(refusal(null).status).toBe(400);
    const nul = refusal(body((s) => (s.reason = 'a\u0000b')));
    expect(nul.status).toBe(400);
    expect(nul.issues.map(([at]) => at)).toEqual(['Subscription.reason']);
  });

  it.each<[string, (s: Body & { channel: Body }) => void, string, string]>([
    ['status', (s) => (s.status = 'off'), 'Subscription.status', "Subscription.status must be 'requested' (the server activates it after the handshake)"],
    ['another topic', (s) => (s.criteria = 'Task?status=requested'), 'Subscription.criteria', `Subscription.criteria must be the topic ${TASK_TOPIC}`],
    ['a filter on another type', (s) => (s._criteria = { extension: [{ url: 'x', valueString: 'y' }, { url: BACKPORT_EXTENSION.filterCriteria, valueString: 'Patient?name=Alex' }] }), 'Subscription.criteria.extension[1].valueString', 'A filter must be Task?owner={reference} or Task?requester={reference}'],
    ['a filter that is no reference', (s) => (s._criteria = { extension: [{ url: BACKPORT_EXTENSION.filterCriteria, valueString: 'Task?owner=%E0%A4%A' }] }), 'Subscription.criteria.extension[0].valueString', 'A filter must be Task?owner={reference} or Task?requester={reference}'],
    ['another channel', (s) => (s.channel.type = 'websocket'), 'Subscription.channel.type', "Subscription.channel.type must be 'rest-hook'"],
    ['a relative endpoint', (s) => (s.channel.endpoint = '/hook'), 'Subscription.channel.endpoint', 'Subscription.channel.endpoint must be an absolute http(s) URL'],
    ['an ftp endpoint', (s) => (s.channel.endpoint = 'ftp://ehr.example/hook'), 'Subscription.channel.endpoint', 'Subscription.channel.endpoint must be an absolute http(s) URL'],
    ['an endpoint outside the caller\'s systems', (s) => (s.channel.endpoint = 'https://collector.example/hook'), 'Subscription.channel.endpoint', "Notifications go only to the caller's own systems (the origins of its notify URL or FHIR base in the network file: https://ehr.example)"],
    ['another payload MIME type', (s) => (s.channel.payload = 'application/fhir+xml'), 'Subscription.channel.payload', "Subscription.channel.payload must be 'application/fhir+json'"],
    ['full-resource payloads', (s) => (s.channel._payload = { extension: [{ url: BACKPORT_EXTENSION.payloadContent, valueCode: 'full-resource' }] }), 'Subscription.channel.payload.extension[0].valueCode', "Payload content must be 'id-only' or 'empty': notifications never carry resources (no PHI leaves in a notification)"],
    ['a heartbeat under the floor', (s) => ((s.channel.extension as Body[])[0] = { url: BACKPORT_EXTENSION.heartbeatPeriod, valueUnsignedInt: 59 }), 'Subscription.channel.extension[0].valueUnsignedInt', 'The heartbeat period must be whole seconds from 60 to 86400'],
    ['a heartbeat over a day', (s) => ((s.channel.extension as Body[])[0] = { url: BACKPORT_EXTENSION.heartbeatPeriod, valueUnsignedInt: 86_401 }), 'Subscription.channel.extension[0].valueUnsignedInt', 'The heartbeat period must be whole seconds from 60 to 86400'],
    ['a timeout longer than the service waits', (s) => ((s.channel.extension as Body[])[1] = { url: BACKPORT_EXTENSION.timeout, valueUnsignedInt: 11 }), 'Subscription.channel.extension[1].valueUnsignedInt', 'The timeout (backport-timeout) must be whole seconds from 1 to 10'],
    ['a zero timeout', (s) => ((s.channel.extension as Body[])[1] = { url: BACKPORT_EXTENSION.timeout, valueUnsignedInt: 0 }), 'Subscription.channel.extension[1].valueUnsignedInt', 'The timeout (backport-timeout) must be whole seconds from 1 to 10'],
    ['a timeout of another type', (s) => ((s.channel.extension as Body[])[1] = { url: BACKPORT_EXTENSION.timeout, valueString: '5' }), 'Subscription.channel.extension[1].valueUnsignedInt', 'The timeout (backport-timeout) must be whole seconds from 1 to 10'],
    ['a max-count of 0', (s) => ((s.channel.extension as Body[])[2] = { url: BACKPORT_EXTENSION.maxCount, valuePositiveInt: 0 }), 'Subscription.channel.extension[2].valuePositiveInt', 'The most events per notification (backport-max-count) must be a whole number from 1'],
    ['a fractional max-count', (s) => ((s.channel.extension as Body[])[2] = { url: BACKPORT_EXTENSION.maxCount, valuePositiveInt: 1.5 }), 'Subscription.channel.extension[2].valuePositiveInt', 'The most events per notification (backport-max-count) must be a whole number from 1'],
    ['too many headers', (s) => (s.channel.header = ['A: 1', 'B: 2', 'C: 3', 'D: 4', 'E: 5', 'F: 6']), 'Subscription.channel.header', 'At most 5 channel headers'],
    ['a header that is no header line', (s) => (s.channel.header = ['A: 1', 'no colon']), 'Subscription.channel.header[1]', "A channel header must be one 'Name: value' line"],
    ['a header the service sets', (s) => (s.channel.header = ['Content-Type: text/plain']), 'Subscription.channel.header[0]', 'The header Content-Type is set by the service'],
    ['an end that is no instant', (s) => (s.end = 'tomorrow'), 'Subscription.end', 'Subscription.end must be an instant'],
    ['an end already past', (s) => (s.end = '2026-11-02T10:00:00Z'), 'Subscription.end', 'Subscription.end must be in the future'],
  ])('422 for %s, naming the field', (_what, change, expression, text) => {
    expect(refusal(body(change))).toEqual({ status: 422, issues: [[expression, text]] });
  });

  it('names every problem at once, in the order of the resource', () => {
    const all = refusal(
      body((s) => {
        s.criteria = 'x';
        s.channel.type = 'email';
        s.channel.endpoint = 'mailto:a@b';
        s.end = 'never';
      }),
    );
    expect(all.status).toBe(422);
    expect(all.issues.map(([at]) => at)).toEqual(['Subscription.criteria', 'Subscription.channel.type', 'Subscription.channel.endpoint', 'Subscription.end']);
  });

  it('says when the caller has no system notifications may go to', () => {
    expect(refusal(body(), { ...limits, allowedOrigins: [] }).issues).toEqual([
      ['Subscription.channel.endpoint', "Notifications go only to the caller's own systems (the origins of its notify URL or FHIR base in the network file; none is registered)"],
    ]);
  });
});

describe('originsOf', () => {
  it('the distinct http(s) origins of the URLs given, skipping what is missing or no URL', () => {
    expect(originsOf(['https://ehr.example/fhir', 'https://ehr.example:443/notify', undefined, 'not a url', 'http://127.0.0.1:8090/x', 'ftp://files.example/'])).toEqual(['https://ehr.example', 'http://127.0.0.1:8090']);
  });
});
