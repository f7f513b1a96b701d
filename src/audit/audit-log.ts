/**
 * Where AuditEvents go: each one is built by `buildAuditEvent` and stored as a
 * FHIR resource in the store of record, readable only through the auditor role (the access
 * list is empty, so no participant sees it as its own).
 *
 * `record(input, tx)` writes inside the caller's transaction when one is given, so an
 * AuditEvent of a disclosure commits with the disclosure itself.
 */
import type { AuditEvent, Extension } from '@medplum/fhirtypes';
import { createHash, randomUUID } from 'node:crypto';
import { and, eq, lt, sql } from 'drizzle-orm';
import { EXTENSION, SERVICE_DEVICE_DISPLAY } from '../fhir/constants.ts';
import type { Caller } from '../access/caller.ts';
import type { DisclosureGate } from '../access/disclosure-gate.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { auditReadWindows, resourceHistory } from '../store/schema.ts';
import { buildAuditEvent, type AuditAction, type AuditEntityInput, type AuditOutcome } from './audit-event.ts';

export interface AuditRecordInput {
  action: AuditAction;
  outcome: AuditOutcome;
  /**
   * Who: the network participant, and the SMART client when the event comes from a request.
   * A disclosure made by the assembly job names the receiving participant and no client.
   */
  agent: { participantId: string; clientId?: string };
  entities: readonly AuditEntityInput[];
  /** The patient whose data it is (absolute reference on the referrer's EHR), when known. */
  patientReference?: string;
  /** Why a read was refused, or what was disclosed. Must carry no PHI. */
  description?: string;
  /** For searches: the query string as sent (references and codes only). */
  query?: string;
  /** The request (or job run) the act belongs to: the caller's `requestId`, when it has one. */
  requestId?: string;
}

/** Who acted, as an AuditEvent names it: the caller's participant and client, and its request for correlation. */
export function actedBy(caller: Pick<Caller, 'participantId' | 'requestId'> & { clientId?: string }): Pick<AuditRecordInput, 'agent' | 'requestId'> {
  return {
    agent: { participantId: caller.participantId, ...(caller.clientId ? { clientId: caller.clientId } : {}) },
    ...(caller.requestId ? { requestId: caller.requestId } : {}),
  };
}

export interface AuditLogDeps {
  store: ResourceStore;
  network: { get(id: string): { organization: { reference: string } } | undefined };
  now: () => Date;
  /** This service's public base URL: identifies the observer. */
  publicUrl: string;
  /** The disclosure gate audited reads pass (access/disclosure-gate.ts); none in unit tests. */
  gate?: Pick<DisclosureGate, 'beforeRead' | 'refusalReason'>;
}

/** Reads of the same summary by the same client within one window are one AuditEvent. */
export const COALESCE_WINDOW_MS = 60_000;

/** The start of the fixed window `at` falls in (windows start on the minute). */
export function windowStart(at: Date): Date {
  return new Date(Math.floor(at.getTime() / COALESCE_WINDOW_MS) * COALESCE_WINDOW_MS);
}

/** What makes two reads "the same": participant, action, outcome, what was read, the patient, the query. Not the request id. */
function readKeyOf(input: AuditRecordInput): string {
  const key = {
    participant: input.agent.participantId,
    action: input.action,
    outcome: input.outcome,
    entities: input.entities.map((e) => `${e.role ?? ''} ${e.reference}`).sort(),
    patient: input.patientReference ?? '',
    query: input.query ?? '',
    description: input.description ?? '',
  };
  return createHash('sha256').update(JSON.stringify(key)).digest('hex');
}

/** The AuditEvent with `reads` as its read count and `period` from `start` to `end`. */
function withReads(event: AuditEvent, reads: number, start: string, end: string): AuditEvent {
  const others = (event.extension ?? []).filter((e) => e.url !== EXTENSION.auditReadCount);
  const count: Extension = { url: EXTENSION.auditReadCount, valuePositiveInt: reads };
  return { ...event, extension: [...others, count], period: { start, end } };
}

export class AuditLog {
  private readonly deps: AuditLogDeps;

  constructor(deps: AuditLogDeps) {
    this.deps = deps;
  }

