/**
 * The soak's notification checks. Pure: given the Task versions the service stored, the
 * webhook POSTs and Subscription notifications the soak's receiver got, and what `$events`
 * replays at the end, says what was notified, what is missing and what broke a promise.
 *
 * Webhooks promise at least once per Task change (its creation, and every version whose status
 * or business status differs from the one before), unordered: duplicates are allowed (counted)
 * and arrivals out of `taskVersion` order are information. A FHIR Subscription (R5 Backport)
 * promises event numbers from 1 with no gap, one per change: a gap, a number reused for two
 * different changes, or a change with no event fails; every event must be replayable with
 * `$events` at the end, even one whose notification the endpoint never acknowledged.
 */

/** One stored Task version (from `resource_history`). */
export interface TaskVersion {
  taskId: string;
  version: number;
  status: string;
  businessStatus: string;
  /** Participants that may read this version. */
  access: readonly string[];
  /** `Task.owner.reference`. */
  owner?: string;
  lastUpdated: number;
}

/** One webhook POST as the receiver got it. */
export interface WebhookArrival {
  /** The participant whose URL it was posted to. */
  participant: string;
  webhookId: string;
  taskId: string;
  taskVersion: string;
  status: string;
  businessStatus: string;
  at: number;
  signatureOk: boolean;
  /** What the receiver answered (503, or 0 for a reset connection, while it was down). */
  answered: number;
}

/** One event as a notification Bundle or `$events` carried it. */
export interface SubscriptionEventSeen {
  number: number;
  taskId: string;
  version: string;
}

/** One Subscription notification Bundle as the receiver got it. */
export interface SubscriptionArrival {
  bundleId: string;
  type: string;
  events: SubscriptionEventSeen[];
  at: number;
  answered: number;
  /** The `channel.header` the Subscription asked for was sent. */
  headerOk: boolean;
}

/** Key of one Task change: `Task/{id} v{version}`. */
export const changeKey = (taskId: string, version: number | string) => `Task/${taskId} v${version}`;

/** The versions that are changes: the first of each Task, and each whose status or business status differs from the version before. */
export function taskChanges(versions: readonly TaskVersion[]): TaskVersion[] {
  const byTask = new Map<string, TaskVersion[]>();
  for (const v of versions) byTask.set(v.taskId, [...(byTask.get(v.taskId) ?? []), v]);
  const changes: TaskVersion[] = [];
  for (const list of byTask.values()) {
    list.sort((a, b) => a.version - b.version);
    let previous: TaskVersion | undefined;
    for (const v of list) {
      if (!previous || previous.status !== v.status || previous.businessStatus !== v.businessStatus) changes.push(v);
      previous = v;
    }
  }
  return changes;
}

/**
 * The changes `participant` should hear of: those of Tasks it may read, and for a consulting
 * clinic (not a `fromCreation` participant) only from its admission on. A clinic is admitted in
 * the transaction that discloses the record set to it (the Task's first `records-ready`
 * version); the store then lets it read every earlier version too, so the history's access
 * lists do not say when it could first read the Task.
 */
export function changesHeardBy(versions: readonly TaskVersion[], participant: string, fromCreation: boolean): TaskVersion[] {
  const admitted = new Map<string, number>();
  if (!fromCreation) {
    for (const v of versions) {
      if (v.businessStatus !== 'records-ready' || !v.access.includes(participant)) continue;
      admitted.set(v.taskId, Math.min(admitted.get(v.taskId) ?? Infinity, v.version));
    }
  }
  return taskChanges(versions).filter((v) => v.access.includes(participant) && (fromCreation || v.version >= (admitted.get(v.taskId) ?? Infinity)));
}

export interface WebhookFindings {
  /** Task changes each recipient may read (one per recipient and change). */
  changes: number;
  notifiedAtLeastOnce: number;
  /** Changes no accepted (2xx, signed) POST announced: `participant Task/id vN`. */
  missing: string[];
  /** Accepted POSTs beyond the first per change (a retry after a lost answer: allowed). */
  duplicates: number;
  /** Accepted POSTs naming a version that is no change the recipient may read. */
  unexpected: string[];
  /** First arrivals of a change after a later version of the same Task had arrived (order is not promised). */
  outOfOrder: number;
  /** POSTs whose Standard Webhooks signature did not verify. */
  badSignatures: number;
  /** POSTs the receiver refused while it was down (503 or reset). */
  refusedWhileDown: number;
  received: number;
}

