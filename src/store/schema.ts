import type { OperationOutcome, Resource } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { bigint, customType, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';

/**
 * The database schema, one definition for PostgreSQL and PGlite. `drizzle-kit generate`
 * (npm run db:generate) turns changes here into SQL migrations in ./migrations.
 */

/** Current version of every FHIR resource the service holds. */
export const resources = pgTable(
  'resource',
  {
    resourceType: text('resource_type').notNull(),
    id: text('id').notNull(),
    versionId: integer('version_id').notNull(),
    lastUpdated: timestamp('last_updated', { withTimezone: true, mode: 'date' }).notNull(),
    content: jsonb('content').$type<Resource>().notNull(),
    /** Participant ids allowed to read this resource; every read and search filters on it. */
    access: text('access').array().notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.resourceType, t.id] }),
    index('resource_content_idx').using('gin', sql`${t.content} jsonb_path_ops`),
    index('resource_access_idx').using('gin', t.access),
    index('resource_type_updated_idx').on(t.resourceType, t.lastUpdated, t.id),
  ],
);

/** Every version of every resource, the current one included (vread, _history). */
export const resourceHistory = pgTable(
  'resource_history',
  {
    resourceType: text('resource_type').notNull(),
    id: text('id').notNull(),
    versionId: integer('version_id').notNull(),
    lastUpdated: timestamp('last_updated', { withTimezone: true, mode: 'date' }).notNull(),
    content: jsonb('content').$type<Resource>().notNull(),
    access: text('access').array().notNull(),
  },
  (t) => [primaryKey({ columns: [t.resourceType, t.id, t.versionId] })],
);

/**
 * The referrer's own request id (placer identifier) per participant: the idempotency key
 * of intake. `request` keeps the validated intake input for later steps (record assembly).
 */
/** A consulting clinic added to a referral after intake (intake_request.added_consultants). */
export interface AddedConsultant {
  participantId: string;
  taskId: string;
  /** The Consent named when it was added; without one, the referral's own Consent applies. */
  consent?: { reference: string };
  /** The referrer attested consent for this clinic (counts only where attestation is allowed and no Consent applies). */
  consentAttested: boolean;
}

export const intakeRequests = pgTable('intake_request', {
  participantId: text('participant_id').notNull(),
  requestId: text('request_id').notNull(),
  contentHash: text('content_hash').notNull(),
  serviceRequestId: text('service_request_id').notNull(),
  taskIds: text('task_ids').array().notNull(),
  request: jsonb('request').notNull(),
  /** Documents the referrer added later (`POST /second-opinions/{id}/records`), as `{reference}` objects. */
  addedDocuments: jsonb('added_documents').notNull().default([]),
  /**
   * Consulting clinics added after intake (`POST /second-opinions/{id}/consultants`), each with
   * its Task and the consent it was added under: `{participantId, taskId, consent?, consentAttested}`.
   */
  addedConsultants: jsonb('added_consultants').$type<AddedConsultant[]>().notNull().default([]),
  /** Bumped by every addition of records; each assembly job is for one revision. */
  recordsRevision: integer('records_revision').notNull().default(0),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
}, (t) => [primaryKey({ columns: [t.participantId, t.requestId] }), uniqueIndex('intake_request_service_request_idx').on(t.serviceRequestId)]);

/** Client-assertion `jti`s seen by the token endpoint, kept until the assertion expires. */
export const usedAssertions = pgTable(
  'client_assertion_jti',
  {
    clientId: text('client_id').notNull(),
    jti: text('jti').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.clientId, t.jti] }), index('client_assertion_jti_expires_idx').on(t.expiresAt)],
);

/**
 * bytea as a Node Buffer on both drivers (node-postgres returns a Buffer, PGlite a Uint8Array).
 * Writes pass the Buffer through: both drivers send it as binary bytea.
 */
const bytea = customType<{ data: Buffer; driverData: Uint8Array }>({
  dataType: () => 'bytea',
  fromDriver: (value) => (Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)),
});

/**
 * Attachment bytes as the database kept them before they moved to a blob store made for bytes
 * (`BLOB_STORE`, src/store/blob-backend.ts): one upload per row, its bytes in `blob_chunk`.
 * Nothing writes here any more; a blob whose `content_id` is still set is served from its
 * chunks until `npm run blobs:migrate` moves it out and deletes them (cascade). Uploads
 * that never became a blob (their process died) are swept by `BlobStore.sweep`.
 */
export const blobContents = pgTable('blob_content', {
  id: uuid('id').primaryKey(),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
});

