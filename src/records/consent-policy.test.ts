import type { Consent, ConsentProvision } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { CONSENT_ACTORS, makeConsent } from '../../test/support/sandbox-ehr/seed-resources.ts';
import { evaluateConsent, organizationActorReferences, periodStatus, type ConsentContext } from './consent-policy.ts';

const NOW = new Date('2025-06-15T10:00:00Z');
const YEAR = 365 * 24 * 3600 * 1000;
const EHR = 'https://ehr.st-olaf.example/fhir/R4';

/** The seeded sandbox Consents (seed.ts), built with the same builder and clock arithmetic. */
const consent1 = makeConsent('consent-1', new Date(NOW.getTime() - YEAR), new Date(NOW.getTime() + YEAR), CONSENT_ACTORS.lakeside);
const consentExpired = makeConsent('consent-expired', new Date(NOW.getTime() - 3 * YEAR), new Date(NOW.getTime() - YEAR), CONSENT_ACTORS.lakeside);
const consentOtherOrg = makeConsent('consent-other-org', new Date(NOW.getTime() - YEAR), new Date(NOW.getTime() + YEAR), CONSENT_ACTORS.other);

const REGISTRY = 'https://registry.example.org/organizations';

/** A consultant as the EHR knows it: its identifier, and the EHR's own references resolved to it. */
function known(display: string, value: string, ...references: string[]): ConsentContext['consultant'] {
  return { display, identifiers: [{ system: REGISTRY, value }], references };
}

const LAKESIDE = known('Lakeside Clinic', 'ORG-2001', 'Organization/lakeside');
const HARBOR = known('Harbor Clinic', 'ORG-9001', 'Organization/harbor-clinic');

const lakeside: ConsentContext = {
  consultant: LAKESIDE,
  patientReference: `${EHR}/Patient/pat-1`,
  now: NOW,
};

const PERMITTED = { permitted: true, basis: 'consent' };

/** consent-1 with its root provision changed. */
function withProvision(change: Partial<ConsentProvision>, consent: Consent = consent1): Consent {
  return { ...consent, provision: { ...consent.provision, ...change } };
}

