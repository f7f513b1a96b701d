/**
 * The FHIR intake door around the one intake use case: the referral parsed from
 * FHIR (referral-mapping.ts) goes through `createSecondOpinion` exactly as the JSON door's body
 * does (same validation, idempotency, access and audit); this module only recognises the
 * clinics, speaks FHIR in refusals (each issue names the FHIR element its field came from) and
 * answers with a transaction-response Bundle.
 */
import { OperationOutcomeError } from '@medplum/core';
import type { Bundle, BundleEntry, ClinicalImpression, Identifier, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { Caller } from '../../access/caller.ts';
import { absoluteReference, isOnFhirBase, parseResourceReference, sameResourceReference } from '../../fhir/references.ts';
import { HttpOutcomeError, issue, outcome, unprocessable } from '../../fhir/outcomes.ts';
import { createSecondOpinion, findIntake, type IntakeDeps, type IntakeResult } from '../../intake/create-second-opinion.ts';
import type { IntakeRequest } from '../../intake/intake-request.ts';
import type { Participant } from '../../network/network.ts';
import { readOrganizationsOnEhr, sharesIdentifier } from '../../network/organization-identity.ts';
import type { FhirClient } from '../../outbound/fhir-client.ts';
import { isRetryableError } from '../../outbound/outbound-errors.ts';
import { fhirExpression, type MappedReferral, type RecognizeOrganization } from './referral-mapping.ts';

export interface FhirIntakeDeps {
  intake: IntakeDeps;
  /** Every participant of the network (to recognise clinics by identifier or reference). */
  participants: () => readonly Participant[];
  /** This service's FHIR base as clients see it (`https://host/fhir`). */
  fhirBaseUrl: string;
  /** The FHIR client of a participant's EHR (to read the Organizations a referral names by the EHR's own reference). */
  ehrClient: (participantId: string) => Pick<FhirClient, 'readReference'> | undefined;
}

export interface FhirIntakeResult extends IntakeResult {
  firstOpinion?: ClinicalImpression;
}

/**
 * How a clinic is named in a referral the caller's EHR wrote: by one of its identifiers (network
 * file `organization.identifier`), by the EHR's own reference to it (`fhir.aliases` of the
 * caller's EHR, relative or absolute on that EHR), or by this service's reference to it
 * (`Organization/<id>` as our Tasks name it, relative or absolute on our base), tried in that
 * order so an EHR id never resolves to another clinic's local id.
 */
export function organizationRecognizer(caller: Caller, deps: Pick<FhirIntakeDeps, 'participants' | 'fhirBaseUrl'>, onEhr: ReadonlyMap<string, readonly Identifier[]> = new Map()): RecognizeOrganization {
  const participants = deps.participants();
  const referrer = participants.find((p) => p.id === caller.participantId);
  const ehrBase = referrer?.fhir?.baseUrl;
  const aliases = Object.entries(referrer?.fhir?.aliases ?? {});
  return (ref) => {
    const byIdentifier = ref.identifier ? participants.find((p) => sharesIdentifier([ref.identifier as { system?: string; value?: string }], p.organization.identifier ?? [])) : undefined;
    if (byIdentifier) return byIdentifier.id;
    const literal = ref.reference;
    if (!literal) return undefined;
    if (ehrBase && isOnFhirBase(ehrBase, literal)) {
      const alias = aliases.find(([, r]) => sameResourceReference(absoluteReference(ehrBase, r), absoluteReference(ehrBase, literal)));
      if (alias) return alias[0];
    }
    const relative = !/^[a-z][a-z0-9+.-]*:/i.test(literal);
    const ours = relative || isOnFhirBase(deps.fhirBaseUrl, literal) ? participants.find((p) => sameResourceReference(absoluteReference(deps.fhirBaseUrl, p.organization.reference), absoluteReference(deps.fhirBaseUrl, literal)))?.id : undefined;
    if (ours) return ours;
    // The Organization the EHR's reference points to, read from the EHR (readClinicsOnEhr): its identifiers.
    const read = onEhr.get(literal);
    return read ? participants.find((p) => sharesIdentifier(read, p.organization.identifier ?? []))?.id : undefined;
  };
}

/** At most this many Organizations are read from the EHR for one referral (5 clinics, named twice at most). */
export const MAX_CLINIC_READS = 10;

/** `{reference, identifier?}` at a FHIR element of the request as sent. */
interface NamedOrganization {
  where: string;
  reference?: string;
  identifier?: unknown;
}

/** The clinics a referral names, where it names them: Task.owner of each Task entry, ServiceRequest.performer. */
function namedOrganizations(input: unknown): NamedOrganization[] {
  const named: NamedOrganization[] = [];
  const asRecord = (v: unknown) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
  const add = (v: unknown, where: string) => {
    const r = asRecord(v);
    if (r) named.push({ where, ...(typeof r.reference === 'string' ? { reference: r.reference } : {}), identifier: r.identifier });
  };
  const fromResource = (resource: Record<string, unknown> | undefined, root: string) => {
    if (resource?.resourceType === 'Task') add(resource.owner, `${root}.owner`);
    if (resource?.resourceType === 'ServiceRequest' && Array.isArray(resource.performer)) resource.performer.forEach((p, k) => add(p, `${root}.performer[${k}]`));
  };
  const body = asRecord(input);
  if (body?.resourceType === 'Bundle' && Array.isArray(body.entry)) body.entry.forEach((e, i) => fromResource(asRecord(asRecord(e)?.resource), `Bundle.entry[${i}].resource`));
  else fromResource(body, 'ServiceRequest');
  return named;
}

/**
 * The Organizations a referral names only by the referring EHR's own reference (no identifier,
 * no alias in the network file, not one of ours), read from that EHR through its FHIR client so
 * the clinic is recognised by the identifiers the Organization carries, as a consent's recipients
 * are (network/organization-identity.ts). An Organization the EHR will not let us read (403, 404)
 * is refused with 422 naming the element; an EHR that does not answer, 503: nothing is written.
 */
export async function readClinicsOnEhr(input: unknown, caller: Caller, deps: Pick<FhirIntakeDeps, 'participants' | 'fhirBaseUrl' | 'ehrClient'>): Promise<Map<string, readonly Identifier[]>> {
  const referrer = deps.participants().find((p) => p.id === caller.participantId);
  const ehrBase = referrer?.fhir?.baseUrl;
  const client = deps.ehrClient(caller.participantId);
  if (!ehrBase || !client) return new Map();
  const recognize = organizationRecognizer(caller, deps);
  // Named by a literal reference alone, to an Organization on the EHR (relative, or absolute on its base), and not recognised otherwise.
  const onEhr = (ref: string) => (/^[a-z][a-z0-9+.-]*:/i.test(ref) ? isOnFhirBase(ehrBase, ref) : true) && parseResourceReference(ref)?.typeAndId.startsWith('Organization/') === true;
  const toRead = namedOrganizations(input)
    .filter((n): n is NamedOrganization & { reference: string } => n.reference !== undefined && n.identifier === undefined && onEhr(n.reference) && recognize({ reference: n.reference }) === undefined)
    .slice(0, MAX_CLINIC_READS);
  if (toRead.length === 0) return new Map();
  let read;
  try {
    read = await readOrganizationsOnEhr(toRead.map((n) => n.reference), referrer.fhir?.aliases, client);
  } catch (err) {
    if (!isRetryableError(err)) throw err;
    throw new HttpOutcomeError(503, outcome([issue('transient', 'Your EHR did not answer when the service read the Organization this clinic is named by; nothing was written: send the referral again, or name the clinic by one of its identifiers', toRead[0]?.where)]));
  }
  const refused = toRead.filter((n) => read.unreadable.some((u) => u.reference === n.reference));
  if (refused.length) {
    throw unprocessable(
      refused.map((n) => {
        const status = read.unreadable.find((u) => u.reference === n.reference)?.status;
        return issue('business-rule', `Your EHR would not let the service read this Organization (${status ? `HTTP ${status}` : 'no response'}): the service recognises a clinic named by your EHR's reference by the identifiers of that Organization and needs system/Organization.r there; or name the clinic by one of its identifiers (GET /participants)`, n.where);
      }),
    );
  }
  return read.identifiers;
}

/**
 * Runs `fn` (the shared schema, the use case) and re-words its refusals in FHIR terms: each
 * issue's expression (a JSON intake field) becomes the FHIR element it came from, and a text
 * that starts with the field's name starts with the element's. Status and codes are kept.
 */
export async function inFhirTerms<T>(mapped: Pick<MappedReferral, 'origins' | 'root'>, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof OperationOutcomeError)) throw err;
    const translated: OperationOutcome = {
      ...err.outcome,
      issue: err.outcome.issue.map((i) => {
        const field = i.expression?.[0];
        if (!field) return i;
        const where = fhirExpression(field, mapped.origins, mapped.root);
        const text = i.details?.text;
        return {
          ...i,
          expression: [where],
          ...(text ? { details: { ...i.details, text: text.startsWith(`${field} `) || text.startsWith(`${field}:`) ? `${where}${text.slice(field.length)}` : text } } : {}),
        };
      }),
    };
    throw err instanceof HttpOutcomeError ? new HttpOutcomeError(err.status, translated) : new OperationOutcomeError(translated);
  }
}

