import type { DocumentReference, Extension, OperationOutcome, ServiceRequest, Task } from '@medplum/fhirtypes';
import { eq, inArray } from 'drizzle-orm';
import { auditedRead, patientOf, requestedEntity } from '../audit/audited-read.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { Caller } from '../access/caller.ts';
import { EXTENSION } from '../fhir/constants.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { readOpinionExtension } from '../opinions/consult-note.ts';
import { isOverdue } from '../consults/worklist.ts';
import { type FollowUpEntry, readFollowUpThreads } from '../followups/threads.ts';
import { findVisibleReferral } from './referral-access.ts';
import type { ReferralQuestion } from './intake-request.ts';
import { readReferralQuestions } from './referral-questions.ts';
import type { Answer } from '../opinions/opinion.ts';
import { opinionDeliveries, recordSetAssemblies } from '../store/schema.ts';

export interface ConsultantSummary {
  participant?: string;
  organization?: string;
  name?: string;
  task: {
    id: string;
    status: Task['status'];
    businessStatus?: string;
    businessStatusText?: string;
    /** Why, in words, where the business status has a reason (what is missing, why consent failed, the delivery error). */
    businessStatusReason?: string;
    /** Why the Task ended (rejected, cancelled, failed): its `statusReason`, e.g. consent withdrawn. */
    statusReason?: string;
    due?: string;
    overdue: boolean;
    lastModified?: string;
    /** What the consultant asked for (request-info), while the Task is on hold. */
    informationRequested?: string;
  };
  /** The opinion, once submitted: the consult note and its headline points. */
  opinion?: { documentReference: string; diagnosisAgreement?: string; planAgreement?: string; summary?: string; answers?: Answer[] };
  /**
   * The post-back of the opinion to the referrer's EHR; after a failed attempt, `lastError` says
   * what failed and the EHR's OperationOutcome (as kept: issues' severity, code, details.text,
   * diagnostics, expression) is `lastOutcome`.
   */
  delivery?: { id: string; status: string; attempts: number; lastError?: string; lastOutcome?: OperationOutcome; remoteDocument?: string; deliveredAt?: string };
  /** Follow-up questions asked after the opinion: question, asked at, due, answer, answered at, the answer's post-back. */
  followUps: FollowUpEntry[];
}

export interface ReferralSummary {
  id: string;
  requestId: string;
  status: ServiceRequest['status'];
  kind?: string;
  priority?: string;
  reviewType?: string;
  blinded: boolean;
  authoredOn?: string;
  /** The patient's and the physician's own questions, by index. */
  questions: ReferralQuestion[];
  consultants: ConsultantSummary[];
  /** The latest record-set assembly: what is missing, what failed verification. */
  recordSet: RecordSetSummary;
}

export interface RecordSetSummary {
  /**
   * records-pending until the assembly job has run for the latest records (after
   * `POST /second-opinions/{id}/records` too), then the status it ended in.
   */
  status: string;
  /** Revision of the referral's records: 0 at intake, +1 per accepted addition. */
  recordsRevision: number;
  /** The revision the reported assembly was made from (below `recordsRevision` while an addition is pending). */
  assembledRevision?: number;
  /** Every record-set Bundle made for this referral, newest first (a Bundle never changes; each assembly makes a new one). */
  versions: string[];
  bundleId?: string;
  /** The referrer-only Bundle of documents withheld by blinding. */
  withheldBundleId?: string;
  missing: { required: unknown[]; recommended: unknown[]; documents: unknown[] };
  integrityFailures: unknown[];
  tooLarge: unknown[];
  consent: unknown[];
  failureReason?: string;
  /** The referring EHR's OperationOutcome when a read it refused ended the assembly (records-failed). */
  failureOutcome?: OperationOutcome;
  attempts?: number;
  updatedAt?: string;
}

export interface SummaryDeps {
  store: ResourceStore;
  /** Maps a Task owner reference back to its participant. */
  participantByOrganization(reference: string): { id: string; name: string } | undefined;
  now: () => Date;
  /** Every read of a referral, success or refused, is audited. */
  audit: AuditLog;
}


/**
 * The referrer's view of one referral: each consultant's Task status,
 * business status and due date. Only the participant that placed the referral may read
 * it; anyone else gets 404, so ids reveal nothing. The read is audited, refused or not:
 * entities the ServiceRequest and its Tasks, and the patient.
 */
export async function getReferralSummary(id: string, caller: Caller, deps: SummaryDeps): Promise<ReferralSummary> {
  const { summary } = await auditedRead(
    deps.audit,
    caller,
    {
      action: 'read',
      // Clients poll the summary: a minute of polling by one client is one AuditEvent with a read count.
      coalesce: true,
      requested: requestedEntity('ServiceRequest', id),
      touched: ({ serviceRequest, tasks }) => {
        const patientReference = patientOf(serviceRequest);
        return {
          entities: [serviceRequest, ...tasks].map((r) => ({ reference: `${r.resourceType}/${r.id}` })),
          ...(patientReference ? { patientReference } : {}),
        };
      },
    },
    // Role and scope: the route's guard (access/route-rules.ts); visibility: findVisibleReferral.
    async () => loadReferralSummary(id, caller, deps),
  );
  return summary;
}

