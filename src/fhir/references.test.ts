import { describe, expect, it } from 'vitest';
import { absoluteReference, parseResourceReference, sameResourceReference } from './references.ts';

const EHR = 'https://ehr.st-olaf.example/fhir/R4';

describe('sameResourceReference', () => {
  it.each([
    ['DocumentReference/d1', 'DocumentReference/d1', true],
    ['DocumentReference/d1', `${EHR}/DocumentReference/d1`, true],
    [`${EHR}/DocumentReference/d1/_history/4`, 'DocumentReference/d1', true],
    [`${EHR}/DocumentReference/d1`, 'HTTPS://EHR.ST-OLAF.EXAMPLE/fhir/R4/DocumentReference/d1', true],
    [`${EHR}/DocumentReference/d1`, 'https://other.example/fhir/DocumentReference/d1', false],
    ['DocumentReference/d1', 'DocumentReference/d2', false],
    ['DocumentReference/d1', 'Binary/d1', false],
    ['Organization/lakeside', 'Organization/lakeside/', true],
    ['urn:uuid:0b5e7c4a-1d1e-4c5a-9e43-3f1b2c3d4e5f', 'urn:uuid:0b5e7c4a-1d1e-4c5a-9e43-3f1b2c3d4e5f', true],
    ['urn:uuid:0b5e7c4a-1d1e-4c5a-9e43-3f1b2c3d4e5f', 'DocumentReference/d1', false],
    ['', '', false],
  ])('%s vs %s -> %s', (a, b, same) => {
    expect(sameResourceReference(a, b)).toBe(same);
  });
});

describe('parseResourceReference', () => {
  it('splits base and Type/id, dropping _history, query and fragment', () => {
    expect(parseResourceReference(`${EHR}/Patient/pat-1/_history/2`)).toEqual({ base: EHR, typeAndId: 'Patient/pat-1' });
    expect(parseResourceReference('Patient/pat-1?_format=json')).toEqual({ base: '', typeAndId: 'Patient/pat-1' });
    expect(parseResourceReference('#contained-1')).toBeUndefined();
    expect(parseResourceReference('pat-1')).toBeUndefined();
  });
});

describe('absoluteReference', () => {
  it('resolves a relative reference against the EHR base and keeps absolute ones', () => {
    expect(absoluteReference('https://ehr.example/fhir/R4/', 'Patient/1')).toBe('https://ehr.example/fhir/R4/Patient/1');
    expect(absoluteReference('https://ehr.example/fhir/R4', '/Patient/1')).toBe('https://ehr.example/fhir/R4/Patient/1');
    expect(absoluteReference('https://ehr.example/fhir/R4', 'https://other.example/Patient/2')).toBe('https://other.example/Patient/2');
  });
});
