import type { Parameters } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { createValidator } from '../fhir/validator.ts';
import { BACKPORT_PROFILE, TASK_TOPIC } from './backport.ts';
import { notificationBundle, statusBundle, subscriptionStatus, type StatusValues, type SubscriptionEvent } from './notification-bundle.ts';

const validator = createValidator();
const BASE = 'https://so.example/fhir';
const NOW = new Date('2026-11-02T10:00:00.000Z');
const values: StatusValues = { fhirBaseUrl: BASE, subscriptionId: 'sub-1', status: 'active', type: 'event-notification', eventsSinceStart: 7 };
const created: SubscriptionEvent = { eventNumber: 6, focusType: 'Task', focusId: 't-1', focusVersion: '1', occurredAt: new Date('2026-11-02T09:00:00.000Z') };
const changed: SubscriptionEvent = { eventNumber: 7, focusType: 'Task', focusId: 't-1', focusVersion: '3', occurredAt: new Date('2026-11-02T09:30:00.000Z') };

describe('subscriptionStatus (backport-subscription-status-r4)', () => {
  it('names the Subscription, the topic, the status, the type and the count; id-only events carry their focus', () => {
    const status = subscriptionStatus(values, [created], 'id-only');
    expect(status.meta).toEqual({ profile: [BACKPORT_PROFILE.status] });
    expect(status.parameter).toEqual([
      { name: 'subscription', valueReference: { reference: `${BASE}/Subscription/sub-1` } },
      { name: 'topic', valueCanonical: TASK_TOPIC },
      { name: 'status', valueCode: 'active' },
      { name: 'type', valueCode: 'event-notification' },
      { name: 'events-since-subscription-start', valueString: '7' },
      {
        name: 'notification-event',
        part: [
          { name: 'event-number', valueString: '6' },
          { name: 'timestamp', valueInstant: '2026-11-02T09:00:00.000Z' },
          { name: 'focus', valueReference: { reference: `${BASE}/Task/t-1` } },
        ],
      },
    ]);
    expect(validator.validate(status)).toEqual([]);
  });

  it('an empty payload names no focus; a delivery error is the last parameter, as text', () => {
    const status = subscriptionStatus({ ...values, status: 'error', error: 'The endpoint answered HTTP 500' }, [created], 'empty');
    expect(status.parameter?.find((p) => p.name === 'notification-event')?.part?.map((p) => p.name)).toEqual(['event-number', 'timestamp']);
    expect(status.parameter?.at(-1)).toEqual({ name: 'error', valueCodeableConcept: { text: 'The endpoint answered HTTP 500' } });
    expect(status.parameter?.find((p) => p.name === 'status')?.valueCode).toBe('error');
  });
});

describe('notificationBundle', () => {
  it('is a history Bundle: the status first (as $status would answer), then each focus by URL with no resource, created as POST 201 and changed as PUT 200 with its version', () => {
    const bundle = notificationBundle(values, [created, changed], 'id-only', NOW, 'n-1');
    expect(bundle).toMatchObject({ resourceType: 'Bundle', id: 'n-1', type: 'history', timestamp: '2026-11-02T10:00:00.000Z', meta: { profile: [BACKPORT_PROFILE.notification] } });
    const status = bundle.entry?.[0];
    expect(status?.fullUrl).toBe(`urn:uuid:${(status?.resource as Parameters).id}`);
    expect(status?.request).toEqual({ method: 'GET', url: `${BASE}/Subscription/sub-1/$status` });
    expect(status?.response).toEqual({ status: '200' });
    expect(bundle.entry?.slice(1)).toEqual([
      { fullUrl: `${BASE}/Task/t-1`, request: { method: 'POST', url: 'Task' }, response: { status: '201', etag: 'W/"1"' } },
      { fullUrl: `${BASE}/Task/t-1`, request: { method: 'PUT', url: 'Task/t-1' }, response: { status: '200', etag: 'W/"3"' } },
    ]);
    expect(validator.validate(bundle)).toEqual([]);
  });

  it('an empty payload carries the status entry only; handshakes and heartbeats have no event', () => {
    expect(notificationBundle(values, [created], 'empty', NOW).entry).toHaveLength(1);
    const handshake = notificationBundle({ ...values, status: 'requested', type: 'handshake', eventsSinceStart: 0 }, [], 'id-only', NOW);
    expect(handshake.entry).toHaveLength(1);
    expect((handshake.entry?.[0]?.resource as Parameters).parameter?.map((p) => p.name)).toEqual(['subscription', 'topic', 'status', 'type', 'events-since-subscription-start']);
    expect(validator.validate(handshake)).toEqual([]);
  });

  it('a retry keeps the id it is given; without one each Bundle has its own', () => {
    expect(notificationBundle(values, [], 'empty', NOW, 'same').id).toBe('same');
    expect(notificationBundle(values, [], 'empty', NOW).id).not.toBe(notificationBundle(values, [], 'empty', NOW).id);
  });
});

describe('statusBundle ($status)', () => {
  it('one SubscriptionStatus per Subscription in a searchset, total counted, no events', () => {
    const bundle = statusBundle([
      { ...values, type: 'query-status' },
      { ...values, subscriptionId: 'sub-2', status: 'off', type: 'query-status', eventsSinceStart: 0 },
    ]);
    expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 2 });
    const statuses = bundle.entry?.map((e) => e.resource as Parameters) ?? [];
    expect(statuses.map((s) => [s.parameter?.[0]?.valueReference?.reference, s.parameter?.find((p) => p.name === 'status')?.valueCode])).toEqual([
      [`${BASE}/Subscription/sub-1`, 'active'],
      [`${BASE}/Subscription/sub-2`, 'off'],
    ]);
    expect(bundle.entry?.every((e) => e.search?.mode === 'match' && e.fullUrl === `urn:uuid:${e.resource?.id}`)).toBe(true);
    expect(statuses.every((s) => !s.parameter?.some((p) => p.name === 'notification-event'))).toBe(true);
    expect(validator.validate(bundle)).toEqual([]);
    expect(statusBundle([])).toEqual({ resourceType: 'Bundle', type: 'searchset', total: 0, entry: [] });
  });
});
