/**
 * The soak's check of the push clinic: a clinic whose record sets the service pushes to its own
 * FHIR server (`recordSet: "push"`). Pure: given the pushes the service recorded, the Tasks it
 * disclosed to the clinic, and how many copies of each pushed resource the clinic's server holds
 * (found by the service's identifiers), says what is missing and what arrived twice.
 *
 * Every disclosure is pushed: each disclosed Task has a push that reached `pushed`, unless its
 * pushes were `superseded` because the Task ended (or a newer record set replaced it) before
 * one went out, as the service documents; none is left `pending` or `failed`. Every resource of
 * a pushed record set, every Task and every referral pushed exists exactly once on the clinic's
 * server (conditional creates on the service's identifiers: a retry or a re-drive finds the
 * first copy); a superseded one at most once (an attempt whose answer was lost may have stored it).
 */

export interface PushRow {
  id: string;
  taskId: string;
  serviceRequestId: string;
  bundleId: string;
  status: string;
}

/** How many resources the clinic's server holds under one of the service's identifiers. */
export interface RemoteCount {
  /** e.g. `DocumentReference record-copy-id 1f…`, `Task task-id 3a…`. */
  what: string;
  count: number;
  /** It must be there (pushed); otherwise at most one copy may be. */
  required: boolean;
}

/** A Task of the clinic whose record set was disclosed, as it is at the end. */
export interface DisclosedTask {
  taskId: string;
  /** Its status is terminal (completed, rejected, cancelled, failed). */
  ended: boolean;
  /** The record-set Bundle its `input` names now. */
  newestBundleId?: string;
}

export interface PushFindings {
  clinic: string;
  /** Tasks of the clinic whose record set was disclosed (records-ready). */
  disclosed: number;
  byStatus: Record<string, number>;
  /** Disclosed Tasks without a push that reached `pushed`, and not excused by their Task ending first. */
  notPushed: string[];
  /** Disclosed Tasks whose pushes were all superseded because the Task ended or a newer record set replaced them before one went out (allowed). */
  endedFirst: number;
  /** Pushes left pending or failed. */
  unfinished: string[];
  /** Resources of pushed record sets, Tasks and referrals checked on the clinic's server. */
  copies: number;
  duplicated: string[];
  missing: string[];
}

export function checkPushes(clinic: string, disclosed: readonly DisclosedTask[], pushes: readonly PushRow[], remote: readonly RemoteCount[]): PushFindings {
  const byStatus: Record<string, number> = {};
  for (const p of pushes) byStatus[p.status] = (byStatus[p.status] ?? 0) + 1;
  const pushedTasks = new Set(pushes.filter((p) => p.status === 'pushed').map((p) => p.taskId));
  const excused = (t: DisclosedTask) => {
    const own = pushes.filter((p) => p.taskId === t.taskId);
    return own.length > 0 && own.every((p) => p.status === 'superseded') && (t.ended || own.every((p) => p.bundleId !== t.newestBundleId));
  };
  const unpushed = disclosed.filter((t) => !pushedTasks.has(t.taskId));
  return {
    clinic,
    disclosed: disclosed.length,
    byStatus,
    notPushed: unpushed.filter((t) => !excused(t)).map((t) => `Task/${t.taskId}`),
    endedFirst: unpushed.filter(excused).length,
    unfinished: pushes.filter((p) => p.status === 'pending' || p.status === 'failed').map((p) => `push ${p.id} of Task/${p.taskId} (${p.status})`),
    copies: remote.length,
    duplicated: remote.filter((r) => r.count > 1).map((r) => `${r.what} (${r.count} copies)`),
    missing: remote.filter((r) => r.required && r.count === 0).map((r) => r.what),
  };
}

const few = (items: readonly string[]) => `${items.slice(0, 20).join(', ')}${items.length > 20 ? `, … ${items.length - 20} more` : ''}`;

export function pushFailures(p: PushFindings | undefined): string[] {
  if (!p) return [];
  const failures: string[] = [];
  if (p.notPushed.length) failures.push(`record sets disclosed to ${p.clinic} and never pushed (${p.notPushed.length}): ${few(p.notPushed)}`);
  if (p.unfinished.length) failures.push(`record-set pushes left pending or failed (${p.unfinished.length}): ${few(p.unfinished)}`);
  if (p.duplicated.length) failures.push(`resources pushed twice to ${p.clinic}'s server (${p.duplicated.length}): ${few(p.duplicated)}`);
  if (p.missing.length) failures.push(`pushed resources missing on ${p.clinic}'s server (${p.missing.length}): ${few(p.missing)}`);
  return failures;
}

export function pushRows(p: PushFindings | undefined): [string, string][] {
  if (!p) return [];
  const statuses = Object.entries(p.byStatus)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    [
      `push clinic (${p.clinic}): record sets disclosed / not pushed / Task ended first (allowed) / pushes by status`,
      `${p.disclosed} / ${p.notPushed.length} / ${p.endedFirst} / ${statuses || 'none'}`,
    ],
    [`push clinic: copies on its server checked / duplicated / missing`, `${p.copies} / ${p.duplicated.length} / ${p.missing.length}`],
  ];
}