async function loadReferralSummary(id: string, caller: Caller, deps: SummaryDeps): Promise<{ summary: ReferralSummary; serviceRequest: ServiceRequest; tasks: Task[] }> {
  const { placed, serviceRequest, reader } = await findVisibleReferral(id, caller, deps.store);
  const tasks = await deps.store.readMany<Task>('Task', placed.taskIds, reader);
  const now = deps.now().getTime();
  const [assembly] = await deps.store.database.select().from(recordSetAssemblies).where(eq(recordSetAssemblies.serviceRequestId, id));
  const deliveries = placed.taskIds.length ? await deps.store.database.select().from(opinionDeliveries).where(inArray(opinionDeliveries.taskId, placed.taskIds)) : [];
  const noteIds = tasks.flatMap((t) => (t.output ?? []).flatMap((o) => (o.valueReference?.reference?.startsWith('DocumentReference/') ? [o.valueReference.reference.slice('DocumentReference/'.length)] : [])));
  const notes = noteIds.length ? await deps.store.readMany<DocumentReference>('DocumentReference', noteIds, reader) : [];
  const threads = await readFollowUpThreads(deps.store, placed.taskIds, reader, deps.now());
  const versions = (serviceRequest.supportingInfo ?? []).flatMap((s) => (s.reference?.startsWith('Bundle/') ? [s.reference.slice('Bundle/'.length)] : [])).reverse();

  const summary: ReferralSummary = {
    id,
    requestId: placed.requestId,
    status: serviceRequest.status,
    kind: serviceRequest.code?.coding?.[0]?.code,
    priority: serviceRequest.priority,
    reviewType: extension(serviceRequest.extension, EXTENSION.reviewType)?.valueCoding?.code,
    blinded: extension(serviceRequest.extension, EXTENSION.blinded)?.valueBoolean ?? false,
    authoredOn: serviceRequest.authoredOn,
    questions: readReferralQuestions(serviceRequest),
    consultants: tasks.map((task) => {
      const delivery = deliveries.find((d) => d.taskId === task.id);
      const noteRef = task.output?.find((o) => o.valueReference?.reference?.startsWith('DocumentReference/'))?.valueReference?.reference;
      const note = notes.find((n) => `DocumentReference/${n.id}` === noteRef);
      const points = note ? readOpinionExtension(note) : undefined;
      const owner = task.owner?.reference ?? '';
      const participant = deps.participantByOrganization(owner);
      const due = task.restriction?.period?.end;
      const businessStatus = task.businessStatus?.coding?.[0];
      return {
        participant: participant?.id,
        organization: owner,
        name: participant?.name ?? task.owner?.display,
        task: {
          id: task.id as string,
          status: task.status,
          businessStatus: businessStatus?.code,
          businessStatusText: businessStatus?.display,
          ...(task.businessStatus?.text ? { businessStatusReason: task.businessStatus.text } : {}),
          ...(task.statusReason?.text ? { statusReason: task.statusReason.text } : {}),
          due,
          overdue: isOverdue(task, now),
          lastModified: task.lastModified,
          ...(task.status === 'on-hold' && task.businessStatus?.coding?.[0]?.code === 'information-requested' && task.businessStatus.text ? { informationRequested: task.businessStatus.text } : {}),
        },
        ...(noteRef ? { opinion: { documentReference: noteRef, ...(points ? { diagnosisAgreement: points.diagnosisAgreement, planAgreement: points.planAgreement, summary: points.summary, ...(points.answers.length ? { answers: points.answers } : {}) } : {}) } } : {}),
        ...(delivery
          ? {
              delivery: {
                id: delivery.id,
                status: delivery.status,
                attempts: delivery.attempts,
                ...(delivery.lastError ? { lastError: delivery.lastError } : {}),
                ...(delivery.lastOutcome ? { lastOutcome: delivery.lastOutcome } : {}),
                ...(delivery.remoteDocument ? { remoteDocument: delivery.remoteDocument } : {}),
                ...(delivery.deliveredAt ? { deliveredAt: delivery.deliveredAt.toISOString() } : {}),
              },
            }
          : {}),
        followUps: threads.get(task.id as string) ?? [],
      };
    }),
    recordSet: assembly
      ? {
          status: assembly.recordsRevision < placed.recordsRevision ? 'records-pending' : assembly.status,
          recordsRevision: placed.recordsRevision,
          assembledRevision: assembly.recordsRevision,
          versions,
          ...(assembly.bundleId ? { bundleId: assembly.bundleId } : {}),
          ...(assembly.withheldBundleId ? { withheldBundleId: assembly.withheldBundleId } : {}),
          missing: { required: list(assembly.missingRequired), recommended: list(assembly.missingRecommended), documents: list(assembly.missingDocuments) },
          integrityFailures: list(assembly.integrityFailures),
          tooLarge: list(assembly.tooLarge),
          consent: list(assembly.consent),
          ...(assembly.failureReason ? { failureReason: assembly.failureReason } : {}),
          ...(assembly.failureOutcome ? { failureOutcome: assembly.failureOutcome } : {}),
          attempts: assembly.attempts,
          updatedAt: assembly.updatedAt.toISOString(),
        }
      : { status: 'records-pending', recordsRevision: placed.recordsRevision, versions, missing: { required: [], recommended: [], documents: [] }, integrityFailures: [], tooLarge: [], consent: [] },
  };
  return { summary, serviceRequest, tasks };
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function extension(list: Extension[] | undefined, url: string): Extension | undefined {
  return list?.find((e) => e.url === url);
}