const LAKESIDE_IRCP = consent1.provision!.actor!;
const TREAT = { system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT' };
const RESEARCH = { system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'HRESCH' };
const action = (code: string) => [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentaction', code }] }];

describe('evaluateConsent on the seeded sandbox Consents', () => {
  it('permits consent-1 (active, period covers now, permit, Lakeside as IRCP) for Lakeside', () => {
    expect(evaluateConsent(consent1, lakeside)).toEqual(PERMITTED);
  });

  it('refuses consent-expired as expired', () => {
    expect(evaluateConsent(consentExpired, lakeside)).toEqual({ permitted: false, code: 'expired', reason: 'The consent period has ended' });
  });

  it('refuses consent-other-org for Lakeside as not-a-recipient', () => {
    expect(evaluateConsent(consentOtherOrg, lakeside)).toEqual({
      permitted: false,
      code: 'not-a-recipient',
      reason: `The consent does not name Lakeside Clinic (identifier ${REGISTRY}|ORG-2001) as a recipient`,
    });
  });

  it('permits consent-other-org for Harbor Clinic, named by an absolute reference', () => {
    const harbor = { ...lakeside, consultant: known('Harbor Clinic', 'ORG-9001', `${EHR}/Organization/harbor-clinic`) };
    expect(evaluateConsent(consentOtherOrg, harbor)).toEqual(PERMITTED);
  });

  it('refuses consent-1 for Harbor Clinic', () => {
    const harbor = { ...lakeside, consultant: HARBOR };
    expect(evaluateConsent(consent1, harbor)).toMatchObject({ permitted: false, code: 'not-a-recipient' });
  });
});

describe('evaluateConsent: no consent', () => {
  it('refuses as missing', () => {
    expect(evaluateConsent(undefined, lakeside)).toEqual({
      permitted: false,
      code: 'missing',
      reason: 'No consent to disclose the records was provided with the request',
    });
  });

  it('permits on attestation only when config allows it and the request is attested', () => {
    expect(evaluateConsent(undefined, { ...lakeside, attestationAllowed: true, attested: true })).toEqual({ permitted: true, basis: 'attestation' });
    expect(evaluateConsent(undefined, { ...lakeside, attestationAllowed: true, attested: false })).toMatchObject({ code: 'missing' });
    expect(evaluateConsent(undefined, { ...lakeside, attestationAllowed: false, attested: true })).toMatchObject({ code: 'missing' });
  });

  it('ignores the attestation when a consent is present', () => {
    expect(evaluateConsent(consentExpired, { ...lakeside, attestationAllowed: true, attested: true })).toMatchObject({ code: 'expired' });
  });
});

describe('evaluateConsent: status and patient', () => {
  it.each(['draft', 'proposed', 'rejected', 'inactive', 'entered-in-error'] as const)('refuses status %s as inactive', (status) => {
    expect(evaluateConsent({ ...consent1, status }, lakeside)).toEqual({
      permitted: false,
      code: 'inactive',
      reason: `The consent is not active (status ${status})`,
    });
  });

  it('refuses a consent about another patient, or naming none', () => {
    const wrong = { permitted: false, code: 'wrong-patient', reason: 'The consent is not about the patient of this referral' };
    expect(evaluateConsent({ ...consent1, patient: { reference: 'Patient/pat-2' } }, lakeside)).toEqual(wrong);
    expect(evaluateConsent({ ...consent1, patient: { display: 'someone' } }, lakeside)).toEqual(wrong);
    expect(evaluateConsent(consent1, { ...lakeside, patientReference: 'Group/pat-1' })).toEqual(wrong);
  });

  it('matches the patient relative to absolute and across _history', () => {
    expect(evaluateConsent({ ...consent1, patient: { reference: `${EHR}/Patient/pat-1/_history/7` } }, { ...lakeside, patientReference: 'Patient/pat-1' })).toEqual(
      PERMITTED,
    );
  });
});

describe('evaluateConsent: period', () => {
  it('refuses a period that starts tomorrow as not-yet-valid', () => {
    const future = withProvision({ period: { start: '2025-06-16T00:00:00Z', end: '2026-06-16T00:00:00Z' } });
    expect(evaluateConsent(future, lakeside)).toEqual({ permitted: false, code: 'not-yet-valid', reason: 'The consent period has not started yet' });
  });

  it('permits an open-ended period and a missing period', () => {
    expect(evaluateConsent(withProvision({ period: { start: '2025-01-01' } }), lakeside)).toEqual(PERMITTED);
    expect(evaluateConsent(withProvision({ period: undefined }), lakeside)).toEqual(PERMITTED);
  });

  it('treats a date-only end as inclusive of that whole day', () => {
    expect(evaluateConsent(withProvision({ period: { start: '2024-06-15', end: '2025-06-15' } }), lakeside)).toEqual(PERMITTED);
    expect(evaluateConsent(withProvision({ period: { start: '2024-06-15', end: '2025-06-14' } }), lakeside)).toMatchObject({ code: 'expired' });
  });

  it('refuses a period it cannot read', () => {
    expect(evaluateConsent(withProvision({ period: { end: 'next year' } }), lakeside)).toEqual({
      permitted: false,
      code: 'denied',
      reason: 'The consent period cannot be read',
    });
  });
});

describe('evaluateConsent: provision', () => {
  it('refuses a consent with no provision', () => {
    expect(evaluateConsent({ ...consent1, provision: undefined }, lakeside)).toEqual({
      permitted: false,
      code: 'denied',
      reason: 'The consent states no provision permitting disclosure',
    });
  });

  it('refuses a root deny (opt-out) with no exception', () => {
    expect(evaluateConsent(withProvision({ type: 'deny' }), lakeside)).toEqual({
      permitted: false,
      code: 'denied',
      reason: 'The consent denies disclosure and makes no exception for this consultant',
    });
  });

  it('permits a root deny whose nested permit names the consultant, and no other consultant', () => {
    const optOut = withProvision({ type: 'deny', actor: undefined, provision: [{ type: 'permit', actor: LAKESIDE_IRCP }] });
    expect(evaluateConsent(optOut, lakeside)).toEqual(PERMITTED);
    expect(evaluateConsent(optOut, { ...lakeside, consultant: HARBOR })).toMatchObject({
      code: 'denied',
    });
  });

  it('refuses a root deny whose nested permit for the consultant has itself a nested deny for treatment', () => {
    const optOut = withProvision({
      type: 'deny',
      provision: [{ type: 'permit', actor: LAKESIDE_IRCP, provision: [{ type: 'deny', purpose: [TREAT] }] }],
    });
    expect(evaluateConsent(optOut, lakeside)).toMatchObject({ permitted: false, code: 'denied' });
  });

  it('reads a root provision with no type from the policy rule: opt-in permits, opt-out denies', () => {
    expect(evaluateConsent(withProvision({ type: undefined }), lakeside)).toEqual(PERMITTED);
    const optOut = { ...withProvision({ type: undefined }), policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] } };
    expect(evaluateConsent(optOut, lakeside)).toMatchObject({ permitted: false, code: 'denied' });
  });

  it('refuses a consent whose scope is not patient privacy (e.g. consent to treatment)', () => {
    const treatment = { ...consent1, scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'treatment' }] } };
    expect(evaluateConsent(treatment, lakeside)).toEqual({
      permitted: false,
      code: 'denied',
      reason: 'The consent is not a privacy consent (scope patient-privacy)',
    });
  });

  it('refuses when the permitted purposes do not include treatment, and permits when they do', () => {
    expect(evaluateConsent(withProvision({ purpose: [RESEARCH] }), lakeside)).toEqual({
      permitted: false,
      code: 'denied',
      reason: 'The consent permits disclosure for other purposes than TREAT',
    });
    expect(evaluateConsent(withProvision({ purpose: [RESEARCH, TREAT] }), lakeside)).toEqual(PERMITTED);
    expect(evaluateConsent(withProvision({ purpose: [RESEARCH] }), { ...lakeside, purpose: RESEARCH })).toEqual(PERMITTED);
  });

  it('refuses when the permitted actions do not include disclose', () => {
    expect(evaluateConsent(withProvision({ action: action('access') }), lakeside)).toEqual({
      permitted: false,
      code: 'denied',
      reason: 'The consent does not permit disclosure (provision.action)',
    });
    expect(evaluateConsent(withProvision({ action: [...action('access'), ...action('disclose')] }), lakeside)).toEqual(PERMITTED);
  });
});

