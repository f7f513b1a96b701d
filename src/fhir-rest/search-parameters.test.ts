import { describe, expect, it } from 'vitest';
import { parseSearch } from './search-parameters.ts';

describe('parseSearch: AuditEvent', () => {
  it('matches entity, agent and patient inside their arrays (jsonb containment)', () => {
    const parsed = parseSearch('AuditEvent', { entity: ['Task/t-1,ServiceRequest/s-1'], agent: ['lakeside'], patient: ['https://ehr.example/fhir/R4/Patient/p-1'] }, true);
    expect(parsed.contains).toEqual([
      [{ entity: [{ what: { reference: 'Task/t-1' } }] }, { entity: [{ what: { reference: 'ServiceRequest/s-1' } }] }],
      [{ agent: [{ who: { reference: 'Organization/lakeside' } }] }],
      [{ entity: [{ what: { reference: 'https://ehr.example/fhir/R4/Patient/p-1' } }] }],
    ]);
  });

  it('takes action and outcome as codes, subtype as a Coding token', () => {
    const parsed = parseSearch('AuditEvent', { action: ['E'], outcome: ['4'], subtype: ['read', 'http://hl7.org/fhir/restful-interaction|search-type'] }, true);
    expect(parsed.contains).toEqual([
      [{ action: 'E' }],
      [{ outcome: '4' }],
      [{ subtype: [{ code: 'read' }] }],
      [{ subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'search-type' }] }],
    ]);
  });

  it('date is answered like _lastUpdated, and a bad one is refused naming date', () => {
    expect(parseSearch('AuditEvent', { date: ['ge2025-06-01', 'lt2025-07-01T00:00:00Z'] }, true).lastUpdated).toEqual([
      { op: 'ge', value: new Date('2025-06-01') },
      { op: 'lt', value: new Date('2025-07-01T00:00:00Z') },
    ]);
    expect(() => parseSearch('AuditEvent', { date: ['yesterday'] }, false)).toThrow(expect.objectContaining({ status: 400 }));
    try {
      parseSearch('AuditEvent', { date: ['yesterday'] }, false);
    } catch (err) {
      expect((err as { outcome: unknown }).outcome).toEqual({
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: 'value', details: { text: "date 'yesterday' is not [prefix]date" }, expression: ['date'] }],
      });
    }
  });

  it.each([
    ['_lastUpdated', 'ge0000'],
    ['_lastUpdated', 'lt0000-12-31'],
    ['_lastUpdated', 'ge0001-01-01T00:00:00+14:00'],
    ['date', 'le0000-06-01T00:00:00Z'],
  ])('%s=%s (a year 0, which PostgreSQL has not) is refused naming the parameter, not sent to the store', (name, value) => {
    let outcome: unknown;
    try {
      parseSearch('AuditEvent', { [name]: [value] }, false);
    } catch (err) {
      outcome = (err as { outcome: unknown }).outcome;
    }
    expect(outcome).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'value', details: { text: `${name} '${value}' is outside the years 0001 to 9999` }, expression: [name] }],
    });
  });

  it('the first and last instants of the years 0001 to 9999 are taken', () => {
    expect(parseSearch('Task', { _lastUpdated: ['ge0001-01-01T00:00:00Z', 'le9999-12-31T23:59:59.999Z'] }, false).lastUpdated).toHaveLength(2);
  });

  it('date is not a parameter of the other types', () => {
    expect(parseSearch('Task', { date: ['ge2025-06-01'] }, false).unknown).toEqual(['date']);
  });
});

describe('parseSearch: _cursor', () => {
  const cursor = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

  it('keeps a cursor the store made', () => {
    const made = cursor(['2026-01-01T00:00:00.000Z', '3f0c2a4e-8b1d-4c5e-9f6a-7b8c9d0e1f2a']);
    expect(parseSearch('Task', { _cursor: [made] }, true).cursor).toBe(made);
  });

  it.each([
    ['garbage', 'garbage'],
    ['an empty cursor', ''],
    ['a forged id holding a NUL', cursor(['2026-01-01T00:00:00.000Z', 'x\u0000'])],
    ['a date that is not one', cursor(['yesterday', 'task-1'])],
    ['a different shape', cursor({ after: 'task-1' })],
    ['a time in year 0', cursor(['0000-01-01T00:00:00.000Z', 'task-1'])],
    ['a time past year 9999', cursor(['+275760-09-13T00:00:00.000Z', 'task-1'])],
    ['a time before year 1', cursor(['-271821-04-20T00:00:00.000Z', 'task-1'])],
  ])('refuses %s naming _cursor, rather than starting again at page one', (_what, value) => {
    let outcome: unknown;
    try {
      parseSearch('Task', { _cursor: [value] }, false);
    } catch (err) {
      outcome = (err as { outcome: unknown }).outcome;
    }
    expect(outcome).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'value', details: { text: '_cursor is not a cursor this service made: take it from the next link as it is' }, expression: ['_cursor'] }],
    });
  });
});

describe('parseSearch: references as clients send them', () => {
  const context = { ownBase: 'https://so.example.org/fhir', externalBases: ['https://ehr-a.example/fhir/R4', 'https://ehr-b.example/fhir'] };

  it('an absolute reference to this server is the local one; a bare id gets the target type', () => {
    expect(parseSearch('Task', { focus: ['https://so.example.org/fhir/ServiceRequest/sr-1', 'sr-2'] }, true, context).contains).toEqual([
      [{ focus: { reference: 'ServiceRequest/sr-1' } }],
      [{ focus: { reference: 'ServiceRequest/sr-2' } }],
    ]);
  });

  it('a relative patient reference is that id on each EHR base; an absolute one stays as it is', () => {
    expect(parseSearch('ServiceRequest', { subject: ['Patient/p-1'], patient: ['https://ehr-a.example/fhir/R4/Patient/p-1'] }, true, context).contains).toEqual([
      [{ subject: { reference: 'Patient/p-1' } }, { subject: { reference: 'https://ehr-a.example/fhir/R4/Patient/p-1' } }, { subject: { reference: 'https://ehr-b.example/fhir/Patient/p-1' } }],
      [{ subject: { reference: 'https://ehr-a.example/fhir/R4/Patient/p-1' } }],
    ]);
  });
});

describe('parseSearch: _include, _revinclude, _summary, _elements', () => {
  it('resolves supported includes and reports the others', () => {
    const parsed = parseSearch('Task', { _include: ['Task:focus', 'Task:input:Bundle', 'Task:requester', 'ServiceRequest:subject'], _summary: ['count'], _elements: ['status,owner'] }, false);
    expect(parsed.include.map((i) => [i.source, i.def.name, i.target])).toEqual([
      ['Task', 'focus', undefined],
      ['Task', 'input', 'Bundle'],
    ]);
    expect(parsed.unsupported.map((u) => u.value)).toEqual(['Task:requester', 'ServiceRequest:subject']);
    expect(parsed.summaryCount).toBe(true);
    expect(parsed.elements).toEqual(['status', 'owner']);
    expect(parseSearch('ServiceRequest', { _revinclude: ['Task:focus'] }, true).revinclude.map((r) => `${r.source}:${r.def.name}`)).toEqual(['Task:focus']);
  });

  it('refuses _elements that are not element names, naming _elements', () => {
    let outcome: unknown;
    try {
      parseSearch('Task', { _elements: ['sta tus'] }, false);
    } catch (err) {
      outcome = (err as { outcome: unknown }).outcome;
    }
    expect(outcome).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'value', details: { text: '_elements must list element names (comma-separated), e.g. status,owner' }, expression: ['_elements'] }],
    });
  });
});
