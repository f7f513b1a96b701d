/**
 * The arguments of `npm run audit:export` (src/cli/audit-export.ts), checked before anything is
 * opened: DATE must be a date (YYYY-MM-DD, UTC midnight) or an ISO timestamp with its zone, not
 * in the future, and not newer than now minus the retention unless `--force`.
 */
import { parseArgs } from 'node:util';
import { describeRetention, retentionCutoff, type AuditRetention } from './audit-archive.ts';

export const AUDIT_EXPORT_USAGE = `usage: npm run audit:export -- --before DATE [--out FILE] [--force] [--batch N]
   or: node dist/cli/audit-export.js --before DATE [...]   (the compiled build, e.g. in the container)

Writes the AuditEvents last written before DATE to FILE as NDJSON (one FHIR AuditEvent per
line, oldest first), then deletes them from the store, batch by batch, each batch only once
it is fsync'd. Safe to stop and to run again with the same FILE: it continues where it
stopped and writes no line twice.

  --before DATE  YYYY-MM-DD (midnight UTC) or an ISO timestamp with a zone (2020-12-07T00:00:00Z);
                 at most now minus the audit retention (AUDIT_RETENTION_YEARS / _DAYS)
  --out FILE     the archive (appended to when it exists); default audit-events-before-DATE.ndjson
  --force        allow a DATE within the retention (never one in the future)
  --batch N      AuditEvents per batch (default 500)
`;

export interface AuditExportArgs {
  before: Date;
  out: string;
  batchSize: number;
  force: boolean;
}

export type ParsedExportArgs = { ok: true; args: AuditExportArgs } | { ok: false; help: boolean; error?: string };

const DAY = /^\d{4}-\d{2}-\d{2}$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

export function parseExportArgs(argv: readonly string[], now: Date, retention: AuditRetention): ParsedExportArgs {
  let values: { before?: string; out?: string; force?: boolean; batch?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { before: { type: 'string' }, out: { type: 'string' }, force: { type: 'boolean' }, batch: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return { ok: false, help: false, error: (err as Error).message };
  }
  if (values.help) return { ok: false, help: true };
  if (!values.before) return { ok: false, help: false, error: '--before DATE is required' };
  const raw = values.before;
  const before = DAY.test(raw) ? new Date(`${raw}T00:00:00Z`) : TIMESTAMP.test(raw) ? new Date(raw) : new Date(Number.NaN);
  if (Number.isNaN(before.getTime())) return { ok: false, help: false, error: `--before: not a date (YYYY-MM-DD or an ISO timestamp with a zone): ${JSON.stringify(raw.slice(0, 40))}` };
  if (before.getTime() > now.getTime()) return { ok: false, help: false, error: `--before ${raw} is in the future` };
  const cutoff = retentionCutoff(now, retention);
  if (before.getTime() > cutoff.getTime() && !values.force) {
    return {
      ok: false,
      help: false,
      error: `--before ${raw} is within the audit retention (${describeRetention(retention)}: AuditEvents since ${cutoff.toISOString()} are kept); use a DATE up to ${cutoff.toISOString().slice(0, 10)}, or --force`,
    };
  }
  const batchSize = values.batch === undefined ? 500 : Number(values.batch);
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) return { ok: false, help: false, error: '--batch: a whole number from 1 to 10000' };
  return { ok: true, args: { before, out: values.out ?? `audit-events-before-${raw.replace(/[:]/g, '')}.ndjson`, batchSize, force: values.force === true } };
}