/**
 * Places the referral through the intake use case. With `If-None-Exist` (already checked to
 * name the placer identifier), an existing referral under that key is returned as it is and
 * nothing is created, as a FHIR conditional create does; otherwise intake's own idempotency
 * applies (the same request again: the same resources; a different one: 409).
 */
export async function referByFhir(mapped: MappedReferral, request: IntakeRequest, caller: Caller, deps: FhirIntakeDeps): Promise<FhirIntakeResult> {
  const existing = mapped.ifNoneExist ? await findIntake(deps.intake.store, caller.participantId, request.requestId) : undefined;
  const result = existing?.result ?? (await inFhirTerms(mapped, () => createSecondOpinion(request, caller, deps.intake)));
  const firstOpinionId = result.serviceRequest.supportingInfo?.map((r) => /^ClinicalImpression\/([^/]+)$/.exec(r.reference ?? '')?.[1]).find(Boolean);
  const firstOpinion = firstOpinionId ? await deps.intake.store.read<ClinicalImpression>('ClinicalImpression', firstOpinionId, 'system') : undefined;
  return { ...result, ...(firstOpinion ? { firstOpinion } : {}) };
}

/** `{base}/ServiceRequest/{id}/_history/{v}`: where a created resource's version lives. */
export function versionLocation(fhirBaseUrl: string, resource: Resource): string {
  return `${fhirBaseUrl}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
}

function responseEntry(resource: Resource, created: boolean, fhirBaseUrl: string): BundleEntry {
  return {
    fullUrl: `${fhirBaseUrl}/${resource.resourceType}/${resource.id}`,
    response: {
      status: created ? '201 Created' : '200 OK',
      location: versionLocation(fhirBaseUrl, resource),
      etag: `W/"${resource.meta?.versionId}"`,
      ...(resource.meta?.lastUpdated ? { lastModified: resource.meta.lastUpdated } : {}),
    },
  };
}

/**
 * The transaction-response (R4 §3.1.0.11.3): one entry per request entry, in its order, each
 * with the location and version of the resource it became (201 when created, 200 on a replay).
 */
export function transactionResponse(mapped: MappedReferral, result: FhirIntakeResult, fhirBaseUrl: string): Bundle {
  const entry = mapped.entries.map((e): BundleEntry => {
    const resource = e.type === 'ServiceRequest' ? result.serviceRequest : e.type === 'Task' ? result.tasks[e.consultant ?? -1] : result.firstOpinion;
    if (!resource) throw new Error(`intake returned no ${e.type} for a Bundle entry`);
    return responseEntry(resource, result.created, fhirBaseUrl);
  });
  return { resourceType: 'Bundle', type: 'transaction-response', entry };
}