/** Fixed-size pieces of a blob content (the last one may be shorter), in order by `seq`. */
export const blobChunks = pgTable(
  'blob_chunk',
  {
    contentId: uuid('content_id')
      .notNull()
      .references(() => blobContents.id, { onDelete: 'cascade' }),
    seq: integer('seq').notNull(),
    data: bytea('data').notNull(),
  },
  (t) => [primaryKey({ columns: [t.contentId, t.seq] })],
);

/**
 * Content-addressed attachments, stored once however many documents carry them: the metadata
 * here, the bytes in the blob store under `object_key` (src/store/blob-backend.ts). The row is
 * inserted only once the bytes are durable there, so a row never lacks its bytes. `sha1` is
 * FHIR's `Attachment.hash` (base64 of the raw digest). A blob written before the blob store
 * existed has no `object_key` yet but a `content_id` (and its chunk size and count): its bytes
 * are still in `blob_chunk` until `npm run blobs:migrate` moves them.
 */
export const blobs = pgTable('blob', {
  /** Lower-case hex SHA-256 of the bytes: the content address. */
  sha256: text('sha256').primaryKey(),
  sha1: text('sha1').notNull(),
  size: bigint('size', { mode: 'number' }).notNull(),
  contentType: text('content_type').notNull(),
  /** Where the blob store keeps the bytes (a path under BLOB_DIR, or an S3 key under BLOB_S3_PREFIX). */
  objectKey: text('object_key').unique('blob_object_key_unique'),
  /** Legacy: the bytes' chunks in the database, until migrated. */
  chunkSize: integer('chunk_size'),
  chunkCount: integer('chunk_count'),
  contentId: uuid('content_id')
    .unique('blob_content_id_unique')
    .references(() => blobContents.id),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
}, (t) => [index('blob_sha1_size_idx').on(t.sha1, t.size)]);

/**
 * The latest record-set assembly of each referral, machine-readable for the
 * referral summary: which Bundles were made, what is missing, which attachments failed their
 * integrity check or were too large, and the consent decision per consultant. One row per
 * ServiceRequest, replaced by each assembly run in the same transaction as its Bundles.
 */
export const recordSetAssemblies = pgTable('record_set_assembly', {
  serviceRequestId: text('service_request_id').primaryKey(),
  /** Task business status the assembly ended in: records-ready | awaiting-records | awaiting-consent | records-failed. */
  status: text('status').notNull(),
  /** The consultants' record-set Bundle (absent when assembly failed). */
  bundleId: text('bundle_id'),
  /** The referrer-only Bundle of documents withheld by blinding (absent when nothing was withheld). */
  withheldBundleId: text('withheld_bundle_id'),
  missingRequired: jsonb('missing_required').notNull(),
  missingRecommended: jsonb('missing_recommended').notNull(),
  missingDocuments: jsonb('missing_documents').notNull(),
  integrityFailures: jsonb('integrity_failures').notNull(),
  tooLarge: jsonb('too_large').notNull(),
  consent: jsonb('consent').notNull(),
  /** Why assembly gave up (records-failed), without PHI. */
  failureReason: text('failure_reason'),
  /**
   * The referring EHR's OperationOutcome when a read it refused ended the assembly: severity,
   * code, details.text, diagnostics, expression only, capped
   * (outbound-errors.ts `keptOutcome`). Shown to the referrer in its summary.
   */
  failureOutcome: jsonb('failure_outcome').$type<OperationOutcome>(),
  attempts: integer('attempts').notNull(),
  /** The `intake_request.records_revision` this assembly was made from (jobs for older revisions are skipped). */
  recordsRevision: integer('records_revision').notNull().default(0),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
});

/**
 * Which attachments (blob sha256) each record-set Bundle carries: `GET /fhir/Binary/{sha256}`
 * is readable by whoever may read a Bundle listed here for it.
 */
export const recordSetAttachments = pgTable(
  'record_set_attachment',
  {
    bundleId: text('bundle_id').notNull(),
    sha256: text('sha256')
      .notNull()
      .references(() => blobs.sha256),
  },
  (t) => [primaryKey({ columns: [t.bundleId, t.sha256] }), index('record_set_attachment_sha256_idx').on(t.sha256)],
);

/**
 * Which referrer's EHR each blob was fetched from. Assembly skips fetching an attachment whose
 * declared SHA-1 and size match bytes already stored only when they came from the same
 * referrer: a referrer must never get another organization's bytes into its record set by
 * declaring their hash.
 */
export const blobSources = pgTable(
  'blob_source',
  {
    sha256: text('sha256')
      .notNull()
      .references(() => blobs.sha256),
    participantId: text('participant_id').notNull(),
  },
  (t) => [primaryKey({ columns: [t.sha256, t.participantId] })],
);

