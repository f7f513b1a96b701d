/**
 * The soak's fault schedule: a seeded pseudo-random generator and the list of faults it draws,
 * so the same seed always gives the same schedule (printed at the start of a run, reproduced
 * with `--seed`). Pure: no I/O, no clock.
 */

/** mulberry32: a small, fast 32-bit generator; `next()` in [0, 1). */
export function seededRandom(seed: number): { next(): number; int(min: number, max: number): number; pick<T>(items: readonly T[]): T } {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => items[Math.floor(next() * items.length)] as (typeof items)[number],
  };
}

/** Kinds of fault the soak injects. */
export type FaultKind =
  | 'ehr-read-500'
  | 'ehr-read-503'
  | 'ehr-read-timeout'
  | 'ehr-read-reset'
  | 'ehr-binary-truncated'
  | 'ehr-postback-500'
  | 'ehr-postback-503'
  | 'ehr-postback-reset'
  | 'ehr-postback-lost-answer'
  | 'kill-replica'
  | 'postgres-restart'
  | 'postgres-terminate'
  | 'webhook-receiver-down'
  | 'clinic-push-503'
  | 'clinic-push-lost-answer';

export const FAULT_KINDS: readonly FaultKind[] = [
  'ehr-read-500',
  'ehr-read-503',
  'ehr-read-timeout',
  'ehr-read-reset',
  'ehr-binary-truncated',
  'ehr-postback-500',
  'ehr-postback-503',
  'ehr-postback-reset',
  'ehr-postback-lost-answer',
  'kill-replica',
  'postgres-restart',
  'postgres-terminate',
  'webhook-receiver-down',
  'clinic-push-503',
  'clinic-push-lost-answer',
];

/** One scheduled fault: when (ms after the driver starts), what, and for how many requests (EHR faults) or which replica. */
export interface ScheduledFault {
  atMs: number;
  kind: FaultKind;
  /** EHR faults (and the push clinic's server): how many matching requests fail. */
  times?: number;
  /** kill-replica: which replica (0 or 1). */
  replica?: number;
  /** webhook-receiver-down: for how long the receiver refuses notifications (even: 503, odd: reset connections). */
  seconds?: number;
}

/** Faults that make a service process or the database go away: their window is when a 5xx or a refused connection is expected. */
export function isOutage(kind: FaultKind): boolean {
  return kind === 'kill-replica' || kind === 'postgres-restart' || kind === 'postgres-terminate';
}

/**
 * Draws `count` faults spread over `durationMs`, sorted by time. Outages are kept at least
 * `outageGapMs` apart (one replica is always meant to be up, and the database comes back
 * between two restarts); every kind appears at least once when `count` allows.
 */
export function buildSchedule(seed: number, options: { durationMs: number; count: number; outageGapMs?: number }): ScheduledFault[] {
  const random = seededRandom(seed);
  const gap = options.outageGapMs ?? 8_000;
  const kinds: FaultKind[] = [];
  for (let i = 0; i < options.count; i++) kinds.push(i < FAULT_KINDS.length ? (FAULT_KINDS[i] as FaultKind) : random.pick(FAULT_KINDS));
  // Shuffle (Fisher-Yates) so the order of kinds is random too.
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = random.int(0, i);
    [kinds[i], kinds[j]] = [kinds[j] as FaultKind, kinds[i] as FaultKind];
  }
  const faults: ScheduledFault[] = kinds.map((kind) => ({
    atMs: random.int(0, options.durationMs),
    kind,
    ...(kind === 'kill-replica' ? { replica: random.int(0, 1) } : kind === 'webhook-receiver-down' ? { seconds: random.int(4, 15) } : isOutage(kind) ? {} : { times: random.int(1, 6) }),
  }));
  faults.sort((a, b) => a.atMs - b.atMs);
  // Push outages apart so two never overlap.
  let lastOutage = -Infinity;
  for (const fault of faults) {
    if (!isOutage(fault.kind)) continue;
    if (fault.atMs - lastOutage < gap) fault.atMs = lastOutage + gap;
    lastOutage = fault.atMs;
  }
  faults.sort((a, b) => a.atMs - b.atMs);
  return faults;
}

/** One line per fault, for the log of a run. */
export function describeSchedule(faults: readonly ScheduledFault[]): string {
  return faults.map((f) => `  +${(f.atMs / 1000).toFixed(1)}s ${f.kind}${f.times ? ` x${f.times}` : ''}${f.seconds ? ` for ${f.seconds} s` : ''}${f.replica !== undefined ? ` (replica ${f.replica})` : ''}`).join('\n');
}
