/**
 * Where AuditEvents go (issue 3 §5): each one is built by `buildAuditEvent` and stored as a
 * FHIR resource in the store of record, readable only through the auditor role (the access
 * list is empty, so no participant sees it as its own).
 *
 * `record(input, tx)` writes inside the caller's transaction when one is given, so an
 * AuditEvent of a disclosure commits with the disclosure itself.
 */
import type { AuditEvent } from '@medplum/fhirtypes';
import { randomUUID } from 'node:crypto';
import { SERVICE_DEVICE_DISPLAY } from '../fhir/constants.ts';
import type { Caller } from '../access/caller.ts';
import type { DisclosureGate } from '../access/disclosure-gate.ts';
import type { ResourceStore } from '../store/resource-store.ts';
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

  /** Stores several AuditEvents in one statement, in `tx` when given. */
  async recordMany(inputs: readonly AuditRecordInput[], tx?: ResourceStore): Promise<void> {
    if (inputs.length === 0) return;
    await (tx ?? this.deps.store).createMany(inputs.map((input) => ({ resource: this.build(input), access: [] })));
  }
}
