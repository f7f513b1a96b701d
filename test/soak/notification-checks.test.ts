import { describe, expect, it } from 'vitest';
import { FAULTS_BY_QUEUE } from '../../scripts/soak/attribution.ts';
import {
  checkSubscription,
  changesHeardBy,
  checkWebhooks,
  notificationFailures,
  notificationRows,
  type SubscriptionArrival,
  taskChanges,
  type TaskVersion,
  type WebhookArrival,
} from '../../scripts/soak/notification-checks.ts';
import { formatTable, type SoakFindings, verdict } from '../../scripts/soak/report.ts';

const OWNER = 'Organization/northfield-pathology';

/**
 * Task t1 (Northfield's): created, its records disclosed (Northfield admitted: the store then
 * names it on every version, the first too), accepted, a change of another element (no status
 * change), started. Task t2 (Lakeside's): created.
 */
const NF = ['st-olaf', 'northfield-pathology'];
const VERSIONS: TaskVersion[] = [
  { taskId: 't1', version: 3, status: 'accepted', businessStatus: '', access: NF, owner: OWNER, lastUpdated: 3_000 },
  { taskId: 't1', version: 1, status: 'requested', businessStatus: 'records-pending', access: NF, owner: OWNER, lastUpdated: 1_000 },
  { taskId: 't1', version: 2, status: 'requested', businessStatus: 'records-ready', access: NF, owner: OWNER, lastUpdated: 2_000 },
  { taskId: 't1', version: 4, status: 'accepted', businessStatus: '', access: NF, owner: OWNER, lastUpdated: 4_000 },
  { taskId: 't1', version: 5, status: 'in-progress', businessStatus: '', access: NF, owner: OWNER, lastUpdated: 5_000 },
  { taskId: 't2', version: 1, status: 'requested', businessStatus: 'records-pending', access: ['st-olaf', 'lakeside-consults'], owner: 'Organization/lakeside', lastUpdated: 1_500 },
];

const hook = (participant: string, taskId: string, taskVersion: string, at: number, extra: Partial<WebhookArrival> = {}): WebhookArrival => ({
  participant,
  webhookId: `${participant}-${taskId}-${taskVersion}`,
  taskId,
  taskVersion,
  status: 'x',
  businessStatus: '',
  at,
  signatureOk: true,
  answered: 204,
  ...extra,
});

const event = (type: string, events: [number, string, string][], at: number, answered = 200): SubscriptionArrival => ({
  bundleId: `b${at}`,
  type,
  events: events.map(([number, taskId, version]) => ({ number, taskId, version })),
  at,
  answered,
  headerOk: true,
});

