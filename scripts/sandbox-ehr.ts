/**
 * `npm run sandbox`: starts the sandbox EHR (a synthetic referring EHR, see
 * test/support/sandbox-ehr/server.ts) on 127.0.0.1:8090 (SANDBOX_PORT; the storage origin on
 * SANDBOX_STORAGE_PORT, default 8091), so the service's example network (participant `st-olaf`)
 * can pull records from it. Stops on SIGINT/SIGTERM. It is as strict as a hospital's server
 * (its own UUIDs, SMART scopes enforced, expiring storage links), so it prints the ids it gave the
 * chart; scripts find the patient by identifier instead. Besides the service's client it
 * registers `sandbox-explorer` (same EXAMPLE key, `system/*.rs`) for scripts and people exploring it.
 */
import { defaultSandboxClients, SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from '../test/support/sandbox-ehr/clients.ts';
import { SANDBOX_EXPLORER_CLIENT_ID } from '../test/support/sandbox-ehr/find-chart.ts';
import { SANDBOX_PATIENT_IDENTIFIER } from '../test/support/sandbox-ehr/seed-resources.ts';
import { startSandboxEhr } from '../test/support/sandbox-ehr/server.ts';
import { DEFAULT_REGISTERED_SCOPE } from '../test/support/sandbox-ehr/scopes.ts';
import { outboundScope } from '../src/outbound/outbound-scope.ts';

function port(name: string, fallback: number): number {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    console.error(`${name} must be a port number (0-65535), got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}

const ehr = await startSandboxEhr({
  port: port('SANDBOX_PORT', 8090),
  storagePort: port('SANDBOX_STORAGE_PORT', 8091),
  host: process.env.SANDBOX_HOST || '127.0.0.1',
  // SANDBOX_ACCEPTS_PUSH=1: this instance plays a consulting clinic's own server, and the service's
  // registration also grants what a record-set push needs (docs/workflow.md, "Pushed to the clinic's own FHIR server").
  clients: [
    ...(process.env.SANDBOX_ACCEPTS_PUSH === '1'
      ? [{ ...defaultSandboxClients()[0]!, scope: `${DEFAULT_REGISTERED_SCOPE} ${outboundScope({ referrer: false, push: true })}` }]
      : defaultSandboxClients()),
    { ...defaultSandboxClients()[0]!, clientId: SANDBOX_EXPLORER_CLIENT_ID, scope: 'system/*.rs' },
  ],
});
const s = ehr.seeded;
console.log(`Sandbox EHR (synthetic data only) ready in ${Math.round(ehr.startupMs)} ms
  FHIR base:    ${ehr.baseUrl}
  token URL:    ${ehr.tokenUrl}
  storage:      ${ehr.storageUrl}
  client ids:   ${SERVICE_OUTBOUND_CLIENT_ID} (the service's registration), ${SANDBOX_EXPLORER_CLIENT_ID} (system/*.rs); EXAMPLE key: ${SERVICE_OUTBOUND_KEY_FILE}
  strict:       ${Object.entries(ehr.strict).map(([name, on]) => `${name} ${on ? 'on' : 'off'}`).join(', ')}
  patient:      Patient/${s.patientId} (Patient?identifier=${SANDBOX_PATIENT_IDENTIFIER.system}|${SANDBOX_PATIENT_IDENTIFIER.value})
  practitioner: Practitioner/${s.practitionerId}
  organizations: ${Object.entries(s.organizations).map(([key, id]) => `${key} Organization/${id}`).join(', ')}
  consents:     Consent/${s.consentId} (valid, names Lakeside), Consent/${s.expiredConsentId} (expired), Consent/${s.otherOrgConsentId} (names Harbor Clinic)
  first opinion: DocumentReference/${s.firstOpinionNoteId}
  reports:      DiagnosticReport/${s.pathologyReportId}, DiagnosticReport/${s.imagingReportId}, ImagingStudy/${s.imagingStudyId}
  documents:`);
for (const d of s.documents) {
  console.log(`    ${d.key.padEnd(20)} DocumentReference/${d.id.padEnd(36)} LOINC ${d.loincCode.padEnd(8)} ${d.contentType.padEnd(16)} ${String(d.size).padStart(9)} B  ${d.location}`);
}
console.log('Ctrl-C to stop.');

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    void ehr.stop().then(() => process.exit(0));
  });
}
