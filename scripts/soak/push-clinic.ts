/**
 * The soak's push clinic: a third clinic (riverside-imaging) whose record sets the service pushes
 * to its own FHIR server, a second sandbox FHIR server started by the soak (the service's client
 * there holds only the push scopes). The clinic still reads each record set from the service, as
 * the pulling clinics do. At the end, the service's pushes and what the clinic's server holds
 * (by the service's identifiers) go to push-checks.ts.
 */
import type { Bundle, Resource, ResourceType } from '@medplum/fhirtypes';
import { SYSTEM } from '../../src/fhir/constants.ts';
import { outboundScope } from '../../src/outbound/outbound-scope.ts';
import { type ExampleParticipant, outboundTo } from '../../test/support/example-network.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_PUBLIC_JWK } from '../../test/support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from '../../test/support/sandbox-ehr/server.ts';
import type { FaultRule } from '../../test/support/sandbox-ehr/faults.ts';
import { type IdentifierCounts, identifierCounts } from './identifier-index.ts';
import { checkPushes, type PushFindings, type PushRow, type RemoteCount } from './push-checks.ts';
import type { ScheduledFault } from './schedule.ts';
import type { SoakPostgres } from './topology.ts';

export const PUSH_CLINIC = 'riverside-imaging';

export interface PushClinic {
  server: SandboxEhr;
  editNetwork(byId: (id: string) => ExampleParticipant): void;
  stop(): Promise<void>;
}

export async function startPushClinic(timeoutMs = 4_000): Promise<PushClinic> {
  const server = await startSandboxEhr({
    port: 0,
    storagePort: 0,
    clients: [{ clientId: SERVICE_OUTBOUND_CLIENT_ID, jwks: { keys: [{ ...SERVICE_OUTBOUND_PUBLIC_JWK }] }, scope: outboundScope({ referrer: false, push: true }) }],
  });
  return {
    server,
    editNetwork(byId) {
      Object.assign(byId(PUSH_CLINIC), { recordSet: 'push', fhir: outboundTo(server, timeoutMs) });
    },
    stop: () => server.stop(),
  };
}

/**
 * The push clinic's server fails the next 1-6 pushes (the transaction POST that carries a record
 * set): with a 503, or by storing what was sent and dropping the answer (the retry's conditional
 * creates must find the first copies, not make second ones).
 */
export function pushServerRule(fault: ScheduledFault): FaultRule {
  const path = /^\/fhir\/R4\/?$/;
  const times = fault.times ?? 1;
  return fault.kind === 'clinic-push-503' ? { path, method: 'POST', status: 503, times } : { path, method: 'POST', dropResponse: true, times };
}

export async function gatherPushes(postgres: SoakPostgres, clinic: PushClinic): Promise<PushFindings> {
  const pushes = await postgres.query<PushRow & { task_id: string; service_request_id: string; bundle_id: string }>(
    'SELECT id, task_id, service_request_id, bundle_id, status FROM record_set_push WHERE participant_id = $1',
    [PUSH_CLINIC],
  );
  const rows: PushRow[] = pushes.map((p) => ({ id: p.id, taskId: p.task_id, serviceRequestId: p.service_request_id, bundleId: p.bundle_id, status: p.status }));
  // The clinic's Tasks whose record set was disclosed (a records-ready version in the history), as they are now.
  const disclosed = await postgres.query<{ id: string; service_request_id: string; status: string; newest: string | null }>(
    `SELECT r.id, split_part(r.content#>>'{focus,reference}', '/', 2) AS service_request_id, r.content->>'status' AS status,
            (SELECT split_part(i->'valueReference'->>'reference', '/', 2) FROM jsonb_array_elements(coalesce(r.content->'input', '[]'::jsonb)) i
              WHERE i->'valueReference'->>'reference' LIKE 'Bundle/%' LIMIT 1) AS newest
       FROM resource r WHERE r.resource_type = 'Task' AND r.content#>>'{owner,reference}' = $1
        AND EXISTS (SELECT 1 FROM resource_history h WHERE h.resource_type = 'Task' AND h.id = r.id AND h.content#>>'{businessStatus,coding,0,code}' = 'records-ready')`,
    [`Organization/${PUSH_CLINIC}`],
  );
  const indexes = new Map<string, IdentifierCounts>();
  const count = async (type: ResourceType, system: string, value: string) => {
    let counts = indexes.get(`${type} ${system}`);
    if (!counts) indexes.set(`${type} ${system}`, (counts = await identifierCounts(clinic.server.repo, type, system)));
    return counts(value);
  };
  const pushedTasks = new Set(rows.filter((r) => r.status === 'pushed').map((r) => r.taskId));
  const remote: RemoteCount[] = [];
  for (const t of disclosed) {
    remote.push({ what: `Task task-id ${t.id}`, count: await count('Task', SYSTEM.taskId, t.id), required: pushedTasks.has(t.id) });
  }
  const pushedReferrals = new Set(rows.filter((r) => r.status === 'pushed').map((r) => r.serviceRequestId));
  for (const sr of new Set(disclosed.map((t) => t.service_request_id))) {
    remote.push({ what: `ServiceRequest service-request-id ${sr}`, count: await count('ServiceRequest', SYSTEM.serviceRequestId, sr), required: pushedReferrals.has(sr) });
  }
  for (const p of rows) {
    const bundle = (await postgres.query<{ content: Bundle }>("SELECT content FROM resource WHERE resource_type = 'Bundle' AND id = $1", [p.bundleId]))[0]?.content;
    for (const entry of bundle?.entry ?? []) {
      const copy = entry.resource as Resource | undefined;
      if (!copy?.id || !['DocumentReference', 'DiagnosticReport', 'ImagingStudy'].includes(copy.resourceType)) continue;
      remote.push({ what: `${copy.resourceType} record-copy-id ${copy.id}`, count: await count(copy.resourceType as ResourceType, SYSTEM.recordCopyId, copy.id), required: p.status === 'pushed' });
    }
  }
  const ended = new Set(['completed', 'cancelled', 'rejected', 'failed', 'entered-in-error']);
  return checkPushes(
    PUSH_CLINIC,
    disclosed.map((t) => ({ taskId: t.id, ended: ended.has(t.status), ...(t.newest ? { newestBundleId: t.newest } : {}) })),
    rows,
    remote,
  );
}
