/**
 * `GET /fhir/Measure/{id}/$evaluate-measure`: the second-opinion concordance
 * Measure evaluated over the opinions returned in a period, for the caller's own organization
 * only: a referrer counts the opinions on its referrals, a consulting clinic its own opinions,
 * an auditor all of them (or one organization's, as `subject`). Counted in one SQL statement
 * over the stored consult notes (the concordance extension their submission wrote), grouped by
 * the referral's kind; no opinion is read one by one.
 *
 * Counts are not PHI (no patient, no text): the read is not audited, and the route asks for a
 * role, not a SMART scope on a clinical type. A referrer token narrowed to one clinician counts
 * that clinician's referrals only.
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { MeasureReport } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import { type Caller, forbiddenOutcome } from '../access/caller.ts';
import { readerOf } from '../access/reader.ts';
import { EXTENSION, LOINC_DOC } from '../fhir/constants.ts';
import type { Network } from '../network/network.ts';
import type { ResourceStore, ResourceValidator } from '../store/resource-store.ts';
import { opinionDeliveries, resources } from '../store/schema.ts';
import { buildConcordanceReport, type ConcordanceCounts } from './measure-report.ts';
import { type MeasureParameters, parseMeasureParameters } from './measure-parameters.ts';

/** The id of the one Measure this service evaluates (profiles/input/fsh/concordance.fsh). */
export const CONCORDANCE_MEASURE_ID = 'second-opinion-concordance';

export interface EvaluateMeasureDeps {
  store: ResourceStore;
  network: Network;
  validator: ResourceValidator;
  now: () => Date;
}

export async function evaluateConcordanceMeasure(measureId: string, query: Record<string, string[]>, caller: Caller, deps: EvaluateMeasureDeps): Promise<MeasureReport> {
  if (measureId !== CONCORDANCE_MEASURE_ID) throw new OperationOutcomeError(notFound);
  const params = parseMeasureParameters(query);
  const counts = await countOpinions(deps.store, params, scopeOf(caller, params.subject, deps.network));
  const report = buildConcordanceReport(counts, params, deps.now());
  deps.validator.validate(report);
  return report;
}

/**
 * Which opinions the caller counts, as a condition on the delivery row `d` (its referrer) and
 * the consult note `n` (its author, the consulting clinic). `subject` narrows an auditor to one
 * organization (404 when the directory has none such); anyone else may name only its own (403).
 */
function scopeOf(caller: Caller, subject: string | undefined, network: Network): SQL {
  const ofOrganization = (participantId: string, organization: string): SQL =>
    sql`(d.participant_id = ${participantId} OR n.content->'author' @> ${JSON.stringify([{ reference: organization }])}::jsonb)`;
  if (caller.roles.includes('auditor')) {
    if (subject === undefined) return sql`true`;
    const participant = network.findByOrganization(subject);
    if (!participant) throw new OperationOutcomeError(notFound);
    return ofOrganization(participant.id, subject);
  }
  const own = network.get(caller.participantId)?.organization.reference;
  if (subject !== undefined && subject !== own) {
    throw new OperationOutcomeError(forbiddenOutcome(`subject: participant ${caller.participantId} may evaluate the measure for its own organization only (${own ?? 'none'})`));
  }
  const conditions: SQL[] = [];
  if (caller.roles.includes('referrer')) conditions.push(sql`(d.participant_id = ${caller.participantId} AND ${clinicianFilter(caller)})`);
  if (caller.roles.includes('consultant') && own) conditions.push(sql`n.content->'author' @> ${JSON.stringify([{ reference: own }])}::jsonb`);
  return conditions.length ? sql`(${sql.join(conditions, sql` OR `)})` : sql`false`;
}

/**
 * A referrer token issued for one clinician counts that clinician's referrals only, as it reads
 * only those (access/reader.ts): the referral's access list must name one of its requester keys.
 */
function clinicianFilter(caller: Caller): SQL {
  const reader = readerOf(caller);
  if (reader === 'system' || !('anyOf' in reader)) return sql`true`;
  if (reader.anyOf.length === 0) return sql`false`;
  return sql`sr.access && ${`{${reader.anyOf.map((k) => JSON.stringify(k)).join(',')}}`}::text[]`;
}

interface CountRow {
  kind: string | null;
  returned: number;
  classified: number;
  diagnosis_major: number;
  diagnosis_minor: number;
  plan_changed: number;
  plan_modified: number;
}

/**
 * One statement: every consult note with a delivery row (every submitted opinion has one, from
 * its own write), dated in the period, in the caller's scope, with the classes its concordance
 * extension holds, counted per kind of the referral.
 */
async function countOpinions(store: ResourceStore, params: MeasureParameters, scope: SQL): Promise<ConcordanceCounts[]> {
  const kind = params.kind ? sql`AND sr.content->'code'->'coding' @> ${JSON.stringify([{ code: params.kind }])}::jsonb` : sql``;
  const result = (await store.database.execute(sql`
    SELECT sr.content#>>'{code,coding,0,code}' AS kind,
           count(*)::int AS returned,
           count(*) FILTER (WHERE c.diagnosis IS NOT NULL AND c.plan IS NOT NULL)::int AS classified,
           count(*) FILTER (WHERE c.diagnosis = 'major-discrepancy')::int AS diagnosis_major,
           count(*) FILTER (WHERE c.diagnosis = 'minor-discrepancy')::int AS diagnosis_minor,
           count(*) FILTER (WHERE c.plan = 'changed')::int AS plan_changed,
           count(*) FILTER (WHERE c.plan = 'modified')::int AS plan_modified
      FROM ${opinionDeliveries} d
      JOIN ${resources} n ON n.resource_type = 'DocumentReference' AND n.id = d.id
      LEFT JOIN ${resources} sr ON sr.resource_type = 'ServiceRequest' AND sr.id = d.service_request_id
      LEFT JOIN LATERAL (
        SELECT (SELECT x->'valueCoding'->>'code' FROM jsonb_array_elements(e->'extension') x WHERE x->>'url' = 'diagnosis' LIMIT 1) AS diagnosis,
               (SELECT x->'valueCoding'->>'code' FROM jsonb_array_elements(e->'extension') x WHERE x->>'url' = 'plan' LIMIT 1) AS plan
          FROM jsonb_array_elements(coalesce(n.content->'extension', '[]'::jsonb)) e
         WHERE e->>'url' = ${EXTENSION.concordance}
         LIMIT 1) c ON true
     WHERE n.content->'type'->'coding' @> ${JSON.stringify([{ code: LOINC_DOC.consultNote.code }])}::jsonb
       AND (n.content->>'date')::timestamptz >= ${params.from.toISOString()}::timestamptz
       AND (n.content->>'date')::timestamptz < ${params.until.toISOString()}::timestamptz
       AND ${scope} ${kind}
     GROUP BY 1`)) as unknown as { rows: CountRow[] };
  return result.rows.map((r) => ({
    kind: r.kind,
    returned: Number(r.returned),
    classified: Number(r.classified),
    diagnosisMajor: Number(r.diagnosis_major),
    diagnosisMinor: Number(r.diagnosis_minor),
    planChanged: Number(r.plan_changed),
    planModified: Number(r.plan_modified),
  }));
}
