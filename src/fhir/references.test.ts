import { describe, expect, it } from 'vitest';
import { absoluteReference, isOnFhirBase, parseResourceReference, sameResourceReference } from './references.ts';

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
    expect(absoluteReference('https://ehr.example/fhir/R4', 'HTTPS://ehr.example/fhir/R4/Patient/2')).toBe('HTTPS://ehr.example/fhir/R4/Patient/2');
  });
});

describe('isOnFhirBase', () => {
  it.each([
    ['Patient/1', EHR, true],
    ['/Patient/1', EHR, true],
    [`${EHR}/Patient/1`, EHR, true],
    [`${EHR}/Patient/1`, `${EHR}/`, true],
    [`${EHR}/Patient/1/_history/2`, `${EHR}//`, true],
    ['HTTPS://EHR.ST-OLAF.EXAMPLE:443/fhir/R4/Patient/1', EHR, true],
    [`${EHR}/./Patient/1`, EHR, true],
    ['http://127.0.0.1:18099/fhir/R4/Patient/1', EHR, false],
    ['http://169.254.169.254/latest/meta-data/Patient/1', EHR, false],
    ['http://ehr.st-olaf.example/fhir/R4/Patient/1', EHR, false],
    ['https://ehr.st-olaf.example:8443/fhir/R4/Patient/1', EHR, false],
    ['https://ehr.st-olaf.example/fhir/R4x/Patient/1', EHR, false],
    ['https://ehr.st-olaf.example/fhir/r4/Patient/1', EHR, false],
    ['https://ehr.st-olaf.example/fhir/Patient/1', EHR, false],
    [`${EHR}/../../admin/Patient/1`, EHR, false],
    [`${EHR}/%2e%2e/%2e%2e/admin/Patient/1`, EHR, false],
    ['../../admin/Patient/1', EHR, false],
    ['https://user:pw@ehr.st-olaf.example/fhir/R4/Patient/1', EHR, false],
    [`${EHR}/Patient/1?_format=json`, EHR, false],
    ['//ehr.st-olaf.example/fhir/R4/Patient/1', EHR, false],
    ['file:///fhir/R4/Patient/1', EHR, false],
    ['urn:uuid:0b5e7c4a-1d1e-4c5a-9e43-3f1b2c3d4e5f', EHR, false],
  ])('%s on %s -> %s', (reference, base, on) => {
    expect(isOnFhirBase(base, reference)).toBe(on);
  });
});