describe('evaluateConsent: nested deny provisions', () => {
  const nestedDenied = { permitted: false, code: 'denied', reason: 'A provision of the consent denies disclosure to this consultant or for this purpose' };
  const harborDeny: ConsentProvision = { type: 'deny', actor: [{ role: { text: 'recipient' }, reference: { reference: 'Organization/harbor-clinic' } }] };
  const lakesideDeny: ConsentProvision = { type: 'deny', actor: [{ role: { text: 'recipient' }, reference: { reference: `${EHR}/Organization/lakeside` } }] };

  it('refuses when a nested deny names the consultant', () => {
    expect(evaluateConsent(withProvision({ actor: undefined, provision: [harborDeny, lakesideDeny] }), lakeside)).toEqual(nestedDenied);
  });

  it('permits when the nested deny names another organization only', () => {
    expect(evaluateConsent(withProvision({ actor: undefined, provision: [harborDeny] }), lakeside)).toEqual(PERMITTED);
  });

  it('refuses when a nested deny names the disclosure purpose, not when it names another purpose', () => {
    expect(evaluateConsent(withProvision({ provision: [{ type: 'deny', purpose: [TREAT] }] }), lakeside)).toEqual(nestedDenied);
    expect(evaluateConsent(withProvision({ provision: [{ type: 'deny', purpose: [RESEARCH] }] }), lakeside)).toEqual(PERMITTED);
  });

  it('applies a nested deny only while its own period covers now', () => {
    const past: ConsentProvision = { ...lakesideDeny, period: { start: '2024-01-01', end: '2024-12-31' } };
    const current: ConsentProvision = { ...lakesideDeny, period: { start: '2025-06-01', end: '2025-06-30' } };
    expect(evaluateConsent(withProvision({ provision: [past] }), lakeside)).toEqual(PERMITTED);
    expect(evaluateConsent(withProvision({ provision: [current] }), lakeside)).toEqual(nestedDenied);
  });

  it('applies a nested deny of another action (e.g. collect) not at all, and of disclose fully', () => {
    expect(evaluateConsent(withProvision({ provision: [{ type: 'deny', action: action('collect') }] }), lakeside)).toEqual(PERMITTED);
    expect(evaluateConsent(withProvision({ provision: [{ type: 'deny', action: action('disclose') }] }), lakeside)).toEqual(nestedDenied);
  });

  it('refuses the whole disclosure for a nested deny limited to some data, and for an untyped nested provision', () => {
    const someData: ConsentProvision = { type: 'deny', class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'DiagnosticReport' }] };
    expect(evaluateConsent(withProvision({ provision: [someData] }), lakeside)).toEqual(nestedDenied);
    expect(evaluateConsent(withProvision({ provision: [{ purpose: [TREAT] }] }), lakeside)).toEqual(nestedDenied);
  });

  it('keeps the permit when a nested permit applies', () => {
    expect(evaluateConsent(withProvision({ provision: [{ type: 'permit', purpose: [TREAT] }] }), lakeside)).toEqual(PERMITTED);
  });
});

