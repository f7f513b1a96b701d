/**
 * `npm run check-ehr -- <participant> [--patient Patient/<id>] [--consent Consent/<id>] [--write] [--json]`
 *
 * The connection check of one participant's EHR (src/outbound/check-ehr.ts), printed as a
 * checklist. It reads the configuration the service reads (the environment, NETWORK_FILE and
 * its keys); with --patient or --consent it reads patient data, so it opens the service's store
 * (DATABASE_URL, or the PGlite directory DATA_DIR) to record the AuditEvents first.
 *
 * Exit status: 0 when no line failed, 1 otherwise (a failed line, a bad argument, an unknown
 * participant, a configuration that cannot be read).
 */
import { parseArgs } from 'node:util';
import { OperationOutcomeError } from '@medplum/core';
import { AuditLog } from '../src/audit/audit-log.ts';
import { loadConfig } from '../src/config/config.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { loadNetwork } from '../src/network/network.ts';
import { checkEhrConnection, type CheckEhrDeps, type CheckStatus, type EhrChecklist } from '../src/outbound/check-ehr.ts';
import { outboundKeyBaseDir } from '../src/outbound/endpoints.ts';
import { openDatabase, type Database } from '../src/store/database.ts';
import { ResourceStore } from '../src/store/resource-store.ts';

const USAGE = 'usage: npm run check-ehr -- <participant> [--patient Patient/<id>] [--consent Consent/<id>] [--write] [--json]';

const MARK: Record<CheckStatus, string> = { ok: 'ok', failed: 'FAILED', skipped: 'skipped', warning: 'warning' };

/** The checklist as an integrator reads it: one numbered line per check, what was seen under it, and what to change. */
function formatChecklist(list: EhrChecklist): string {
  const out = [`Connection check of ${list.participantId}'s EHR at ${list.baseUrl}`, ''];
  list.checks.forEach((c, i) => {
    out.push(`${String(i + 1).padStart(2)}. ${MARK[c.status].padEnd(8)} ${c.title}`);
    out.push(`             ${c.observed}`);
    if (c.fix) out.push(`             -> ${c.fix}`);
  });
  const count = (s: CheckStatus) => list.checks.filter((c) => c.status === s).length;
  out.push('', `${list.ok ? 'OK' : 'FAILED'}: ${count('ok')} ok, ${count('warning')} warning, ${count('skipped')} skipped, ${count('failed')} failed`);
  return out.join('\n');
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({ allowPositionals: true, options: { patient: { type: 'string' }, consent: { type: 'string' }, write: { type: 'boolean' }, json: { type: 'boolean' } } });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 1;
  }
  const [participantId, ...extra] = args.positionals;
  if (!participantId || extra.length > 0) {
    process.stderr.write(`${USAGE}\n`);
    return 1;
  }
  const config = loadConfig(process.env);
  const network = await loadNetwork(config.networkFile);
  const readsPatientData = args.values.patient !== undefined || args.values.consent !== undefined;
  let database: Database | undefined;
  try {
    let audit: CheckEhrDeps['audit'] = {
      record: () => Promise.reject(new Error('the check audits only when given a patient or a consent')),
    };
    if (readsPatientData) {
      // Reads of patient data leave AuditEvents in the service's store, as the service's own reads do.
      database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: 2 });
      await database.migrate();
      audit = new AuditLog({ store: new ResourceStore(database.db, createValidator()), network, now: () => new Date(), publicUrl: config.publicUrl });
    }
    const list = await checkEhrConnection(
      { participantId },
      { participantId, ...(args.values.patient !== undefined ? { patient: args.values.patient } : {}), ...(args.values.consent !== undefined ? { consent: args.values.consent } : {}), write: args.values.write ?? false },
      { network, keyBaseDir: outboundKeyBaseDir(config.networkFile), audit, maxAttachmentBytes: config.maxAttachmentBytes, door: 'npm run check-ehr' },
    );
    process.stdout.write(`${args.values.json ? JSON.stringify(list, null, 2) : formatChecklist(list)}\n`);
    return list.ok ? 0 : 1;
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      const issue = err.outcome.issue?.[0];
      const text = issue?.details?.text ?? issue?.diagnostics ?? 'refused';
      process.stderr.write(`${issue?.code === 'not-found' && text === 'Not found' ? `No participant "${participantId}" in the network file` : text}\n`);
      return 1;
    }
    throw err;
  } finally {
    await database?.close();
  }
}

try {
  process.exitCode = await main();
} catch (err) {
  // Configuration and network-file errors name what to change; anything else by its class only.
  const message = err instanceof Error && (err.name === 'ConfigError' || err.name === 'NetworkFileError') ? err.message : `check-ehr failed: ${err instanceof Error ? err.name : 'error'}`;
  process.stderr.write(`${message}\n`);
  process.exitCode = 1;
}
