import type { Provenance } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { makeRecordDocument } from '../../test/fixtures/fhir/second-opinion-resources.ts';
import { createValidator, ResourceValidationError } from '../fhir/validator.ts';
import { buildRecordSetProvenance } from './record-set-bundle.ts';

const args = {
  id: '1d3c5a7e-2b4f-4c6d-8e9f-0a1b2c3d4e5f',
  bundleId: '9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a',
  serviceRequestId: '3a2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d',
  referrerOrganization: { reference: 'Organization/st-olaf', display: 'St Olaf Hospital' },
  now: new Date('2026-11-02T10:00:00Z'),
};

describe('buildRecordSetProvenance', () => {
  it('has one source entity per record read from the EHR', () => {
    const record = makeRecordDocument({ meta: { source: 'https://ehr.example/fhir/R4/DocumentReference/op-note-2024' } });
    const provenance = buildRecordSetProvenance({ ...args, records: [record] });
    expect(provenance.entity).toEqual([{ role: 'source', what: { reference: 'https://ehr.example/fhir/R4/DocumentReference/op-note-2024' } }]);
    for (const engine of ['generated', 'medplum'] as const) expect(createValidator({ engine }).validate(provenance)).toEqual([]);
  });

  // Regression: an intake whose named documents and searches found nothing got `entity: []`,
  // which the generated validator refuses (FHIR JSON has no empty arrays); the assembly job
  // then failed and was retried for ever, and the record set stayed pending.
  it('leaves entity out, not empty, when the record set holds no record, and passes both validators', () => {
    const provenance = buildRecordSetProvenance({ ...args, records: [] });
    expect('entity' in provenance).toBe(false);
    for (const engine of ['generated', 'medplum'] as const) expect(createValidator({ engine }).validate(provenance)).toEqual([]);
  });

  it('an empty entity array is refused by the generated validator at Provenance.entity', () => {
    const provenance: Provenance = { ...buildRecordSetProvenance({ ...args, records: [] }), entity: [] };
    expect(() => createValidator({ engine: 'generated' }).validate(provenance)).toThrow(ResourceValidationError);
    try {
      createValidator({ engine: 'generated' }).validate(provenance);
    } catch (err) {
      expect((err as ResourceValidationError).issues.map((i) => [i.expression, i.details?.text])).toEqual([[['Provenance.entity'], 'Invalid empty value']]);
    }
  });
});