  /** The disclosure gate audited reads pass, when there is one. */
  get gate(): AuditLogDeps['gate'] {
    return this.deps.gate;
  }

  /** Builds the AuditEvent (with the caller's request id when the input carries one). */
  build(input: AuditRecordInput): AuditEvent {
    const participant = this.deps.network.get(input.agent.participantId);
    const { requestId } = input;
    const event = buildAuditEvent({
      action: input.action,
      outcome: input.outcome,
      agent: {
        participantId: input.agent.participantId,
        organizationReference: participant?.organization.reference ?? `Organization/${input.agent.participantId}`,
        ...(input.agent.clientId ? { clientId: input.agent.clientId } : {}),
      },
      entities: input.entities,
      recorded: this.deps.now(),
      source: { observer: { display: SERVICE_DEVICE_DISPLAY, identifier: { system: 'urn:ietf:rfc:3986', value: this.deps.publicUrl } } },
      ...(input.patientReference ? { patientReference: input.patientReference } : {}),
      ...(input.description ? { description: input.description } : {}),
      ...(input.query !== undefined ? { query: input.query } : {}),
      ...(requestId ? { requestId } : {}),
    });
    return { ...event, id: randomUUID() };
  }

  /** Stores one AuditEvent, in `tx` when given. */
  async record(input: AuditRecordInput, tx?: ResourceStore): Promise<AuditEvent> {
    return (tx ?? this.deps.store).create(this.build(input), []);
  }

  /**
   * Records a read that clients poll (a referral summary) so that repeated identical reads by
   * the same client within one minute window are one AuditEvent: the first read of the window
   * stores it with read count 1 (`audit-read-count` extension) and `period` start = end = now;
   * each later one adds one to the count and moves `period.end`, as a new version of the same
   * AuditEvent (earlier versions, which differ only in count and end, are not kept).
   *
   * The window's row (`audit_read_window`) is upserted first, in the transaction: the upsert
   * locks it, so two replicas serving the same poll at once count both reads, one after the
   * other, in the one AuditEvent. Without a client id the read is recorded as `record` does.
   */
  async recordCoalesced(input: AuditRecordInput): Promise<AuditEvent> {
    const clientId = input.agent.clientId;
    if (!clientId) return this.record(input);
    return this.deps.store.withTransaction(async (tx) => {
      const now = this.deps.now();
      const fresh = this.build(input);
      const [window] = await tx.database
        .insert(auditReadWindows)
        .values({ clientId, readKey: readKeyOf(input), windowStart: windowStart(now), eventId: fresh.id as string, reads: 1 })
        .onConflictDoUpdate({ target: [auditReadWindows.clientId, auditReadWindows.readKey, auditReadWindows.windowStart], set: { reads: sql`${auditReadWindows.reads} + 1` } })
        .returning({ eventId: auditReadWindows.eventId, reads: auditReadWindows.reads });
      const { eventId, reads } = window as { eventId: string; reads: number };
      const at = now.toISOString();
      const existing = reads > 1 ? await tx.read<AuditEvent>('AuditEvent', eventId, 'system') : undefined;
      // The first read of the window; or its AuditEvent was archived meanwhile (export with --force): a new one under the same id.
      if (!existing) return tx.create(withReads({ ...fresh, id: eventId }, reads, at, at), []);
      const version = existing.meta?.versionId as string;
      const updated = await tx.update(withReads(existing, reads, existing.period?.start ?? existing.recorded, at), { expectedVersion: version });
      await tx.database
        .delete(resourceHistory)
        .where(and(eq(resourceHistory.resourceType, 'AuditEvent'), eq(resourceHistory.id, eventId), lt(resourceHistory.versionId, Number(updated.meta?.versionId))));
      return updated;
    });
  }

  /** Stores several AuditEvents in one statement, in `tx` when given. */
  async recordMany(inputs: readonly AuditRecordInput[], tx?: ResourceStore): Promise<void> {
    if (inputs.length === 0) return;
    await (tx ?? this.deps.store).createMany(inputs.map((input) => ({ resource: this.build(input), access: [] })));
  }
}
