/**
 * Injects the scheduled faults at their times and records when each was in force (its window),
 * so a 5xx seen by a client or a dead-lettered job can be put down to one of them.
 */
import type { ActiveFault, FaultRule } from '../../test/support/sandbox-ehr/faults.ts';
import { type NotificationReceiver, receiverDown } from './notifications.ts';
import { type PushClinic, pushServerRule } from './push-clinic.ts';
import type { ScheduledFault } from './schedule.ts';
import type { SoakTopology } from './topology.ts';

/** A fault as it happened: from `start` until `end` (set when it is over). */
export interface FaultWindow {
  kind: ScheduledFault['kind'];
  start: number;
  end?: number;
  detail?: string;
  /** kill-replica: the replica killed. */
  replica?: number;
  /** A fault that answers every matching request until it is cleared (none of the schedule's EHR faults: they fail 1-6 requests). */
  permanent?: boolean;
}

const READ = /^\/fhir\/R4\/(DocumentReference|Patient|Consent|Binary)/;
const BINARY = /\/Binary\//;
const POSTBACK = /^\/fhir\/R4\/(DocumentReference|Communication)(\?|$)/;

/** What each EHR fault does to the requests it matches (the schedule says how many: `times`). */
const EHR_RULES: Partial<Record<ScheduledFault['kind'], Omit<FaultRule, 'times'>>> = {
  'ehr-read-500': { path: READ, method: 'GET', status: 500 },
  'ehr-read-503': { path: READ, method: 'GET', status: 503, headers: { 'retry-after': '1' } },
  'ehr-read-timeout': { path: READ, method: 'GET', delayMs: 6_000 },
  'ehr-read-reset': { path: READ, method: 'GET', resetConnection: true },
  'ehr-binary-truncated': { path: BINARY, method: 'GET', wrongLength: true },
  'ehr-postback-500': { path: POSTBACK, method: 'POST', status: 500 },
  'ehr-postback-503': { path: POSTBACK, method: 'POST', status: 503 },
  'ehr-postback-reset': { path: POSTBACK, method: 'POST', resetConnection: true },
  'ehr-postback-lost-answer': { path: POSTBACK, method: 'POST', dropResponse: true },
};

function ehrRule(fault: ScheduledFault): FaultRule {
  const rule = EHR_RULES[fault.kind];
  if (!rule) throw new Error(`not an EHR fault: ${fault.kind}`);
  return { ...rule, times: fault.times ?? 1 };
}

/**
 * Runs the schedule from now on. `finish()` waits for every fault still due (so a fast run gets
 * the whole schedule too), then clears the EHR's rules; `stop()` skips the faults not yet due.
 */
export function runSchedule(
  topology: SoakTopology,
  schedule: readonly ScheduledFault[],
  log: (line: string) => void,
  options: { receiver?: NotificationReceiver; pushClinic?: PushClinic } = {},
): { windows: FaultWindow[]; finish(): Promise<void>; stop(): Promise<void> } {
  const windows: FaultWindow[] = [];
  const t0 = Date.now();
  let stopped = false;
  const pending: Promise<void>[] = [];
  const stopPending: (() => void)[] = [];
  const ehrRules: { rule: ActiveFault; window: FaultWindow }[] = [];
  const watcher = setInterval(() => {
    for (const { rule, window } of ehrRules) if (window.end === undefined && rule.times !== undefined && rule.hits >= rule.times) window.end = Date.now() + 6_000;
  }, 250);

  const inject = async (fault: ScheduledFault) => {
    const window: FaultWindow = { kind: fault.kind, start: Date.now() };
    windows.push(window);
    log(`fault +${((Date.now() - t0) / 1000).toFixed(1)}s ${fault.kind}${fault.times ? ` x${fault.times}` : ''}${fault.seconds ? ` for ${fault.seconds} s` : ''}${fault.replica !== undefined ? ` replica ${fault.replica}` : ''}`);
    if (fault.kind === 'kill-replica') {
      window.replica = fault.replica === 1 ? 1 : 0;
      const replica = topology.replicas[fault.replica === 1 ? 1 : 0];
      const proc = replica.current;
      replica.killing = true;
      try {
        proc?.kill('SIGKILL');
        await proc?.exit;
        await new Promise((r) => setTimeout(r, 2_000));
        replica.restarts++;
        await topology.startReplica(replica);
      } finally {
        replica.killing = false;
      }
      window.end = Date.now() + 5_000;
    } else if (fault.kind === 'postgres-restart') {
      await topology.postgres.restart();
      window.end = Date.now() + 10_000;
    } else if (fault.kind === 'postgres-terminate') {
      window.detail = `${await topology.postgres.terminateConnections()} connections`;
      window.end = Date.now() + 10_000;
    } else if (fault.kind === 'webhook-receiver-down') {
      await receiverDown(options.receiver, fault, window);
    } else if (fault.kind === 'clinic-push-503' || fault.kind === 'clinic-push-lost-answer') {
      if (options.pushClinic) ehrRules.push({ rule: options.pushClinic.server.faults.add(pushServerRule(fault)), window });
      else window.end = Date.now();
    } else {
      ehrRules.push({ rule: topology.ehr.faults.add(ehrRule(fault)), window });
    }
  };

  for (const fault of schedule) {
    pending.push(
      new Promise<void>((resolve) => {
        let fired = false;
        const timer = setTimeout(() => {
          fired = true;
          if (stopped) return resolve();
          inject(fault).then(resolve, (err: Error) => {
            log(`fault ${fault.kind} failed to inject: ${err.message}`);
            resolve();
          });
        }, fault.atMs);
        timer.unref();
        stopPending.push(() => {
          if (fired) return;
          clearTimeout(timer);
          resolve();
        });
      }),
    );
  }
  const end = async () => {
    await Promise.all(pending);
    clearInterval(watcher);
    topology.ehr.faults.clear();
    options.pushClinic?.server.faults.clear();
    for (const w of windows) w.end ??= Date.now() + 6_000;
  };
  return {
    windows,
    finish: end,
    async stop() {
      stopped = true;
      for (const cancel of stopPending) cancel();
      await end();
    },
  };
}
