import { forbidden, notFound, OperationOutcomeError } from '@medplum/core';
import type { Bundle, DocumentReference, Task } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { HttpOutcomeError, outcome } from '../fhir/outcomes.ts';
import type { Caller } from '../access/caller.ts';
import type { AuditLog, AuditRecordInput } from './audit-log.ts';
import { auditedRead, commonPatientOf, patientOf, refusalOf, requestedEntity, touchedResources } from './audited-read.ts';

const caller: Caller = { clientId: 'lakeside-worklist', participantId: 'lakeside-consults', roles: ['consultant'], scopes: ['system/Task.rs'] };
const PATIENT = 'https://ehr.example/fhir/R4/Patient/pat-1';
const task: Task = { resourceType: 'Task', id: 't-1', status: 'requested', intent: 'order', for: { reference: PATIENT } };

/** An AuditLog that keeps what it was asked to record, in order with the read's own steps. */
function recordingLog(steps: string[], fail = false): AuditLog {
  return {
    async record(input: AuditRecordInput) {
      steps.push(`audit:${input.outcome}`);
      if (fail) throw new Error('audit store down');
      return { resourceType: 'AuditEvent' } as never;
    },
  } as unknown as AuditLog;
}

describe('auditedRead', () => {
  it('records a successful read, with what it touched, before returning', async () => {
    const recorded: AuditRecordInput[] = [];
    const audit = { record: async (input: AuditRecordInput) => void recorded.push(input) } as unknown as AuditLog;
    const result = await auditedRead(audit, caller, { action: 'read', requested: requestedEntity('Task', 't-1'), touched: (t) => touchedResources([t]) }, async () => task);
    expect(result).toBe(task);
    expect(recorded).toEqual([
      {
        action: 'read',
        outcome: 'success',
        agent: { participantId: 'lakeside-consults', clientId: 'lakeside-worklist' },
        entities: [{ reference: 'Task/t-1' }],
        patientReference: PATIENT,
      },
    ]);
  });

  it('records a refused read (404, 403) with the requested entity and a fixed description, then rethrows', async () => {
    for (const [error, description] of [
      [new OperationOutcomeError(notFound), 'Refused (404): not found, or not visible to the caller'],
      [new OperationOutcomeError(forbidden), 'Refused (403): the caller lacks the scope or role this read needs'],
    ] as const) {
      const recorded: AuditRecordInput[] = [];
      const audit = { record: async (input: AuditRecordInput) => void recorded.push(input) } as unknown as AuditLog;
      const read = auditedRead(audit, caller, { action: 'search', requested: [], query: 'Task?owner=Organization%2Fx', touched: () => ({ entities: [] }) }, async () => {
        throw error;
      });
      await expect(read).rejects.toBe(error);
      expect(recorded).toEqual([
        { action: 'search', outcome: 'refused', agent: { participantId: 'lakeside-consults', clientId: 'lakeside-worklist' }, entities: [], description, query: 'Task?owner=Organization%2Fx' },
      ]);
    }
  });

  it('a failing audit write fails the read, after the read and before anything is returned', async () => {
    const steps: string[] = [];
    const read = auditedRead(recordingLog(steps, true), caller, { action: 'read', requested: [], touched: () => ({ entities: [] }) }, async () => {
      steps.push('read');
      return task;
    });
    await expect(read).rejects.toThrow('audit store down');
    expect(steps).toEqual(['read', 'audit:success']);
  });

  it('a failing audit write of a refusal fails the request too (500, never a silent drop)', async () => {
    const steps: string[] = [];
    const read = auditedRead(recordingLog(steps, true), caller, { action: 'read', requested: [], touched: () => ({ entities: [] }) }, async () => {
      throw new OperationOutcomeError(notFound);
    });
    await expect(read).rejects.toThrow('audit store down');
    expect(steps).toEqual(['audit:refused']);
  });
});

describe('refusalOf', () => {
  it('maps 4xx to refused and anything else to failure, with texts that never echo the error', () => {
    expect(refusalOf(new HttpOutcomeError(400, outcome([])))).toEqual({ outcome: 'refused', description: 'Refused (400): invalid request' });
    expect(refusalOf(new Error('Alex Example'))).toEqual({ outcome: 'failure', description: 'Failed: internal error' });
  });
});

describe('requestedEntity', () => {
  it('names the requested resource or version, and nothing for an id that is not a FHIR id', () => {
    expect(requestedEntity('Task', 't-1')).toEqual([{ reference: 'Task/t-1' }]);
    expect(requestedEntity('Task', 't-1', '2')).toEqual([{ reference: 'Task/t-1/_history/2' }]);
    expect(requestedEntity('Task', 'Alex Example')).toEqual([]);
    expect(requestedEntity('Task', 't-1', '../x')).toEqual([]);
  });
});

describe('patientOf', () => {
  it('takes subject, for, or a Bundle’s first entry, when it references a Patient', () => {
    const doc: DocumentReference = { resourceType: 'DocumentReference', status: 'current', content: [], subject: { reference: PATIENT } };
    const bundle: Bundle = { resourceType: 'Bundle', type: 'collection', entry: [{ resource: doc }] };
    expect(patientOf(task)).toBe(PATIENT);
    expect(patientOf(doc)).toBe(PATIENT);
    expect(patientOf(bundle)).toBe(PATIENT);
    expect(patientOf({ ...doc, subject: { display: 'Alex Example' } })).toBeUndefined();
    expect(patientOf({ ...doc, subject: { reference: 'Group/g-1' } })).toBeUndefined();
    expect(patientOf({ resourceType: 'Bundle', type: 'collection' })).toBeUndefined();
  });

  it('a search names the patient only when every result is about the same one', () => {
    expect(commonPatientOf([task, { ...task, id: 't-2' }])).toBe(PATIENT);
    expect(commonPatientOf([task, { ...task, for: { reference: 'Patient/other' } }])).toBeUndefined();
    expect(commonPatientOf([])).toBeUndefined();
  });
});
