/**
 * The `assemble-record-set` job: pull the referral's records from the
 * referring EHR, verify and store every attachment, build the record-set Bundle(s), check
 * completeness and consent, and move each consultant's Task on, all in one transaction.
 */
import { businessStatus } from '../fhir/business-status.ts';
import { randomUUID } from 'node:crypto';
import type { Identifier, OperationOutcome, ServiceRequest, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import type { BusinessStatus } from '../fhir/constants.ts';
import { absoluteReference } from '../fhir/references.ts';
import type { IntakeRequest } from '../intake/intake-request.ts';
import { RetryLaterError, type Job, type JobQueue } from '../jobs/job-queue.ts';
import { pushesRecordSets, schedulePush } from '../record-push/push-record-set.ts';
import { reusesRecordSet, type AssembleRecordSetJob } from '../jobs/queues.ts';
import type { FhirClient } from '../outbound/fhir-client.ts';
import { briefOutboundFailure, describeOutboundFailure, isPermanentError, isRetryableError, keptOutcome, OutboundError, OutboundHttpError } from '../outbound/outbound-errors.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { NewResource, ResourceStore, ResourceValidator } from '../store/resource-store.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { intakeRequests, recordSetAssemblies, recordSetAttachments, type AddedConsultant } from '../store/schema.ts';
import { partitionForBlinding } from './blinding.ts';
import { mapAsTheyCome } from './map-as-they-come.ts';
import { ReferrerBlobs } from './referrer-blobs.ts';
import { describeMissing, describeRecord, evaluateChecklist } from './checklist.ts';
import { admitToRecordSet } from './admit-to-record-set.ts';
import { referrerAudience } from '../access/audience.ts';
import { admitConsultant } from '../access/consultant-admission.ts';
import { consentSubjects, decideConsents } from './consent-decisions.ts';
import { collectSources } from './record-sources.ts';
import { attachmentsOf, storeRecord, type IntegrityFailure, type MissingDocument, type StoredRecord, type TooLargeAttachment } from './store-record.ts';
import { buildRecordSetBundle, buildRecordSetProvenance } from './record-set-bundle.ts';
import { failTasksWithoutRecords, NO_ENDPOINT_REASON, refusedReason, unreachableReason } from './assembly-failure.ts';
import { stopwatch, type ServiceMetrics } from '../metrics/metrics.ts';

export interface AssemblyParticipant {
  id: string;
  name: string;
  roles: readonly string[];
  organization: { reference: string; display?: string; identifier?: Identifier[] };
  /** The referrer's EHR: its own ids of other participants' organizations. A consultant's own server (record-set push). */
  fhir?: { baseUrl: string; aliases?: Record<string, string> };
  /** `push`: the consultant's record set is also pushed to its own FHIR server (record-push/). */
  recordSet?: 'pull' | 'push';
}

export interface AssembleRecordSetDeps {
  store: ResourceStore;
  blobs: BlobStore;
  /** Outbound FHIR client per participant id (the referrer's EHR). */
  clients: ReadonlyMap<string, FhirClient>;
  network: { get(id: string): AssemblyParticipant | undefined };
  /** This service's public base URL: attachments are served from `${publicUrl}/fhir/Binary/{sha256}`. */
  publicUrl: string;
  maxAttachmentBytes: number;
  /** ATTACHMENT_CONCURRENCY: attachments downloaded at the same time (default {@link ATTACHMENT_CONCURRENCY}). */
  attachmentConcurrency?: number;
  /** CONSENT_ATTESTATION_ALLOWED: a request without a consent reference may go on the referrer's attestation. */
  consentAttestationAllowed?: boolean;
  /** Checks each copy before it is stored (a non-conforming EHR record is reported, not stored). */
  validator: ResourceValidator;
  /** Disclosures to consultants are audited in the assembly's transaction. */
  audit: Pick<AuditLog, 'recordMany'>;
  /** The queue's retry limit: the attempt `retryLimit + 1` is the last one. */
  retryLimit: number;
  /** Where pushes of record sets to consultants' own servers are enqueued (in the disclosure's transaction). */
  jobs?: Pick<JobQueue, 'enqueue'>;
  now: () => Date;
  /** Where each attempt's outcome, time and bytes are counted. */
  metrics?: Pick<ServiceMetrics, 'recordSetAssembly'>;
}

export type { IntegrityFailure, MissingDocument, TooLargeAttachment } from './store-record.ts';

export interface ConsentOutcome {
  participant: string;
  permitted: boolean;
  /** What permitted it: a Consent read from the EHR, or the referrer's attestation (config-gated). */
  basis?: 'consent' | 'attestation';
  code?: string;
  reason?: string;
}

export type AssemblyStatus = Extract<BusinessStatus, 'records-ready' | 'awaiting-records' | 'awaiting-consent' | 'records-failed'>;

export type AssemblyResult =
  | { outcome: 'skipped'; reason: string }
  /** `bytes`: the attachment bytes of the records assembled (none when a Task was admitted to an existing record set). */
  | { outcome: 'assembled'; bundleId: string; withheldBundleId?: string; statuses: Record<string, AssemblyStatus>; bytes?: number }
  /** `error`: the outbound failure that ended it, for the job's log line (logged through its allowlist). */
  | { outcome: 'failed'; reason: string; error?: OutboundError };

/** Task statuses before the consultant has accepted: the assembly owns the business status. */
const WAITING_FOR_RECORDS = new Set<Task['status']>(['draft', 'requested', 'received', 'ready']);
const TERMINAL = new Set<Task['status']>(['completed', 'cancelled', 'rejected', 'failed', 'entered-in-error']);

/**
 * Runs one attempt of the record assembly of a referral. Re-reads the current state first:
 * nothing is done for a ServiceRequest that is no longer active, whose Tasks are all terminal,
 * or that moved past the version the job was enqueued for (an earlier attempt finished).
 * Outbound failures are classified once (outbound-errors.ts `classifyFailure`):
 * a transient one (EHR down, busy, slow) throws so the queue retries with backoff, not before the
 * EHR's `Retry-After`, and on the last attempt the assembly gives up instead; a permanent one
 * (a search, read, attachment fetch or token request refused: 403, 400, 401 after a fresh
 * token...) gives up at once. Giving up fails the Tasks that have no record set yet
 * (assembly-failure.ts). A named document answered 404 or 410
 * is a missing record, not a failure.
 */
export async function assembleRecordSet(job: Job<AssembleRecordSetJob>, deps: AssembleRecordSetDeps): Promise<AssemblyResult> {
  const elapsed = stopwatch();
  let result: AssemblyResult;
  try {
    result = await attemptAssembly(job, deps);
  } catch (err) {
    deps.metrics?.recordSetAssembly('retrying', elapsed());
    throw err;
  }
  deps.metrics?.recordSetAssembly(result.outcome, elapsed(), result.outcome === 'assembled' ? result.bytes : undefined);
  return result;
}

/** The attachment bytes a stored copy carries (their `size`, as verified when stored). */
function attachmentBytes(resource: StoredRecord['resource']): number {
  const attachments = resource.resourceType === 'DocumentReference' ? resource.content.map((c) => c.attachment) : resource.resourceType === 'DiagnosticReport' ? (resource.presentedForm ?? []) : [];
  return attachments.reduce((sum, a) => sum + (typeof a.size === 'number' ? a.size : 0), 0);
}

async function attemptAssembly(job: Job<AssembleRecordSetJob>, deps: AssembleRecordSetDeps): Promise<AssemblyResult> {
  const { serviceRequestId } = job.data;
  if (reusesRecordSet(job.data)) return admitToRecordSet({ ...job, data: job.data }, deps);
  const [intake] = await deps.store.database.select().from(intakeRequests).where(eq(intakeRequests.serviceRequestId, serviceRequestId));
  if (!intake) return { outcome: 'skipped', reason: 'no intake record' };
  const serviceRequest = await deps.store.read<ServiceRequest>('ServiceRequest', serviceRequestId, 'system');
  if (!serviceRequest || serviceRequest.status !== 'active') return { outcome: 'skipped', reason: 'ServiceRequest not active' };
  const revision = Number(job.data.recordsRevision ?? 0);
  const [previous] = await deps.store.database
    .select({ recordsRevision: recordSetAssemblies.recordsRevision })
    .from(recordSetAssemblies)
    .where(eq(recordSetAssemblies.serviceRequestId, serviceRequestId));
  if (previous && previous.recordsRevision >= revision) return { outcome: 'skipped', reason: 'already assembled for this revision of the records' };
  if (revision < intake.recordsRevision) return { outcome: 'skipped', reason: 'records were added since; a newer job assembles them' };
  const tasks = (await deps.store.readMany<Task>('Task', intake.taskIds, 'system')).filter((t) => !TERMINAL.has(t.status));
  if (tasks.length === 0) return { outcome: 'skipped', reason: 'every Task is terminal' };

  const original = intake.request as IntakeRequest;
  const added = intake.addedDocuments as { reference: string }[];
  const request: IntakeRequest = added.length ? { ...original, records: { ...original.records, documents: [...(original.records.documents ?? []), ...added] } } : original;
  const referrer = deps.network.get(intake.participantId);
  const client = deps.clients.get(intake.participantId);
  if (!referrer || !client) return fail(deps, job, intake.taskIds, tasks, 'The referring participant has no FHIR endpoint configured', { statusReason: NO_ENDPOINT_REASON });

  try {
    return await assemble({ job, deps, request, added: intake.addedConsultants, referrer, client, serviceRequest, tasks });
  } catch (err) {
    if (isPermanentError(err)) {
      return fail(deps, job, intake.taskIds, tasks, `The referring EHR refused a read: ${describeOutboundFailure(err)}`, {
        taskText: `The referring EHR refused a read: ${briefOutboundFailure(err)}`,
        statusReason: refusedReason(err),
        error: err,
        ...(err instanceof OutboundHttpError && err.outcome ? { outcome: keptOutcome(err.outcome) } : {}),
      });
    }
    if (!isRetryableError(err)) throw err;
    if (job.attempt < deps.retryLimit + 1) {
      // The EHR said when to come back (429/503 Retry-After): the queue holds the retry until then.
      if (err instanceof OutboundError && err.retryAt) throw new RetryLaterError(err.retryAt, { cause: err });
      throw err;
    }
    const error = err as OutboundError;
    return fail(deps, job, intake.taskIds, tasks, `The referring EHR could not be reached after ${job.attempt} attempts: ${describeOutboundFailure(error)}`, {
      taskText: `The referring EHR could not be reached after ${job.attempt} attempts: ${briefOutboundFailure(error)}`,
      statusReason: unreachableReason(job.attempt),
      error,
      ...(err instanceof OutboundHttpError && err.outcome ? { outcome: keptOutcome(err.outcome) } : {}),
    });
  }
}

interface AssemblyContext {
  job: Job<AssembleRecordSetJob>;
  deps: AssembleRecordSetDeps;
  request: IntakeRequest;
  /** Clinics added after intake, with the consent each goes by. */
  added: readonly AddedConsultant[];
  referrer: AssemblyParticipant;
  client: FhirClient;
  serviceRequest: ServiceRequest;
  tasks: Task[];
}

async function assemble(ctx: AssemblyContext): Promise<AssemblyResult> {
  const { deps, request, client } = ctx;
  const report = { missingDocuments: [] as MissingDocument[], integrityFailures: [] as IntegrityFailure[], tooLarge: [] as TooLargeAttachment[] };

  // 1. Sources: named documents (first opinion too: blinding needs them), then the searches,
  //    page by page; and 2. as they come, their attachments into the blob store, verified
  //    against what the source declared, a few records at a time; results in source order.
  //    Each record becomes this service's copy. Which attachments of a page this referrer's EHR
  //    already gave us is looked up once per page; what is fetched is recorded as theirs once
  //    the fetching is over, or has failed (the retry skips it).
  const referrerBlobs = new ReferrerBlobs(deps.store.database, ctx.referrer.id);
  const stored = await mapAsTheyCome(
    collectSources(request, client, report.missingDocuments),
    deps.attachmentConcurrency ?? ATTACHMENT_CONCURRENCY,
    ({ resource, source }) => storeRecord(resource, source, ctx, referrerBlobs, report),
    (batch) => referrerBlobs.lookUp(batch.flatMap(({ resource }) => attachmentsOf(resource))),
  ).catch(async (err: unknown) => {
    await referrerBlobs.save().catch(() => undefined);
    throw err;
  });
  await referrerBlobs.save();
  const entries = stored.filter((e): e is StoredRecord => e !== undefined);

  // 3. Checklist, blinding, consent.
  const checklist = evaluateChecklist(request.kind, entries.map((e) => describeRecord(e.resource)));
  const { disclosed, withheld } = partitionForBlinding(entries, {
    blinded: request.blinded,
    firstOpinionReferences: (request.firstOpinion?.documents ?? []).map((d) => absoluteReference(client.baseUrl, d.reference)),
  });
  const subjects = consentSubjects(request, ctx.added, (id) => deps.network.get(id));
  const consultants = subjects.map((s) => s.participant);
  const decisions = await decideConsents(subjects, {
    patientReference: request.patient.reference,
    client,
    aliases: ctx.referrer.fhir?.aliases,
    now: deps.now(),
    attestationAllowed: deps.consentAttestationAllowed ?? false,
  });

  // 4. One transaction: Bundles, copies, Provenance, Tasks, ServiceRequest, disclosures' AuditEvents, the report.
  const now = deps.now();
  const fhirBaseUrl = `${deps.publicUrl}/fhir`;
  const bundleId = randomUUID();
  const withheldBundleId = withheld.length > 0 ? randomUUID() : undefined;
  // Only a clinic with an open Task is given the records: one whose Task ended (declined,
  // cancelled, consent withdrawn, opinion in) gets no newer version of them.
  const open = new Set(ctx.tasks.map((t) => t.owner?.reference));
  const permitted = checklist.complete ? [...decisions].filter(([id, d]) => d.permitted && open.has(deps.network.get(id)?.organization.reference)).map(([id]) => id) : [];
  const statuses: Record<string, AssemblyStatus> = {};
  const missingText = checklist.missingRequired.map(describeMissing).join('; ');
  const referrerSide = referrerAudience(ctx.referrer.id, ctx.serviceRequest.requester?.reference);
  const recordSets = [{ id: bundleId, records: disclosed, access: [...referrerSide, ...permitted] }];
  if (withheldBundleId) recordSets.push({ id: withheldBundleId, records: withheld.map((w) => w.entry), access: referrerSide });

  await deps.store.withTransaction(async (tx) => {
    const items: NewResource[] = [];
    for (const set of recordSets) {
      const copies = set.records.map((r) => r.resource);
      items.push(
        { resource: buildRecordSetBundle(set.id, set.records, now, fhirBaseUrl), access: set.access },
        { resource: buildRecordSetProvenance({ id: randomUUID(), bundleId: set.id, serviceRequestId: ctx.serviceRequest.id as string, records: copies, referrerOrganization: ctx.referrer.organization, now }), access: set.access },
        ...copies.map((resource) => ({ resource, access: set.access })),
      );
      const attachments = [...new Set(set.records.flatMap((r) => r.blobs))];
      if (attachments.length > 0) await tx.database.insert(recordSetAttachments).values(attachments.map((sha256) => ({ bundleId: set.id, sha256 }))).onConflictDoNothing();
    }
    await tx.createMany(items);

    // Disclosure: the consultants permitted to read the record set from now on, admitted to the
    // case itself (referral, Task, first opinion) the first time.
    const admitted = new Map<string, string[]>();
    for (const participantId of permitted) {
      const participant = deps.network.get(participantId);
      const task = ctx.tasks.find((t) => t.owner?.reference === participant?.organization.reference);
      if (!task) continue;
      admitted.set(participantId, await admitConsultant(tx, ctx.serviceRequest, task, participantId));
      // A clinic with its own FHIR server gets this version of the record set pushed there (record-push/).
      if (deps.jobs && pushesRecordSets(participant)) {
        await schedulePush(tx, deps.jobs, { participantId, taskId: task.id as string, serviceRequestId: ctx.serviceRequest.id as string, bundleId }, now);
      }
    }
    await deps.audit.recordMany(
      permitted.map((participantId) => ({
        action: 'disclose' as const,
        outcome: 'success' as const,
        agent: { participantId },
        patientReference: absoluteReference(client.baseUrl, request.patient.reference),
        entities: [
          ...(admitted.get(participantId) ?? []).map((reference) => ({ reference })),
          { reference: `Bundle/${bundleId}` },
          ...disclosed.map((r) => ({ reference: `${r.resource.resourceType}/${r.resource.id}` })),
        ],
        description: `Record set of ServiceRequest/${ctx.serviceRequest.id} made available to the consultant`,
      })),
      tx,
    );

    for (const task of ctx.tasks) {
      const participant = consultants.find((c) => c?.organization.reference === task.owner?.reference);
      const decision = participant ? decisions.get(participant.id) : undefined;
      let status: AssemblyStatus;
      let text: string | undefined;
      if (!checklist.complete) {
        status = 'awaiting-records';
        text = `Missing required records: ${missingText}`;
      } else if (!decision?.permitted) {
        status = 'awaiting-consent';
        text = decision && !decision.permitted ? decision.reason : 'The consultant is not in the network';
      } else {
        status = 'records-ready';
      }
      if (participant) statuses[participant.id] = status;
      const input = [{ type: { text: 'record-set' }, valueReference: { reference: `Bundle/${bundleId}` } }];
      let updated: Task;
      if (WAITING_FOR_RECORDS.has(task.status)) {
        const { input: _input, ...rest } = task;
        updated = { ...rest, businessStatus: businessStatus(status, text), lastModified: now.toISOString(), ...(status === 'records-ready' ? { input } : {}) };
      } else if (status === 'records-ready') {
        // The consultant is already working on it: only point at the newest record set; its own business status stands.
        updated = { ...task, input, lastModified: now.toISOString() };
      } else {
        // Added records could not be disclosed (consent gone): the consultant keeps what it was given.
        continue;
      }
      await tx.update(updated, { expectedVersion: task.meta?.versionId });
    }

    await tx.update<ServiceRequest>(
      { ...ctx.serviceRequest, supportingInfo: [...(ctx.serviceRequest.supportingInfo ?? []), { reference: `Bundle/${bundleId}`, display: 'Record set' }] },
      { expectedVersion: ctx.serviceRequest.meta?.versionId },
    );

    await saveReport(tx, ctx.job, now, {
      status: !checklist.complete ? 'awaiting-records' : permitted.length === 0 ? 'awaiting-consent' : 'records-ready',
      bundleId,
      withheldBundleId: withheldBundleId ?? null,
      missingRequired: checklist.missingRequired,
      missingRecommended: checklist.missingRecommended,
      ...report,
      consent: [...decisions].map(([participant, d]): ConsentOutcome => (d.permitted ? { participant, permitted: true, basis: d.basis } : { participant, permitted: false, code: d.code, reason: d.reason })),
      failureReason: null,
      failureOutcome: null,
    });
  });
  return { outcome: 'assembled', bundleId, ...(withheldBundleId ? { withheldBundleId } : {}), statuses, bytes: entries.reduce((sum, e) => sum + attachmentBytes(e.resource), 0) };
}

/** How many records have their attachments fetched at the same time, by default (ATTACHMENT_CONCURRENCY). */
export const ATTACHMENT_CONCURRENCY = 4;

/**
 * Gives up (assembly-failure.ts): every open Task whose clinic has no record set yet becomes
 * `failed`, and the referral settles. `reason` (with the EHR's words) and `outcome` are for the
 * referrer's summary; the Task, which an admitted consulting clinic reads too, gets `taskText`
 * (the call, status and issue codes only) and `statusReason` (plain words).
 */
async function fail(
  deps: AssembleRecordSetDeps,
  job: Job<AssembleRecordSetJob>,
  referralTaskIds: readonly string[],
  tasks: Task[],
  reason: string,
  details: { statusReason: string; taskText?: string; outcome?: OperationOutcome | undefined; error?: OutboundError },
): Promise<AssemblyResult> {
  const now = deps.now();
  await deps.store.withTransaction(async (tx) => {
    const failure = { taskText: details.taskText ?? reason, statusReason: details.statusReason };
    await failTasksWithoutRecords(tx, { serviceRequestId: job.data.serviceRequestId, referralTaskIds, taskIds: tasks.map((t) => t.id as string), failure, now });
    await saveReport(tx, job, now, {
      status: 'records-failed',
      bundleId: null,
      withheldBundleId: null,
      missingRequired: [],
      missingRecommended: [],
      missingDocuments: [],
      integrityFailures: [],
      tooLarge: [],
      consent: [],
      failureReason: reason,
      failureOutcome: details.outcome ?? null,
    });
  });
  return { outcome: 'failed', reason, ...(details.error ? { error: details.error } : {}) };
}

type ReportRow = Omit<typeof recordSetAssemblies.$inferInsert, 'serviceRequestId' | 'attempts' | 'updatedAt'>;

async function saveReport(tx: ResourceStore, job: Job<AssembleRecordSetJob>, now: Date, row: ReportRow): Promise<void> {
  const values = { ...row, serviceRequestId: job.data.serviceRequestId, attempts: job.attempt, recordsRevision: Number(job.data.recordsRevision ?? 0), updatedAt: now };
  await tx.database.insert(recordSetAssemblies).values(values).onConflictDoUpdate({ target: recordSetAssemblies.serviceRequestId, set: values });
}
