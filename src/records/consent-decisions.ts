/**
 * Whether the patient's consent covers each consulting clinic of a referral: the
 * clinics named at intake go by the referral's Consent (or the referrer's
 * attestation); a clinic added later goes by the Consent named when it was added, else by the
 * referral's. Each distinct Consent is read from the referring EHR once.
 */
import type { Consent } from '@medplum/fhirtypes';
import type { IntakeRequest } from '../intake/intake-request.ts';
import type { FhirClient } from '../outbound/fhir-client.ts';
import type { AddedConsultant } from '../store/schema.ts';
import { evaluateConsent, type ConsentDecision } from './consent-policy.ts';
import { recognizeConsultants, unreadableHint, type RecognisableParticipant } from './consent-recipients.ts';
import { readConsent } from './record-sources.ts';

/** One clinic to decide for, and the consent it goes by. */
export interface ConsentSubject<P extends RecognisableParticipant> {
  participant: P;
  consent?: { reference: string } | undefined;
  /** The referrer's attestation for this clinic (counts only where allowed and no Consent applies). */
  attested: boolean;
}

/**
 * The clinics of a referral and the consent each goes by: intake's consultants, then those
 * added later (`addedConsultants`, or only those with `onlyTasks`' Tasks). Unknown participants are left out.
 */
export function consentSubjects<P extends RecognisableParticipant>(
  request: IntakeRequest,
  added: readonly AddedConsultant[],
  participant: (id: string) => P | undefined,
  onlyTasks?: readonly string[],
): ConsentSubject<P>[] {
  const subjects: ConsentSubject<P>[] = [];
  const push = (id: string, consent: { reference: string } | undefined, attested: boolean) => {
    const p = participant(id);
    if (p) subjects.push({ participant: p, consent, attested: attested && consent === undefined });
  };
  if (!onlyTasks) for (const id of request.consultants) push(id, request.consent, request.consentAttested === true);
  for (const a of added) if (!onlyTasks || onlyTasks.includes(a.taskId)) push(a.participantId, a.consent ?? request.consent, a.consentAttested);
  return subjects;
}

export interface ConsentContext {
  patientReference: string;
  client: FhirClient;
  /** The referrer's EHR ids of the network's organizations (network file `fhir.aliases`). */
  aliases: Readonly<Record<string, string>> | undefined;
  now: Date;
  attestationAllowed: boolean;
}

/** Participant id -> the consent decision for it. Transient EHR failures are thrown (the job retries). */
export async function decideConsents<P extends RecognisableParticipant & { id: string }>(subjects: readonly ConsentSubject<P>[], ctx: ConsentContext): Promise<Map<string, ConsentDecision>> {
  const byConsent = new Map<string, ConsentSubject<P>[]>();
  for (const s of subjects) {
    const key = s.consent?.reference ?? '';
    byConsent.set(key, [...(byConsent.get(key) ?? []), s]);
  }
  const decisions = new Map<string, ConsentDecision>();
  for (const [reference, group] of byConsent) {
    const consent: Consent | undefined = reference ? await readConsent({ consent: { reference } } as IntakeRequest, ctx.client) : undefined;
    const recipients = await recognizeConsultants(consent, group.map((s) => s.participant), ctx.aliases, ctx.client);
    for (const s of group) {
      const decision = evaluateConsent(consent, {
        consultant: recipients.byParticipant.get(s.participant.id)!,
        patientReference: ctx.patientReference,
        now: ctx.now,
        attestationAllowed: ctx.attestationAllowed,
        attested: s.attested,
      });
      decisions.set(s.participant.id, !decision.permitted && decision.code === 'not-a-recipient' ? { ...decision, reason: decision.reason + unreadableHint(recipients.unreadable) } : decision);
    }
  }
  return decisions;
}
