import type { Resource } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

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
export const intakeRequests = pgTable('intake_request', {
  participantId: text('participant_id').notNull(),
  requestId: text('request_id').notNull(),
  contentHash: text('content_hash').notNull(),
  serviceRequestId: text('service_request_id').notNull(),
  taskIds: text('task_ids').array().notNull(),
  request: jsonb('request').notNull(),
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
