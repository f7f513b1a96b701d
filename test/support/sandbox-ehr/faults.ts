/**
 * Fault switch of the sandbox EHR: make requests whose path matches a pattern fail the way real
 * EHRs and object stores do, so flow tests can exercise retries, timeouts and integrity checks.
 *
 *   ehr.faults.add({ path: /\/Binary\//, status: 500, times: 3 }); // 3 × 500, then normal again
 *   ehr.faults.add({ path: '/fhir/R4/DocumentReference', delayMs: 5_000 });
 *   ehr.faults.add({ path: /\/Binary\/bin-op-note/, corruptBytes: true });
 *   ehr.faults.add({ path: '/fhir/R4/DocumentReference', method: 'POST', beforeResponse: () => killClient() });
 *   ehr.faults.add({ path: /^\/fhir\/R4\/?$/, method: 'POST', dropResponse: true, times: 1 }); // stored, answer lost
 *   ehr.faults.clear();
 */

/** One fault rule. Exactly one effect is expected per rule (status, delayMs, resetConnection, corruptBytes, wrongLength, beforeResponse or dropResponse). */
export interface FaultRule {
  /** Matched against the request path including the query (`/fhir/R4/Binary/x?...`): a string where it occurs anywhere, a RegExp when it tests true. */
  path: RegExp | string;
  /** Only this HTTP method (default: any). */
  method?: string;
  /** Answer with this HTTP status and an OperationOutcome instead of the real response. */
  status?: number;
  /** With `status`: answer this JSON body instead of the default OperationOutcome (an error body that quotes the request, as some servers' do). */
  body?: unknown;
  /** With `status`: extra response headers (e.g. `{ 'retry-after': '2' }`). */
  headers?: Record<string, string>;
  /** Wait this long before answering normally (longer than a client timeout simulates a hang). */
  delayMs?: number;
  /** Destroy the TCP connection without any response (ECONNRESET / "socket hang up"). */
  resetConnection?: boolean;
  /** Serve attachment bytes with one byte flipped: same length, so only the declared `hash` disagrees. */
  corruptBytes?: boolean;
  /** Serve only the first half of the attachment bytes (with a Content-Length that matches what is sent), so the declared `size` disagrees. */
  wrongLength?: boolean;
  /**
   * Called after the request was handled normally (a create or update is already stored) and
   * before its response is sent; the response waits for the returned promise, and is not sent
   * at all when the connection is gone by then. Opens the window "the EHR did the work, the
   * client does not know it yet": a test can kill the client's process there, or make the
   * client time out. Unlike `delayMs`, which waits before the request is handled.
   */
  beforeResponse?: () => Promise<void> | void;
  /**
   * Handle the request normally (a create or a transaction is stored), then destroy the
   * connection without answering: the work is done and the client never hears of it (a lost
   * response, as when a proxy or the network fails after the server committed).
   */
  dropResponse?: boolean;
  /** How many matching requests the rule affects before it stops (default: unlimited). */
  times?: number;
}

/** A rule as stored: `hits` counts the requests it has affected. */
export interface ActiveFault extends FaultRule {
  hits: number;
}

/** The fault switch handed to tests as `ehr.faults`. */
export interface FaultSwitch {
  /** Adds a rule; rules are tried in the order added, the first matching one applies. */
  add(rule: FaultRule): ActiveFault;
  /** Removes one rule. */
  remove(rule: ActiveFault): void;
  /** Removes every rule (call in `afterEach`). */
  clear(): void;
  /** The rules in force. */
  readonly rules: readonly ActiveFault[];
  /**
   * Finds the rule for this request and counts it as a hit (used by the sandbox's servers).
   * Exhausted rules (hits === times) no longer match.
   */
  take(method: string, path: string): ActiveFault | undefined;
}

/** A string pattern matches when the path contains it; a RegExp when it tests true. */
export function pathMatches(pattern: RegExp | string, path: string): boolean {
  return typeof pattern === 'string' ? path.includes(pattern) : pattern.test(path);
}

/** Creates an empty fault switch. */
export function createFaultSwitch(): FaultSwitch {
  const rules: ActiveFault[] = [];
  return {
    rules,
    add(rule) {
      const active: ActiveFault = { ...rule, hits: 0 };
      rules.push(active);
      return active;
    },
    remove(rule) {
      const i = rules.indexOf(rule);
      if (i >= 0) rules.splice(i, 1);
    },
    clear() {
      rules.length = 0;
    },
    take(method, path) {
      const rule = rules.find(
        (r) => (r.times === undefined || r.hits < r.times) && (!r.method || r.method.toUpperCase() === method) && pathMatches(r.path, path),
      );
      if (rule) rule.hits++;
      return rule;
    },
  };
}

/** Applies the byte-level faults (corruptBytes, wrongLength) to an attachment's bytes. */
export function applyByteFault(bytes: Buffer, fault: ActiveFault | undefined): Buffer {
  if (fault?.corruptBytes) {
    const copy = Buffer.from(bytes);
    const i = Math.floor(copy.length / 2);
    copy[i] = (copy[i] ?? 0) ^ 0xff;
    return copy;
  }
  if (fault?.wrongLength) return bytes.subarray(0, Math.floor(bytes.length / 2));
  return bytes;
}
