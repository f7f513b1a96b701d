/**
 * The gate every disclosure of records to a consulting clinic passes: the audited
 * reads (FHIR read, vread, history and search, Binary: audit/audited-read.ts) and the record-set
 * push (record-push/push-record-set.ts).
 *
 * - A withdrawal recorded by the referrer has already taken the clinic off the records' access
 *   lists (access/consent-withdrawal.ts), so such a read finds nothing (404); the gate names the
 *   reason in the refusal's AuditEvent, and refuses the push of a record set the clinic lost.
 * - Where the referral came with the EHR's Consent, the gate reads that Consent again before a
 *   clinic is given a record-set Bundle or attachment bytes, and before a push. A Consent that is
 *   now `inactive`, `rejected` or `entered-in-error` is a withdrawal for every clinic of the
 *   referral (one Consent covered them all): the same step as the referrer's
 *   (consults/withdraw-consent.ts), taken by the service, then this disclosure is refused.
 *
 * A clinic reads a record set as dozens of Binary requests in a row, so a Consent found still
 * active is trusted for CONSENT_RECHECK_SECONDS (default 30) per referral instead of asking the
 * EHR on every one: a withdrawal in the EHR shows within that time, the EHR is not asked a hundred
 * times a minute. A Consent the EHR cannot answer for (down, slow, refused) leaves the last
 * decision standing: assembly checked it; the next successful re-check catches a withdrawal.
 */
import type { Provenance, ServiceRequest, Task } from '@medplum/fhirtypes';
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { AuditLog } from '../audit/audit-log.ts';
import { withdrawInTransaction, type WithdrawConsentDeps } from '../consults/withdraw-consent.ts';
import type { IntakeRequest } from '../intake/intake-request.ts';
import type { FhirClient } from '../outbound/fhir-client.ts';
import { readConsent } from '../records/record-sources.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { intakeRequests, recordSetAttachments, resources } from '../store/schema.ts';
import { BoundedMap } from '../limits/bounded-map.ts';
import type { Caller } from './caller.ts';
import { bundleWithdrawnFrom, CONSENT_WITHDRAWN_REFUSAL, ConsentWithdrawnError, refusedForWithdrawal } from './consent-withdrawal.ts';

/** Consent statuses that end a consent the referral relied on. */
const ENDED = new Set(['inactive', 'rejected', 'entered-in-error']);

export interface DisclosureGateDeps {
  store: ResourceStore;
  /** Outbound FHIR client per participant id (the referrer's EHR, where its Consent lives). */
  clients: ReadonlyMap<string, FhirClient>;
  network: WithdrawConsentDeps['network'];
  /** The AuditLog the withdrawal records itself in (it holds this gate, hence the getter). */
  audit: () => Pick<AuditLog, 'recordMany'>;
  now: () => Date;
  /** How long a Consent found active is trusted before it is read again (CONSENT_RECHECK_SECONDS), ms. */
  recheckTtlMs: number;
}

export class DisclosureGate {
  private readonly deps: DisclosureGateDeps;
  /** Referral id -> until when its Consent counts as still active (bounded: a forgotten entry only costs one more read). */
  private readonly activeUntil = new BoundedMap<string, number>(10_000);

  constructor(deps: DisclosureGateDeps) {
    this.deps = deps;
  }

  /** Before a read's result reaches `caller`: throws ConsentWithdrawnError when the EHR's Consent ended meanwhile. */
  async beforeRead(caller: Pick<Caller, 'roles' | 'participantId'>, entities: readonly { reference: string }[]): Promise<void> {
    if (!caller.roles.includes('consultant')) return;
    const bundles = entities.filter((e) => e.reference.startsWith('Bundle/')).map((e) => e.reference.slice('Bundle/'.length));
    const binaries = entities.filter((e) => e.reference.startsWith('Binary/')).map((e) => e.reference.slice('Binary/'.length));
    if (binaries.length > 0) {
      const rows = await this.deps.store.database
        .selectDistinct({ bundleId: recordSetAttachments.bundleId })
        .from(recordSetAttachments)
        .innerJoin(resources, and(eq(resources.resourceType, 'Bundle'), eq(resources.id, recordSetAttachments.bundleId)))
        .where(and(inArray(recordSetAttachments.sha256, binaries), sql`${resources.access} @> ARRAY[${caller.participantId}]::text[]`));
      bundles.push(...rows.map((r) => r.bundleId));
    }
    for (const serviceRequestId of await this.referralsOf(bundles)) {
      if (!(await this.consentStillGiven(serviceRequestId))) throw new ConsentWithdrawnError();
    }
  }

