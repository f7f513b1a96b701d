/**
 * What submitting an opinion needs to know, read in one statement: the caller's Task (as the
 * caller may read it), the referral's intake row (who referred, their request id, every Task),
 * the ServiceRequest and the status of the referral's other Tasks (whether this opinion ends
 * the referral).
 */
import { notFound, OperationOutcomeError } from '@medplum/core';
import type { ClinicalImpression, ServiceRequest, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { Caller } from '../access/caller.ts';
import { readerOf } from '../access/reader.ts';
import { accessFilter, type ResourceStore } from '../store/resource-store.ts';
import { intakeRequests, resources } from '../store/schema.ts';
import type { ConsultDeps } from './consult-actions.ts';

export interface OpinionContext {
  task: Task;
  serviceRequestId: string;
  intake: { participantId: string; requestId: string; taskIds: string[] };
  serviceRequest: ServiceRequest;
  /** The referral's other Tasks, with their current status. */
  otherTasks: { id: string; status: Task['status'] }[];
  /** The referral's first opinion, when it has one. */
  firstOpinion?: ClinicalImpression;
}

interface Row {
  task: Task;
  participant_id: string | null;
  request_id: string | null;
  task_ids: string[] | null;
  service_request: ServiceRequest | null;
  other_tasks: { id: string; status: Task['status'] }[] | null;
  first_opinion: ClinicalImpression | null;
}

/** 404 unless the caller's organization owns a Task it may read (whether or not it exists), as readOwnTask. */
export async function readOpinionContext(tx: ResourceStore, taskId: string, caller: Caller, deps: ConsultDeps): Promise<OpinionContext> {
  const result = (await tx.database.execute(sql`
    SELECT ${resources.content} AS task, i.participant_id, i.request_id, i.task_ids, sr.content AS service_request,
      (SELECT coalesce(jsonb_agg(jsonb_build_object('id', o.id, 'status', o.content->>'status')), '[]'::jsonb)
         FROM ${resources} o WHERE o.resource_type = 'Task' AND o.id = ANY(i.task_ids) AND o.id <> ${resources.id}) AS other_tasks,
      (SELECT f.content FROM ${resources} f
        WHERE f.resource_type = 'ClinicalImpression'
          AND f.id IN (SELECT regexp_replace(s->>'reference', '^ClinicalImpression/', '') FROM jsonb_array_elements(coalesce(sr.content->'supportingInfo', '[]'::jsonb)) s WHERE s->>'reference' LIKE 'ClinicalImpression/%')
        LIMIT 1) AS first_opinion
      FROM ${resources}
      LEFT JOIN ${intakeRequests} i ON i.service_request_id = regexp_replace(coalesce(${resources.content}#>>'{focus,reference}', ''), '^ServiceRequest/', '')
      LEFT JOIN ${resources} sr ON sr.resource_type = 'ServiceRequest' AND sr.id = i.service_request_id
     WHERE ${resources.resourceType} = 'Task' AND ${resources.id} = ${taskId} AND ${accessFilter(resources.access, readerOf(caller)) ?? sql`true`}`)) as unknown as { rows: Row[] };
  const row = result.rows[0];
  const organization = deps.network.get(caller.participantId)?.organization.reference;
  if (!row || !organization || row.task.owner?.reference !== organization) throw new OperationOutcomeError(notFound);
  const { task } = row;
  const serviceRequestId = (task.focus?.reference ?? '').replace(/^ServiceRequest\//, '');
  if (!row.participant_id || !row.request_id || !row.task_ids || !row.service_request || !task.for) throw new Error(`Task ${taskId} has no referral`); // an integrity bug, never input
  return {
    task,
    serviceRequestId,
    intake: { participantId: row.participant_id, requestId: row.request_id, taskIds: row.task_ids },
    serviceRequest: row.service_request,
    otherTasks: row.other_tasks ?? [],
    ...(row.first_opinion ? { firstOpinion: row.first_opinion } : {}),
  };
}
