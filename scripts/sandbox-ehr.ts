/**
 * `npm run sandbox`: starts the sandbox EHR (a synthetic referring EHR, see
 * test/support/sandbox-ehr/server.ts) on 127.0.0.1:8090 (SANDBOX_PORT; the storage origin on
 * SANDBOX_STORAGE_PORT, default 8091), so the service's example network (participant `st-olaf`)
 * can pull records from it. Stops on SIGINT/SIGTERM.
 */
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from '../test/support/sandbox-ehr/clients.ts';
import { startSandboxEhr } from '../test/support/sandbox-ehr/server.ts';

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
});
const s = ehr.seeded;
console.log(`Sandbox EHR (synthetic data only) ready in ${Math.round(ehr.startupMs)} ms
  FHIR base:    ${ehr.baseUrl}
  token URL:    ${ehr.tokenUrl}
  storage:      ${ehr.storageUrl}
  client id:    ${SERVICE_OUTBOUND_CLIENT_ID} (EXAMPLE key: ${SERVICE_OUTBOUND_KEY_FILE})
  patient:      Patient/${s.patientId}   practitioner: Practitioner/${s.practitionerId}   organization: Organization/${s.organizationId}
  consents:     Consent/${s.consentId} (valid, Organization/lakeside), Consent/${s.expiredConsentId}, Consent/${s.otherOrgConsentId}
  first opinion: DocumentReference/${s.firstOpinionNoteId}
  reports:      DiagnosticReport/${s.pathologyReportId}, DiagnosticReport/${s.imagingReportId}, ImagingStudy/${s.imagingStudyId}
  documents:`);
for (const d of s.documents) {
  console.log(`    DocumentReference/${d.id.padEnd(20)} LOINC ${d.loincCode.padEnd(8)} ${d.contentType.padEnd(16)} ${String(d.size).padStart(9)} B  ${d.location}`);
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
