import { describe, expect, it } from 'vitest';
import type { Caller } from '../../access/caller.ts';
import { SYSTEM } from '../../fhir/constants.ts';
import { kindFromCodings } from '../../fhir/kind-codes.ts';
import type { Participant } from '../../network/network.ts';
import { organizationRecognizer } from './fhir-intake.ts';
import { fhirExpression } from './referral-mapping.ts';

describe('FHIR intake mapping (pure parts)', () => {
  it('a kind comes from our code first, else the most specific standard code; two of ours conflict', () => {
    const confirm = { system: SYSTEM.snomed, code: '77406008' };
    expect(kindFromCodings([confirm, { system: SYSTEM.kind, code: 'revision' }])).toBe('revision');
    expect(kindFromCodings([confirm, { system: SYSTEM.snomed, code: '363679005' }])).toBe('imaging-review');
    expect(kindFromCodings([{ system: SYSTEM.loinc, code: '11526-1' }])).toBe('pathology-review');
    expect(kindFromCodings([confirm])).toBe('diagnosis-confirmation');
    expect(kindFromCodings([{ system: SYSTEM.kind, code: 'revision' }, { system: SYSTEM.kind, code: 'complication' }])).toBe('conflict');
    expect(kindFromCodings([{ system: SYSTEM.snomed, code: '3457005' }])).toBeUndefined();
  });

  it('a JSON intake field is named by the FHIR element it came from, the longest recorded prefix winning', () => {
    const origins = new Map([
      ['records', 'Bundle.entry[1].resource.supportingInfo'],
      ['records.documents[1]', 'Bundle.entry[1].resource.supportingInfo[3]'],
      ['consultants[0]', 'Bundle.entry[2].resource.owner'],
    ]);
    expect(fhirExpression('records.documents[1].reference', origins, 'Bundle.entry[1].resource')).toBe('Bundle.entry[1].resource.supportingInfo[3].reference');
    expect(fhirExpression('records', origins, 'Bundle.entry[1].resource')).toBe('Bundle.entry[1].resource.supportingInfo');
    expect(fhirExpression('consultants[0]', origins, 'Bundle.entry[1].resource')).toBe('Bundle.entry[2].resource.owner');
    expect(fhirExpression('consultants[10]', origins, 'Bundle.entry[1].resource')).toBe('Bundle.entry[1].resource');
  });

  it('a clinic is recognised by identifier, by the referrer EHR\'s alias, or by our reference; never by a reference on another server', () => {
    const participants = [
      { id: 'st-olaf', roles: ['referrer'], organization: { reference: 'Organization/st-olaf' }, fhir: { baseUrl: 'https://ehr.example/fhir/R4', aliases: { lakeside: 'Organization/44e70d60' } } },
      { id: 'lakeside', roles: ['consultant'], organization: { reference: 'Organization/lakeside', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-2001' }] } },
      { id: 'northfield', roles: ['consultant'], organization: { reference: 'Organization/44e70d60', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-2002' }] } },
    ] as unknown as Participant[];
    const recognize = organizationRecognizer({ participantId: 'st-olaf' } as Caller, { participants: () => participants, fhirBaseUrl: 'https://so.example/fhir' });
    expect(recognize({ identifier: { system: 'https://registry.example.org/organizations', value: 'ORG-2002' } })).toBe('northfield');
    // The EHR's id 44e70d60 is Lakeside there, even though it is Northfield's local id here.
    expect(recognize({ reference: 'Organization/44e70d60' })).toBe('lakeside');
    expect(recognize({ reference: 'https://ehr.example/fhir/R4/Organization/44e70d60' })).toBe('lakeside');
    expect(recognize({ reference: 'https://so.example/fhir/Organization/44e70d60' })).toBe('northfield');
    expect(recognize({ reference: 'Organization/lakeside' })).toBe('lakeside');
    expect(recognize({ reference: 'https://elsewhere.example/fhir/Organization/lakeside' })).toBeUndefined();
    expect(recognize({ identifier: { system: 'https://registry.example.org/organizations', value: 'ORG-9001' } })).toBeUndefined();
  });
});
