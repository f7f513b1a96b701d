/**
 * Reads that leave an AuditEvent whatever their outcome: every read of a record
 * set, document or attachment, and every read of a referral writes a FHIR AuditEvent, and
 * reads that are refused are audited too.
 *
 * `auditedRead` runs the read (authorization included, so a 403 is audited like a 404), then
 * stores the AuditEvent before returning, so it is durable before the response is sent. A
 * failing audit write fails the read: the error propagates and the request answers 500.
 *
 * Every read of PHI passes here, so this is where the disclosure gate (access/disclosure-gate.ts)
 * looks at it: before records reach a consulting clinic (the EHR's Consent may have ended), and
 * when a read was refused (to name a withdrawal of consent as the reason).
 */
import { getStatus, OperationOutcomeError } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import type { Caller } from '../access/caller.ts';
import type { AuditAction, AuditEntityInput, AuditOutcome } from './audit-event.ts';
import { actedBy, type AuditLog } from './audit-log.ts';
import { CONSENT_WITHDRAWN_REFUSAL, ConsentWithdrawnError } from '../access/consent-withdrawal.ts';

/** What a successful read touched: the resources and, when it is one, the patient. */
export interface ReadTouched {
  entities: AuditEntityInput[];
  patientReference?: string;
}

export interface AuditedReadPlan<T> {
  action: AuditAction;
  /** What was asked for: the entities of a refused or failed read. */
  requested: AuditEntityInput[];
  /** For searches: the query (known parameters only), recorded whatever the outcome. */
  query?: string;
  /** What the result touched, recorded on success. */
  touched(result: T): ReadTouched;
  /**
   * A read clients poll (a referral summary): successful reads by the same client within one
   * minute are one AuditEvent with a read count (`AuditLog.recordCoalesced`). Refused and
   * failed reads are still one AuditEvent each.
   */
  coalesce?: boolean;
}

/** Runs `read` and records its AuditEvent (success, refused or failure) before returning or rethrowing. */
export async function auditedRead<T>(audit: AuditLog, caller: Caller, plan: AuditedReadPlan<T>, read: () => Promise<T>): Promise<T> {
  const query = plan.query !== undefined ? { query: plan.query } : {};
  let result: T;
  try {
    result = await read();
  } catch (err) {
    await recordRefusal(audit, caller, plan, err);
    throw err;
  }
  const touched = plan.touched(result);
  try {
    await audit.gate?.beforeRead(caller, touched.entities);
  } catch (err) {
    await recordRefusal(audit, caller, { ...plan, requested: touched.entities }, err);
    throw err;
  }
  const success = {
    action: plan.action,
    outcome: 'success' as const,
    ...actedBy(caller),
    entities: touched.entities,
    ...(touched.patientReference ? { patientReference: touched.patientReference } : {}),
    ...query,
  };
  await (plan.coalesce ? audit.recordCoalesced(success) : audit.record(success));
  return result;
}

/** Records the AuditEvent of a read that did not succeed (refused or failed) with `err`. */
export async function recordRefusal(audit: Pick<AuditLog, 'record'> & Partial<Pick<AuditLog, 'gate'>>, caller: Caller, plan: Pick<AuditedReadPlan<unknown>, 'action' | 'requested' | 'query'>, err: unknown): Promise<void> {
  const refusal = refusalOf(err);
  const { outcome } = refusal;
  // A 404 may be a withdrawal of consent: the gate knows (access/consent-withdrawal.ts), and the AuditEvent says so.
  const withdrawn = err instanceof ConsentWithdrawnError || (statusOf(err) === 404 && (await audit.gate?.refusalReason(caller.participantId, plan.requested)) !== undefined);
  const description = withdrawn ? CONSENT_WITHDRAWN_REFUSAL : refusal.description;
  await audit.record({
    action: plan.action,
    outcome,
    ...actedBy(caller),
    entities: plan.requested,
    description,
    ...(plan.query !== undefined ? { query: plan.query } : {}),
  });
}

/**
 * Outcome and a short description of why a read did not succeed. Fixed texts only: an
 * error's own message may echo request input, and AuditEvents carry no PHI.
 */
export function refusalOf(err: unknown): { outcome: AuditOutcome; description: string } {
  const status = statusOf(err);
  if (status === undefined) return { outcome: 'failure', description: 'Failed: internal error' };
  if (status === 403) return { outcome: 'refused', description: 'Refused (403): the caller lacks the scope or role this read needs' };
  if (status === 404) return { outcome: 'refused', description: 'Refused (404): not found, or not visible to the caller' };
  if (status >= 400 && status < 500) return { outcome: 'refused', description: `Refused (${status}): invalid request` };
  return { outcome: 'failure', description: `Failed (${status})` };
}

/** The HTTP status an OperationOutcomeError answers; undefined for any other error. */
function statusOf(err: unknown): number | undefined {
  if (!(err instanceof OperationOutcomeError)) return undefined;
  return 'status' in err && typeof err.status === 'number' ? err.status : getStatus(err.outcome);
}

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * The entity of a requested `type/id` (or `type/id/_history/vid`); none when the id is not a
 * FHIR id (request input that is not an id is not recorded).
 */
export function requestedEntity(resourceType: string, id: string, versionId?: string): AuditEntityInput[] {
  if (!FHIR_ID.test(id) || (versionId !== undefined && !FHIR_ID.test(versionId))) return [];
  return [{ reference: versionId === undefined ? `${resourceType}/${id}` : `${resourceType}/${id}/_history/${versionId}` }];
}

const PATIENT_REFERENCE = /(^|\/)Patient\/[A-Za-z0-9\-.]{1,64}$/;

/**
 * The patient a resource is about, when it names one by reference: `subject` (ServiceRequest,
 * DocumentReference, DiagnosticReport, ...), `for` (Task), `patient`; for a Bundle (a record
 * set) the first entry's resource.
 */
export function patientOf(resource: Resource | undefined): string | undefined {
  if (!resource) return undefined;
  if (resource.resourceType === 'Bundle') return patientOf(resource.entry?.[0]?.resource);
  const r = resource as { subject?: { reference?: unknown }; for?: { reference?: unknown }; patient?: { reference?: unknown } };
  for (const ref of [r.subject?.reference, r.for?.reference, r.patient?.reference]) {
    if (typeof ref === 'string' && PATIENT_REFERENCE.test(ref)) return ref;
  }
  return undefined;
}

/** The one patient all `resources` are about, if they agree on one. */
export function commonPatientOf(resources: readonly Resource[]): string | undefined {
  const patients = new Set(resources.map(patientOf));
  if (patients.size !== 1) return undefined;
  return [...patients][0];
}

/** What reading `resources` touched: each one's reference, and their common patient. */
export function touchedResources(resources: readonly Resource[]): ReadTouched {
  const patientReference = commonPatientOf(resources);
  return {
    entities: resources.filter((r) => r.id).map((r) => ({ reference: `${r.resourceType}/${r.id}` })),
    ...(patientReference ? { patientReference } : {}),
  };
}
