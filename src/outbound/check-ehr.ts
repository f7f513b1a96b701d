/**
 * The connection check for integrators: tries, against one participant's EHR as
 * the network file describes it (its `fhir` block), everything the service will need there,
 * and returns a checklist. `npm run check-ehr` and `GET /admin/participants/{id}/check` are
 * thin adapters over {@link checkEhrConnection}.
 *
 * Each line says what was observed, never PHI (no names, birth dates, identifier values,
 * bodies or tokens: counts, sizes, statuses, references and scopes only), and when it fails
 * what to change, in the network file or on the EHR. Reads of patient data (the document
 * search, the attachment, the Consent) are audited like every other read of records.
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { Participant } from '../network/network.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { issue, invalid, outcome, HttpOutcomeError } from '../fhir/outcomes.ts';
import { splitScopes } from '../auth/scopes.ts';
import type { CheckCaller, CheckLine } from './check-ehr-lines.ts';
import { checkCapabilityStatement, checkScopes, checkSmartConfiguration, obtainToken, type TokenCheck } from './check-ehr-auth.ts';
import { checkAttachment, checkConsent, checkDocumentSearch, checkWrite, type DataCheckContext } from './check-ehr-data.ts';
import { DEFAULT_OUTBOUND_TIMEOUT_MS } from './endpoints.ts';
import { createFhirClient } from './fhir-client.ts';
import { outboundNeeds, outboundScope } from './outbound-scope.ts';

export type { CheckCaller, CheckId, CheckLine, CheckStatus } from './check-ehr-lines.ts';

export interface EhrChecklist {
  participantId: string;
  baseUrl: string;
  /** True when no line failed (warnings and skipped lines do not fail the check). */
  ok: boolean;
  checks: CheckLine[];
}

export interface CheckEhrInput {
  participantId: string;
  /** `Patient/<id>` on the EHR: enables the document search, the attachment fetch and the Consent search. */
  patient?: string;
  /** `Consent/<id>` on the EHR: read it. */
  consent?: string;
  /** Try the conditional create of a Communication and read it back. */
  write?: boolean;
}

export interface CheckEhrDeps {
  network: { get(id: string): Participant | undefined };
  /** Directory `privateKeyFile` paths are relative to (see `outboundKeyBaseDir`). */
  keyBaseDir: string;
  audit: Pick<AuditLog, 'record'>;
  /** Largest attachment fetched by the check (MAX_ATTACHMENT_BYTES). */
  maxAttachmentBytes: number;
  /** Says how the check was run, in the AuditEvents (`npm run check-ehr`, the admin route). */
  door: string;
  fetch?: typeof globalThis.fetch;
}

const FHIR_ID = '[A-Za-z0-9\\-.]{1,64}';
const PATIENT_REF = new RegExp(`^Patient/${FHIR_ID}$`);
const CONSENT_REF = new RegExp(`^Consent/${FHIR_ID}$`);

/**
 * Runs the checks in order: CapabilityStatement, SMART configuration, token, scopes, then (with
 * the options that enable them) document search, attachment, Consent and the write. A later
 * line that cannot run because an earlier one failed is skipped and says which.
 *
 * Throws a 400 OperationOutcome for a malformed `patient` or `consent`, and a 404 for an
 * unknown participant or one without a `fhir` block.
 */
export async function checkEhrConnection(caller: CheckCaller, input: CheckEhrInput, deps: CheckEhrDeps): Promise<EhrChecklist> {
  if (input.patient !== undefined && !PATIENT_REF.test(input.patient)) throw invalid([issue('invalid', 'patient must be Patient/<id> (the id on the EHR)', 'patient')]);
  if (input.consent !== undefined && !CONSENT_REF.test(input.consent)) throw invalid([issue('invalid', 'consent must be Consent/<id> (the id on the EHR)', 'consent')]);
  const participant = deps.network.get(input.participantId);
  if (!participant) throw new OperationOutcomeError(notFound);
  const fhir = participant.fhir;
  if (!fhir) throw new HttpOutcomeError(404, outcome([issue('not-found', 'This participant has no fhir block in the network file: there is no EHR to check')]));

  const baseUrl = fhir.baseUrl.replace(/\/+$/, '');
  const timeoutMs = fhir.timeoutMs ?? DEFAULT_OUTBOUND_TIMEOUT_MS;
  const fetchFn = deps.fetch ?? ((url, init) => globalThis.fetch(url, init));
  const settings = { ...(fhir.profiles ? { profiles: fhir.profiles } : {}) };
  const scope = fhir.scope ?? outboundScope(settings);
  const checks: CheckLine[] = [];

  const capability = await checkCapabilityStatement(baseUrl, { fetch: fetchFn, timeoutMs }, outboundNeeds(settings));
  checks.push(capability.line);
  // The token is asked for before its line: the SMART configuration line compares the EHR's algorithms with our key's.
  const token: TokenCheck = await obtainToken(participant, { scope, keyBaseDir: deps.keyBaseDir, fetch: fetchFn, timeoutMs });
  checks.push(await checkSmartConfiguration(baseUrl, fhir.tokenUrl, token.alg, { fetch: fetchFn, timeoutMs }));
  checks.push(token.line);
  checks.push(checkScopes(participant, splitScopes(scope), token));

  const unusable = !capability.reachable ? 'the FHIR server did not answer (line 1)' : token.line.status === 'failed' ? 'no access token (line 3)' : undefined;
  const client = createFhirClient({ baseUrl, timeoutMs, ...(token.tokenSource ? { tokenSource: token.tokenSource } : {}) }, deps.fetch ? { fetch: deps.fetch } : {});
  const ctx: DataCheckContext = { client, caller, participant, audit: deps.audit, door: deps.door, maxAttachmentBytes: deps.maxAttachmentBytes, unusable };
  const search = await checkDocumentSearch(ctx, input.patient);
  checks.push(search.line);
  checks.push(await checkAttachment(ctx, search.documents));
  checks.push(await checkConsent(ctx, input.patient, input.consent));
  checks.push(await checkWrite(ctx, input.write ?? false));

  return { participantId: participant.id, baseUrl, ok: !checks.some((c) => c.status === 'failed'), checks };
}