describe('evaluateConsent: actors', () => {
  const custodian = { role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'CST' }] }, reference: { reference: 'Organization/lakeside' } };
  const harborRecipient = { role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PRCP' }] }, reference: { reference: 'Organization/harbor-clinic' } };

  it('counts only recipient-role actors when there are any: a consultant named as custodian is not a recipient', () => {
    expect(evaluateConsent(withProvision({ actor: [custodian, harborRecipient] }), lakeside)).toMatchObject({ code: 'not-a-recipient' });
  });

  it('counts actors in any role when none has a recipient role', () => {
    expect(evaluateConsent(withProvision({ actor: [custodian] }), lakeside)).toEqual(PERMITTED);
  });

  it('permits a consent that names no actor at all', () => {
    expect(evaluateConsent(withProvision({ actor: undefined }), lakeside)).toEqual(PERMITTED);
  });

  it('matches an actor named by identifier against the consultant identifiers', () => {
    const byIdentifier = [{ role: LAKESIDE_IRCP[0]!.role, reference: { identifier: { system: 'urn:oid:2.16.578.1.12.4.1.4.101', value: '974589095' } } }];
    const consultant = { ...LAKESIDE, identifiers: [{ system: 'urn:oid:2.16.578.1.12.4.1.4.101', value: '974589095' }] };
    expect(evaluateConsent(withProvision({ actor: byIdentifier }), { ...lakeside, consultant })).toEqual(PERMITTED);
    expect(evaluateConsent(withProvision({ actor: byIdentifier }), lakeside)).toMatchObject({ code: 'not-a-recipient' });
    const otherSystem = { ...consultant, identifiers: [{ system: 'urn:other', value: '974589095' }] };
    expect(evaluateConsent(withProvision({ actor: byIdentifier }), { ...lakeside, consultant: otherSystem })).toMatchObject({ code: 'not-a-recipient' });
  });

  it('does not match an organization of the same id on another server', () => {
    const absolute = [{ role: LAKESIDE_IRCP[0]!.role, reference: { reference: `${EHR}/Organization/lakeside` } }];
    const elsewhere = { ...lakeside, consultant: known('Lakeside Clinic', 'ORG-2001', 'https://elsewhere.example/fhir/Organization/lakeside') };
    expect(evaluateConsent(withProvision({ actor: absolute }), elsewhere)).toMatchObject({ code: 'not-a-recipient' });
    expect(evaluateConsent(withProvision({ actor: absolute }), lakeside)).toEqual(PERMITTED);
  });

  it('never matches by the service\'s own id: an EHR reference the consultant was not resolved to is not it', () => {
    const unresolved = { ...lakeside, consultant: known('Lakeside Clinic', 'ORG-2001') };
    expect(evaluateConsent(consent1, unresolved)).toMatchObject({ code: 'not-a-recipient' });
  });

  it('lists the literal Organization actors of every provision, skipping those named by identifier', () => {
    const nested = withProvision({
      actor: [...LAKESIDE_IRCP, { role: LAKESIDE_IRCP[0]!.role, reference: { reference: 'Organization/x', identifier: { system: REGISTRY, value: 'ORG-1' } } }],
      provision: [{ type: 'deny', actor: [{ role: LAKESIDE_IRCP[0]!.role, reference: { reference: `${EHR}/Organization/harbor-clinic` } }, { role: LAKESIDE_IRCP[0]!.role, reference: { reference: 'Practitioner/p' } }] }],
    });
    expect(organizationActorReferences(nested)).toEqual(['Organization/lakeside', `${EHR}/Organization/harbor-clinic`]);
    expect(organizationActorReferences(undefined)).toEqual([]);
  });

  it('does not take a Practitioner for the consultant organization', () => {
    const practitioner = [{ role: LAKESIDE_IRCP[0]!.role, reference: { reference: 'Practitioner/lakeside' } }];
    expect(evaluateConsent(withProvision({ actor: practitioner }), lakeside)).toMatchObject({ code: 'not-a-recipient' });
  });
});

describe('periodStatus', () => {
  it.each([
    [{ start: '2025', end: '2025' }, 'covers'],
    [{ start: '2025-06', end: '2025-06' }, 'covers'],
    [{ end: '2025-05' }, 'expired'],
    [{ start: '2025-06-15T10:00:00Z', end: '2025-06-15T10:00:00Z' }, 'covers'],
    [{ start: '2025-06-15T12:00:01+02:00' }, 'not-yet-valid'],
    [{ end: '2025-06-15T11:59:59+02:00' }, 'expired'],
    [{ start: '2026' }, 'not-yet-valid'],
    [{ end: '2025-02-30' }, 'expired'],
    [{ end: '15/06/2025' }, 'unreadable'],
    [{}, 'covers'],
  ])('%j -> %s', (period, status) => {
    expect(periodStatus(period, NOW)).toBe(status);
  });
});
