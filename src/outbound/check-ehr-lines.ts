/** The connection check's vocabulary, shared by the use case (check-ehr.ts) and its checks (check-ehr-auth.ts, check-ehr-data.ts). */

export type CheckStatus = 'ok' | 'failed' | 'skipped' | 'warning';

export type CheckId = 'capability-statement' | 'smart-configuration' | 'token' | 'scopes' | 'document-search' | 'attachment' | 'consent' | 'write';

/** One line of the checklist. */
export interface CheckLine {
  id: CheckId;
  /** What was tried, e.g. `CapabilityStatement (GET [base]/metadata)`. */
  title: string;
  status: CheckStatus;
  /** What was seen: statuses, versions, counts, sizes, references. Never PHI. */
  observed: string;
  /** What to change (network file or EHR) when the line failed or warns. */
  fix?: string;
}

/**
 * Who runs the check, recorded as the agent of the AuditEvents of its reads: an admin's caller
 * (the route), or the checked participant itself (the CLI, no client).
 */
export interface CheckCaller {
  participantId: string;
  clientId?: string;
  requestId?: string;
}