/**
 * The post-back of each opinion to the referring EHR: one row per consult note,
 * written with the Task's completion, updated by the delivery job. The job's idempotency is
 * the EHR's conditional create on the note's identifier; this row is what people read
 * (summary, re-drive).
 */
export const opinionDeliveries = pgTable(
  'opinion_delivery',
  {
    /** Also the job's key: the consult-note DocumentReference id on this service. */
    id: text('id').primaryKey(),
    taskId: text('task_id').notNull(),
    serviceRequestId: text('service_request_id').notNull(),
    /** The referrer participant whose EHR receives it. */
    participantId: text('participant_id').notNull(),
    /** pending | delivered | failed */
    status: text('status').notNull(),
    attempts: integer('attempts').notNull().default(0),
    /** The last attempt's error, without PHI. */
    lastError: text('last_error'),
    /**
     * The EHR's OperationOutcome of the last failed attempt, as kept by
     * outbound-errors.ts `keptOutcome` (issues' severity, code, details.text, diagnostics,
     * expression; capped). Shown in the referrer's summary and the admin delivery list.
     */
    lastOutcome: jsonb('last_outcome').$type<OperationOutcome>(),
    /** The DocumentReference and Communication as created on the EHR (absolute URLs). */
    remoteDocument: text('remote_document'),
    remoteCommunication: text('remote_communication'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [index('opinion_delivery_task_idx').on(t.taskId), index('opinion_delivery_service_request_idx').on(t.serviceRequestId)],
);

/**
 * Topic-based Subscriptions (Subscriptions R5 Backport IG): one row per
 * Subscription a participant created at `POST /fhir/Subscription`. The Subscription resource
 * clients read is rendered from this row (`content` as created, with the live `status` and
 * `error`), so the status the delivery job sets is the one `$status` and reads show.
 */
export const subscriptions = pgTable(
  'subscription',
  {
    id: text('id').primaryKey(),
    /** The participant that created it; only it reads, searches or deletes it. */
    participantId: text('participant_id').notNull(),
    /**
     * The access keys the subscriber reads with (access/reader.ts `readerOf`): a Task change
     * reaches it only when the Task's access list holds one of them, whatever filters it asked for.
     */
    readerKeys: text('reader_keys').array().notNull(),
    /** The backport filter criteria, parsed: `[{ param: 'owner', reference: 'Organization/x' }]` (ANDed). */
    filters: jsonb('filters').$type<{ param: 'owner' | 'requester'; reference: string }[]>().notNull(),
    endpoint: text('endpoint').notNull(),
    /** `channel.header` lines sent with every notification (e.g. the receiver's own Authorization). */
    headers: text('headers').array().notNull(),
    /** Payload content: id-only | empty (full-resource is refused: no PHI leaves in a notification). */
    payload: text('payload').notNull(),
    heartbeatSeconds: integer('heartbeat_seconds'),
    /** requested (until the handshake succeeds) | active | error (deliveries keep failing) | off (past `end`). */
    status: text('status').notNull(),
    /** Events numbered since the subscription started: the last number given. */
    eventsSinceStart: bigint('events_since_start', { mode: 'number' }).notNull().default(0),
    /** Why the last delivery failed (no PHI: an HTTP status or a network error code). */
    lastError: text('last_error'),
    /** Failed delivery attempts since the last success. */
    failedAttempts: integer('failed_attempts').notNull().default(0),
    nextHeartbeatAt: timestamp('next_heartbeat_at', { withTimezone: true, mode: 'date' }),
    /** `Subscription.end`: no events or heartbeats after it. */
    endAt: timestamp('end_at', { withTimezone: true, mode: 'date' }),
    /** The Subscription as created (id, criteria, channel...), without the live status. */
    content: jsonb('content').$type<Resource>().notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [index('subscription_participant_idx').on(t.participantId), index('subscription_reader_keys_idx').using('gin', t.readerKeys)],
);

/** Every event of every Subscription, by number: what `$events` replays to a client that missed notifications. */
export const subscriptionEvents = pgTable(
  'subscription_event',
  {
    subscriptionId: text('subscription_id')
      .notNull()
      .references(() => subscriptions.id, { onDelete: 'cascade' }),
    eventNumber: bigint('event_number', { mode: 'number' }).notNull(),
    /** The focus: always a Task of this service (`Task`, its id and the version the event is about). */
    focusType: text('focus_type').notNull(),
    focusId: text('focus_id').notNull(),
    focusVersion: text('focus_version').notNull(),
    occurredAt: timestamp('occurred_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.subscriptionId, t.eventNumber] })],
);

/**
 * Record sets pushed to a consulting clinic's own FHIR server (network file
 * `recordSet: push`): one row per record-set version and clinic, written in the assembly's
 * transaction together with its job, updated by the push job. The clinic's server keeps the
 * push idempotent (conditional creates on identifiers of ours); this row is what people read
 * (admin list, re-drive) and what the next version's push builds on (`remote`).
 */
export const recordSetPushes = pgTable(
  'record_set_push',
  {
    /** Also the job's singleton key. */
    id: text('id').primaryKey(),
    /** The consultant participant whose server receives it. */
    participantId: text('participant_id').notNull(),
    taskId: text('task_id').notNull(),
    serviceRequestId: text('service_request_id').notNull(),
    /** The record-set Bundle (one version) pushed. */
    bundleId: text('bundle_id').notNull(),
    /** pending | pushed | failed | superseded (a newer record set was assembled before this one went out) | refused (consent withdrawn) */
    status: text('status').notNull(),
    attempts: integer('attempts').notNull().default(0),
    /** The last attempt's error, without PHI. */
    lastError: text('last_error'),
    /** The server's OperationOutcome of the last failed attempt, as kept by outbound-errors.ts `keptOutcome`. */
    lastOutcome: jsonb('last_outcome').$type<OperationOutcome>(),
    /** What the clinic's server created: relative references (`Task/abc`), by what they copy. */
    remote: jsonb('remote').$type<PushedResources>(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
    pushedAt: timestamp('pushed_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [uniqueIndex('record_set_push_bundle_participant_idx').on(t.bundleId, t.participantId), index('record_set_push_task_idx').on(t.taskId)],
);

/** The resources one push created (or found) on the clinic's server. */
export interface PushedResources {
  serviceRequest: string;
  task: string;
  /** The Task's version after this push (the next version's update sends it as If-Match). */
  taskVersion?: string;
  /** The record copies as created there, by the record each copies (`meta.source`: its URL on the referring EHR). */
  records: Record<string, string>;
}

/**
 * Follow-up questions after an opinion: one row per question a referrer asked a
 * consultant, written with the question's Communication; the answer fills it in, and the
 * answer's post-back to the referrer's EHR is tracked here as the opinion's is in
 * `opinion_delivery` (the job's idempotency is the EHR's conditional create on the
 * Communications' identifiers). Counting these rows is how the per-consultant limit is kept.
 */
export const followUps = pgTable(
  'follow_up',
  {
    /** The question's Communication id on this service. */
    id: text('id').primaryKey(),
    taskId: text('task_id').notNull(),
    serviceRequestId: text('service_request_id').notNull(),
    /** The referrer participant who asked (whose EHR receives the answer). */
    participantId: text('participant_id').notNull(),
    /** The consulting clinic asked. */
    consultantId: text('consultant_id').notNull(),
    askedAt: timestamp('asked_at', { withTimezone: true, mode: 'date' }).notNull(),
    dueAt: timestamp('due_at', { withTimezone: true, mode: 'date' }).notNull(),
    /** The answer's Communication id; null while the question is open. */
    answerId: text('answer_id'),
    answeredAt: timestamp('answered_at', { withTimezone: true, mode: 'date' }),
    /** The answer's post-back: null while unanswered, then pending | delivered | failed. */
    deliveryStatus: text('delivery_status'),
    attempts: integer('attempts').notNull().default(0),
    lastError: text('last_error'),
    lastOutcome: jsonb('last_outcome').$type<OperationOutcome>(),
    /** The question and the answer as created on the referrer's EHR (absolute URLs). */
    remoteQuestion: text('remote_question'),
    remoteAnswer: text('remote_answer'),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [index('follow_up_task_idx').on(t.taskId), index('follow_up_service_request_idx').on(t.serviceRequestId)],
);

/**
 * Coalesced reads of a referral summary (src/audit/audit-log.ts `recordCoalesced`): one row per
 * client, read (participant, action, outcome and what was read, hashed) and minute window,
 * naming the AuditEvent that records those reads. Inserting the row, or adding one to `reads`
 * when it is there, is one upsert: two replicas serving the same poll count it once each, and
 * the second waits for the first to commit. Rows of past windows are of no further use and are
 * pruned by the audit retention check; exporting an AuditEvent deletes its row.
 */
export const auditReadWindows = pgTable(
  'audit_read_window',
  {
    clientId: text('client_id').notNull(),
    readKey: text('read_key').notNull(),
    windowStart: timestamp('window_start', { withTimezone: true, mode: 'date' }).notNull(),
    eventId: text('event_id').notNull(),
    reads: integer('reads').notNull(),
  },
  (t) => [primaryKey({ columns: [t.clientId, t.readKey, t.windowStart] }), index('audit_read_window_event_idx').on(t.eventId), index('audit_read_window_start_idx').on(t.windowStart)],
);
