import { describe, expect, it } from 'vitest';
import type { IntakeRequest } from '../intake/intake-request.ts';
import type { AddedConsultant } from '../store/schema.ts';
import { consentSubjects } from './consent-decisions.ts';

const participant = (id: string) => (id === 'gone' ? undefined : { id, name: id, organization: { display: id } });
const request = (overrides: Partial<IntakeRequest>) => ({ consultants: ['a', 'b'], consentAttested: false, ...overrides }) as IntakeRequest;

describe('consentSubjects: which consent each clinic of a referral goes by', () => {
  const added: AddedConsultant[] = [
    { participantId: 'c', taskId: 't-c', consent: { reference: 'Consent/for-c' }, consentAttested: false },
    { participantId: 'd', taskId: 't-d', consentAttested: true },
    { participantId: 'gone', taskId: 't-gone', consentAttested: false },
  ];

  it("intake's clinics go by the referral's Consent, added ones by their own, else the referral's; unknown participants are left out", () => {
    const subjects = consentSubjects(request({ consent: { reference: 'Consent/referral' } }), added, participant);
    expect(subjects.map((s) => [s.participant.id, s.consent?.reference, s.attested])).toEqual([
      ['a', 'Consent/referral', false],
      ['b', 'Consent/referral', false],
      ['c', 'Consent/for-c', false],
      // An attestation counts only where no Consent applies: the referral's does here.
      ['d', 'Consent/referral', false],
    ]);
  });

  it("an attestation covers only the clinics it was given with, and only without a Consent", () => {
    const subjects = consentSubjects(request({ consentAttested: true }), added, participant);
    expect(subjects.map((s) => [s.participant.id, s.consent?.reference, s.attested])).toEqual([
      ['a', undefined, true],
      ['b', undefined, true],
      ['c', 'Consent/for-c', false],
      ['d', undefined, true],
    ]);
    const later = consentSubjects(request({ consentAttested: false }), [{ participantId: 'e', taskId: 't-e', consentAttested: false }], participant);
    expect(later.map((s) => [s.participant.id, s.attested])).toEqual([['a', false], ['b', false], ['e', false]]);
  });

  it('only the clinics of the given Tasks (a job for clinics added to a current record set)', () => {
    expect(consentSubjects(request({}), added, participant, ['t-d']).map((s) => s.participant.id)).toEqual(['d']);
  });
});
