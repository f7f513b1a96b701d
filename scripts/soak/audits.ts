/**
 * The audit check of a soak: every disclosure a client received, and every opinion the service
 * delivered to the referrer's EHR, must have its AuditEvent.
 *
 * - record-set reads and attachment downloads: one AuditEvent per read (never coalesced, see
 *   docs/audit.md), outcome 0, naming what was read (`Bundle/{id}`, `Binary/{sha256}`) and the
 *   request id the service answered with (`X-Request-Id`), so each read is matched to its own
 *   event (identical attachments in two referrals are one Binary).
 * - post-backs: the delivery's disclosure (subtype `disclose`, outcome 0) naming the consult
 *   note as `DocumentReference/{delivery id}`.
 */
import type { SoakTopology } from './topology.ts';

export const AUDIT_KINDS = ['record-set reads', 'attachment downloads', 'post-backs'] as const;
export type AuditKind = (typeof AUDIT_KINDS)[number];

/** What the check needs of one stored AuditEvent. */
export interface AuditSeen {
  outcome: string;
  subtype: string[];
  references: string[];
  requestIds: string[];
}

/** One disclosure that must be audited. */
export interface Disclosure {
  kind: AuditKind;
  /** `Bundle/{id}`, `Binary/{sha256}`, `DocumentReference/{delivery id}`. */
  reference: string;
  /** The `X-Request-Id` of the read's answer (reads only). */
  requestId?: string;
  /** The referral, for the failure list. */
  referral: string;
}

export type AuditCoverage = Record<AuditKind, { audited: number; missing: string[] }>;

/** Matches each disclosure to an AuditEvent. */
export function auditCoverage(events: readonly AuditSeen[], disclosures: readonly Disclosure[]): AuditCoverage {
  const byRequest = new Map<string, AuditSeen[]>();
  const byReference = new Map<string, AuditSeen[]>();
  for (const e of events) {
    if (e.outcome !== '0') continue;
    for (const id of e.requestIds) byRequest.set(id, [...(byRequest.get(id) ?? []), e]);
    for (const ref of e.references) byReference.set(ref, [...(byReference.get(ref) ?? []), e]);
  }
  const coverage = Object.fromEntries(AUDIT_KINDS.map((k) => [k, { audited: 0, missing: [] as string[] }])) as AuditCoverage;
  for (const d of disclosures) {
    const found =
      d.kind === 'post-backs'
        ? (byReference.get(d.reference) ?? []).some((e) => e.subtype.includes('disclose'))
        : d.requestId
          ? (byRequest.get(d.requestId) ?? []).some((e) => e.references.includes(d.reference))
          : false;
    if (found) coverage[d.kind].audited++;
    else coverage[d.kind].missing.push(`${d.referral} (${d.reference}${d.requestId ? `, request ${d.requestId}` : d.kind === 'post-backs' ? '' : ', no request id'})`);
  }
  return coverage;
}

/** Every AuditEvent in the soak's store, reduced to what the check needs (references and request ids only). */
export async function loadAuditEvents(topology: SoakTopology): Promise<AuditSeen[]> {
  const rows = await topology.postgres.query<{ outcome: string | null; subtype: { code?: string }[] | null; entity: { what?: { reference?: string; identifier?: { value?: string } }; type?: { code?: string } }[] | null }>(
    "SELECT content->>'outcome' AS outcome, content->'subtype' AS subtype, content->'entity' AS entity FROM resource WHERE resource_type = 'AuditEvent'",
  );
  return rows.map((r) => ({
    outcome: r.outcome ?? '',
    subtype: (r.subtype ?? []).flatMap((s) => (s.code ? [s.code] : [])),
    references: (r.entity ?? []).flatMap((e) => (e.what?.reference ? [e.what.reference] : [])),
    requestIds: (r.entity ?? []).flatMap((e) => (e.type?.code === 'XrequestId' && e.what?.identifier?.value ? [e.what.identifier.value] : [])),
  }));
}