  /** Why a read by `participantId` of `requested` was refused, when the reason is a withdrawal of consent. */
  async refusalReason(participantId: string, requested: readonly { reference: string }[]): Promise<string | undefined> {
    return (await refusedForWithdrawal(this.deps.store, participantId, requested)) ? CONSENT_WITHDRAWN_REFUSAL : undefined;
  }

  /** Before record set `bundleId` is pushed to `participantId`'s server: the reason to refuse, if any. */
  async beforePush(serviceRequestId: string, bundleId: string, participantId: string): Promise<string | undefined> {
    if ((await bundleWithdrawnFrom(this.deps.store, bundleId, participantId)) || !(await this.consentStillGiven(serviceRequestId))) {
      return 'Refused: the patient withdrew consent to disclose the records to this clinic';
    }
    return undefined;
  }

  /** The referrals whose record sets these Bundles are (their Provenance says which). */
  private async referralsOf(bundleIds: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    for (const bundleId of new Set(bundleIds)) {
      const rows = await this.deps.store.database
        .select({ content: resources.content })
        .from(resources)
        .where(and(eq(resources.resourceType, 'Provenance'), sql`${resources.content} @> ${JSON.stringify({ target: [{ reference: `Bundle/${bundleId}` }] })}::jsonb`))
        .limit(5);
      for (const row of rows) {
        const match = /^Record set of ServiceRequest\/([A-Za-z0-9\-.]{1,64})$/.exec((row.content as Provenance).reason?.[0]?.text ?? '');
        if (match?.[1]) found.add(match[1]);
      }
    }
    return found;
  }

  /**
   * Whether the Consent the referral was made with still holds (true when it came without one:
   * the referrer's attestation is not re-checked). When it ended, every clinic's consent is
   * withdrawn here, in one transaction, before answering false.
   */
  async consentStillGiven(serviceRequestId: string): Promise<boolean> {
    const until = this.activeUntil.get(serviceRequestId);
    if (until !== undefined && until > this.deps.now().getTime()) return true;
    const [intake] = await this.deps.store.database
      .select({ participantId: intakeRequests.participantId, request: intakeRequests.request, taskIds: intakeRequests.taskIds })
      .from(intakeRequests)
      .where(eq(intakeRequests.serviceRequestId, serviceRequestId));
    const request = intake?.request as IntakeRequest | undefined;
    const client = intake ? this.deps.clients.get(intake.participantId) : undefined;
    if (!intake || !request?.consent || !client) return true;
    let status: string | undefined;
    try {
      status = (await readConsent(request, client))?.status;
    } catch {
      return true;
    }
    if (status === undefined || !ENDED.has(status)) {
      if (this.deps.recheckTtlMs > 0) this.activeUntil.set(serviceRequestId, this.deps.now().getTime() + this.deps.recheckTtlMs);
      return true;
    }
    this.activeUntil.delete(serviceRequestId);
    // Refused either way; should the withdrawal lose a race with a concurrent Task change, the
    // clinic kept its access, so its next read re-checks and records the withdrawal then.
    await this.withdrawAll(serviceRequestId, intake.participantId, intake.taskIds, status).catch(() => undefined);
    return false;
  }

  private async withdrawAll(serviceRequestId: string, referrerId: string, taskIds: string[], status: string): Promise<void> {
    const org = this.deps.network.get(referrerId)?.organization;
    if (!org) return;
    const deps = { store: this.deps.store, network: this.deps.network, audit: this.deps.audit(), now: this.deps.now };
    await this.deps.store.withTransaction(async (tx) => {
      const serviceRequest = await tx.read<ServiceRequest>('ServiceRequest', serviceRequestId, 'system');
      if (!serviceRequest) return;
      const tasks = await tx.readMany<Task>('Task', taskIds, 'system');
      const participants = tasks.flatMap((t) => {
        const p = t.owner?.reference ? this.deps.network.findByOrganization(t.owner.reference) : undefined;
        return p ? [p.id] : [];
      });
      const agent = { reference: org.reference, ...(org.display ? { display: org.display } : {}) };
      await withdrawInTransaction(tx, serviceRequest, tasks, participants, { reason: `the patient's Consent on the referring EHR is now ${status}`, agent, actor: referrerId }, deps);
    });
  }
}