describe('soak notification checks', () => {
  it('a Task change is its creation or a version whose status or business status differs from the one before', () => {
    expect(taskChanges(VERSIONS).map((v) => `${v.taskId} v${v.version}`).sort()).toEqual(['t1 v1', 't1 v2', 't1 v3', 't1 v5', 't2 v1']);
  });

  it('the referrer hears of its Tasks from their creation; a clinic from its admission (the disclosure), though the store then names it on every version', () => {
    expect(changesHeardBy(VERSIONS, 'st-olaf', true).map((v) => `${v.taskId} v${v.version}`)).toEqual(['t1 v1', 't1 v2', 't1 v3', 't1 v5', 't2 v1']);
    expect(changesHeardBy(VERSIONS, 'northfield-pathology', false).map((v) => `${v.taskId} v${v.version}`)).toEqual(['t1 v2', 't1 v3', 't1 v5']);
    expect(changesHeardBy(VERSIONS, 'lakeside-consults', false)).toEqual([]);
  });

  it('webhooks: every change each recipient should hear of notified at least once; duplicates and out-of-order arrivals counted, not failed', () => {
    const arrivals = [
      hook('st-olaf', 't1', '1', 1),
      hook('st-olaf', 't1', '2', 2),
      hook('st-olaf', 't1', '5', 3),
      // v3 arrives after v5 (order is not promised), refused once while the receiver was down, then accepted twice.
      hook('st-olaf', 't1', '3', 4, { answered: 503 }),
      hook('st-olaf', 't1', '3', 5),
      hook('st-olaf', 't1', '3', 6),
      hook('st-olaf', 't2', '1', 7),
      hook('northfield-pathology', 't1', '2', 8),
      hook('northfield-pathology', 't1', '3', 9),
      hook('northfield-pathology', 't1', '5', 10),
    ];
    const found = checkWebhooks(VERSIONS, ['st-olaf', 'northfield-pathology'], arrivals, ['st-olaf']);
    expect(found).toEqual({ changes: 8, notifiedAtLeastOnce: 8, missing: [], duplicates: 1, unexpected: [], outOfOrder: 1, badSignatures: 0, refusedWhileDown: 1, received: 10 });
    expect(notificationFailures({ webhooks: found })).toEqual([]);
  });

  it('webhooks: a change only refused, or only sent with a bad signature, is missing; a bad signature and a version that is no change fail', () => {
    const found = checkWebhooks(
      VERSIONS,
      ['st-olaf'],
      [
        hook('st-olaf', 't1', '1', 1),
        hook('st-olaf', 't1', '2', 2, { answered: 0 }),
        hook('st-olaf', 't1', '3', 3),
        hook('st-olaf', 't1', '4', 4),
        hook('st-olaf', 't1', '5', 5, { signatureOk: false }),
        hook('st-olaf', 't2', '1', 6),
      ],
      ['st-olaf'],
    );
    expect(found.missing).toEqual(['st-olaf Task/t1 v2', 'st-olaf Task/t1 v5']);
    expect(found.unexpected).toEqual(['st-olaf Task/t1 v4']);
    expect(notificationFailures({ webhooks: found })).toEqual([
      'Task changes without a webhook notification (2): st-olaf Task/t1 v2, st-olaf Task/t1 v5',
      'webhook notifications of no Task change (1): st-olaf Task/t1 v4',
      'webhook notifications whose signature did not verify: 1',
    ]);
  });

  const subscriptionInput = {
    versions: VERSIONS,
    owner: OWNER,
    reader: 'northfield-pathology',
    since: 0,
    eventsSinceStart: 3,
    replay: [
      { number: 1, taskId: 't1', version: '2' },
      { number: 2, taskId: 't1', version: '3' },
      { number: 3, taskId: 't1', version: '5' },
    ],
    status: 'active',
  };

  it('the Subscription: numbered from 1 without a gap, one event per change of its Tasks; events only in $events (endpoint down) pass', () => {
    const found = checkSubscription({
      ...subscriptionInput,
      arrivals: [event('handshake', [], 0), event('event-notification', [[1, 't1', '2']], 1), event('event-notification', [[1, 't1', '2']], 2), event('event-notification', [[3, 't1', '5']], 3, 503), event('heartbeat', [], 4)],
    });
    expect(found).toMatchObject({ changes: 3, eventsSinceStart: 3, replayed: 3, gaps: [], reused: [], numberedTwice: [], missing: [], unexpected: [], delivered: 1, duplicates: 1, handshakes: 1, heartbeats: 1, refusedWhileDown: 1 });
    expect(notificationFailures({ webhooks: checkWebhooks([], [], []), subscription: found })).toEqual([]);
  });

  it('the Subscription: a gap, a number reused for another change, a change numbered twice or without an event fail', () => {
    const found = checkSubscription({
      ...subscriptionInput,
      eventsSinceStart: 4,
      replay: [
        { number: 1, taskId: 't1', version: '2' },
        { number: 3, taskId: 't1', version: '2' },
        { number: 4, taskId: 't1', version: '5' },
      ],
      arrivals: [event('event-notification', [[4, 't1', '3']], 1)],
    });
    expect(found.gaps).toEqual([2]);
    expect(notificationFailures({ webhooks: checkWebhooks([], [], []), subscription: found })).toEqual([
      'Subscription event numbers missing from $events (1): 2',
      'Subscription event numbers reused for different changes (1): event 4: Task/t1 v5, Task/t1 v3',
      'Task changes numbered as two Subscription events (1): Task/t1 v2 (events 1, 3)',
      'Task changes without a Subscription event (1): Task/t1 v3',
      '$events replayed 3 events; events-since-subscription-start says 4',
    ]);
  });

  it('the receiver being down can fail notification jobs only; the push clinic\'s server push jobs only', () => {
    const fits = (kind: string, queue: string) => FAULTS_BY_QUEUE[queue]?.(kind) ?? false;
    expect(fits('webhook-receiver-down', 'notify-webhook')).toBe(true);
    expect(fits('webhook-receiver-down', 'notify-subscription')).toBe(true);
    expect(fits('webhook-receiver-down', 'deliver-opinion')).toBe(false);
    expect(fits('clinic-push-lost-answer', 'push-record-set')).toBe(true);
    expect(fits('clinic-push-503', 'notify-webhook')).toBe(false);
    expect(fits('ehr-postback-500', 'deliver-opinion')).toBe(true);
    expect(fits('kill-replica', 'deliver-opinion')).toBe(false);
  });

  it('the verdict and the table carry the notification findings', () => {
    const webhooks = checkWebhooks(VERSIONS, ['st-olaf'], [hook('st-olaf', 't1', '1', 1)], ['st-olaf']);
    const findings = { seed: 1, referrals: 0, started: 0, completed: 0, open: [], duplicatedReferrals: [], opinionsSubmitted: 0, deliveredOnce: 0, deliveredTwice: [], lost: [], recordSetsComplete: 0, recordSetsBad: [], deadLettered: [], audits: { 'record-set reads': { audited: 0, missing: [] }, 'attachment downloads': { audited: 0, missing: [] }, 'post-backs': { audited: 0, missing: [] } }, laterRecords: { supplied: 0, reached: 0, postedAgain: 0, failures: [] }, serverErrors: [], endToEndMs: [], peakRss: {}, largestTables: [], faultsInjected: {}, crashes: [], durationMs: 0, notifications: { webhooks, subscriptionError: 'not created' } } satisfies SoakFindings;
    expect(verdict(findings).failures).toEqual([
      'Task changes without a webhook notification (4): st-olaf Task/t1 v2, st-olaf Task/t1 v3, st-olaf Task/t1 v5, st-olaf Task/t2 v1',
      'the Subscription could not be checked: not created',
    ]);
    const table = formatTable(findings);
    expect(table).toContain('| webhooks: Task changes / notified at least once / missing | 5 / 1 / 4 |');
    expect(table).toContain('| Subscription | not checked: not created |');
    expect(notificationRows(undefined)).toEqual([]);
  });
});