/** Every change each recipient should hear of against the webhooks it accepted; `referrers` hear of their Tasks from creation, the other recipients (clinics) from their admission. */
export function checkWebhooks(versions: readonly TaskVersion[], recipients: readonly string[], arrivals: readonly WebhookArrival[], referrers: readonly string[] = []): WebhookFindings {
  const expected = new Set<string>();
  for (const p of recipients) for (const v of changesHeardBy(versions, p, referrers.includes(p))) expected.add(`${p} ${changeKey(v.taskId, v.version)}`);
  const seen = new Set<string>();
  const unexpected: string[] = [];
  const latest = new Map<string, number>();
  let duplicates = 0;
  let outOfOrder = 0;
  const sorted = [...arrivals].sort((a, b) => a.at - b.at);
  for (const a of sorted) {
    if (!a.signatureOk || a.answered < 200 || a.answered > 299) continue;
    const key = `${a.participant} ${changeKey(a.taskId, a.taskVersion)}`;
    if (seen.has(key)) {
      duplicates++;
      continue;
    }
    seen.add(key);
    if (!expected.has(key)) unexpected.push(key);
    const task = `${a.participant} ${a.taskId}`;
    const version = Number(a.taskVersion);
    if ((latest.get(task) ?? 0) > version) outOfOrder++;
    latest.set(task, Math.max(latest.get(task) ?? 0, version));
  }
  const missing = [...expected].filter((k) => !seen.has(k));
  return {
    changes: expected.size,
    notifiedAtLeastOnce: expected.size - missing.length,
    missing,
    duplicates,
    unexpected,
    outOfOrder,
    badSignatures: arrivals.filter((a) => !a.signatureOk).length,
    refusedWhileDown: arrivals.filter((a) => a.answered < 200 || a.answered > 299).length,
    received: arrivals.length,
  };
}

export interface SubscriptionFindings {
  /** Task changes the Subscription's filter and reader match, made after it was created. */
  changes: number;
  /** `events-since-subscription-start` at the end. */
  eventsSinceStart: number;
  /** Events `$events` replayed at the end. */
  replayed: number;
  /** Event numbers from 1 to `eventsSinceStart` that `$events` did not return. */
  gaps: number[];
  /** Event numbers seen for two different changes (in notifications or `$events`). */
  reused: string[];
  /** Changes numbered more than once. */
  numberedTwice: string[];
  /** Changes with no event in `$events`. */
  missing: string[];
  /** Events about a version that is no matching change. */
  unexpected: string[];
  /** Distinct event numbers the endpoint acknowledged (the rest are only in `$events`, allowed). */
  delivered: number;
  /** Event notifications acknowledged beyond the first per event number (retries: allowed). */
  duplicates: number;
  handshakes: number;
  heartbeats: number;
  /** Notifications the receiver refused while it was down. */
  refusedWhileDown: number;
  /** Notifications without the `channel.header` the Subscription asked for. */
  badHeaders: number;
  /** The Subscription's status at the end. */
  status: string;
}

/** The Subscription's events (notifications and the `$events` replay) against the Task changes it should have heard. */
export function checkSubscription(input: {
  versions: readonly TaskVersion[];
  /** Only changes of Tasks with this owner that this clinic may read (from its admission), from `since` on. */
  owner: string;
  reader: string;
  since: number;
  eventsSinceStart: number;
  replay: readonly SubscriptionEventSeen[];
  arrivals: readonly SubscriptionArrival[];
  status: string;
}): SubscriptionFindings {
  const expected = new Set(
    changesHeardBy(input.versions, input.reader, false)
      .filter((v) => v.owner === input.owner && v.lastUpdated >= input.since)
      .map((v) => changeKey(v.taskId, v.version)),
  );
  const byNumber = new Map<number, Set<string>>();
  const note = (e: SubscriptionEventSeen) => byNumber.set(e.number, (byNumber.get(e.number) ?? new Set()).add(changeKey(e.taskId, e.version)));
  for (const e of input.replay) note(e);
  const accepted = input.arrivals.filter((a) => a.answered >= 200 && a.answered <= 299);
  const delivered = new Set<number>();
  let duplicates = 0;
  for (const a of accepted) {
    if (a.type !== 'event-notification') continue;
    for (const e of a.events) {
      note(e);
      if (delivered.has(e.number)) duplicates++;
      delivered.add(e.number);
    }
  }
  const replayedNumbers = new Set(input.replay.map((e) => e.number));
  const gaps: number[] = [];
  for (let n = 1; n <= input.eventsSinceStart; n++) if (!replayedNumbers.has(n)) gaps.push(n);
  const reused = [...byNumber].filter(([, keys]) => keys.size > 1).map(([n, keys]) => `event ${n}: ${[...keys].join(', ')}`);
  const numbersOf = new Map<string, Set<number>>();
  for (const e of input.replay) numbersOf.set(changeKey(e.taskId, e.version), (numbersOf.get(changeKey(e.taskId, e.version)) ?? new Set()).add(e.number));
  const numberedTwice = [...numbersOf].filter(([, ns]) => ns.size > 1).map(([k, ns]) => `${k} (events ${[...ns].sort((a, b) => a - b).join(', ')})`);
  return {
    changes: expected.size,
    eventsSinceStart: input.eventsSinceStart,
    replayed: replayedNumbers.size,
    gaps,
    reused,
    numberedTwice,
    missing: [...expected].filter((k) => !numbersOf.has(k)),
    unexpected: [...numbersOf.keys()].filter((k) => !expected.has(k)),
    delivered: delivered.size,
    duplicates,
    handshakes: accepted.filter((a) => a.type === 'handshake').length,
    heartbeats: accepted.filter((a) => a.type === 'heartbeat').length,
    refusedWhileDown: input.arrivals.length - accepted.length,
    badHeaders: input.arrivals.filter((a) => !a.headerOk).length,
    status: input.status,
  };
}

/** What the soak found about notifications (absent when the run had no receiver). */
export interface NotificationFindings {
  webhooks: WebhookFindings;
  subscription?: SubscriptionFindings;
  /** Why the Subscription could not be checked (it was not created, `$events` failed...). */
  subscriptionError?: string;
}

const few = (items: readonly string[]) => `${items.slice(0, 20).join(', ')}${items.length > 20 ? `, … ${items.length - 20} more` : ''}`;

/** Why the notifications fail the run (none: they pass). */
export function notificationFailures(n: NotificationFindings | undefined): string[] {
  if (!n) return [];
  const failures: string[] = [];
  const w = n.webhooks;
  if (w.missing.length) failures.push(`Task changes without a webhook notification (${w.missing.length}): ${few(w.missing)}`);
  if (w.unexpected.length) failures.push(`webhook notifications of no Task change (${w.unexpected.length}): ${few(w.unexpected)}`);
  if (w.badSignatures) failures.push(`webhook notifications whose signature did not verify: ${w.badSignatures}`);
  if (n.subscriptionError) failures.push(`the Subscription could not be checked: ${n.subscriptionError}`);
  const s = n.subscription;
  if (s) {
    if (s.gaps.length) failures.push(`Subscription event numbers missing from $events (${s.gaps.length}): ${few(s.gaps.map(String))}`);
    if (s.reused.length) failures.push(`Subscription event numbers reused for different changes (${s.reused.length}): ${few(s.reused)}`);
    if (s.numberedTwice.length) failures.push(`Task changes numbered as two Subscription events (${s.numberedTwice.length}): ${few(s.numberedTwice)}`);
    if (s.missing.length) failures.push(`Task changes without a Subscription event (${s.missing.length}): ${few(s.missing)}`);
    if (s.unexpected.length) failures.push(`Subscription events of no matching Task change (${s.unexpected.length}): ${few(s.unexpected)}`);
    if (s.replayed !== s.eventsSinceStart) failures.push(`$events replayed ${s.replayed} events; events-since-subscription-start says ${s.eventsSinceStart}`);
    if (s.badHeaders) failures.push(`Subscription notifications without the channel header: ${s.badHeaders}`);
  }
  return failures;
}

/** The table rows about notifications. */
export function notificationRows(n: NotificationFindings | undefined): [string, string][] {
  if (!n) return [];
  const w = n.webhooks;
  const rows: [string, string][] = [
    ['webhooks: Task changes / notified at least once / missing', `${w.changes} / ${w.notifiedAtLeastOnce} / ${w.missing.length}`],
    [
      'webhooks: POSTs received / duplicates (allowed) / out of order (allowed) / refused while down / bad signatures',
      `${w.received} / ${w.duplicates} / ${w.outOfOrder} / ${w.refusedWhileDown} / ${w.badSignatures}`,
    ],
  ];
  const s = n.subscription;
  if (s) {
    rows.push(
      ['Subscription: Task changes / events numbered / replayed by $events / gaps / reused', `${s.changes} / ${s.eventsSinceStart} / ${s.replayed} / ${s.gaps.length} / ${s.reused.length}`],
      [
        'Subscription: events delivered / duplicates (allowed) / refused while down / handshakes / heartbeats / status at the end',
        `${s.delivered} / ${s.duplicates} / ${s.refusedWhileDown} / ${s.handshakes} / ${s.heartbeats} / ${s.status}`,
      ],
    );
  } else rows.push(['Subscription', `not checked: ${n.subscriptionError ?? 'none created'}`]);
  return rows;
}
