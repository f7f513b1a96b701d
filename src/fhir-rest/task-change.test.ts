import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { HttpOutcomeError } from '../fhir/outcomes.ts';
import { SYSTEM } from '../fhir/constants.ts';
import { changedElements, planTaskChange, type TaskSide } from './task-change.ts';
import { planServiceRequestChange } from './update-service-request.ts';
import { pointerPath } from './update-task.ts';

const stored: Task = {
  resourceType: 'Task',
  id: 't1',
  meta: { versionId: '3', lastUpdated: '2026-01-01T00:00:00Z' },
  status: 'requested',
  intent: 'order',
  owner: { reference: 'Organization/lakeside' },
  for: { reference: 'https://ehr.example/Patient/p1' },
  lastModified: '2026-01-01T00:00:00Z',
};

/** The 422's issues as [expression, code], or the plan. */
function plan(change: Partial<Task>, side: TaskSide = 'consultant') {
  try {
    return planTaskChange(stored, { ...stored, ...change } as Task & Record<string, unknown>, side);
  } catch (err) {
    if (!(err instanceof HttpOutcomeError)) throw err;
    return { status: err.status, issues: err.outcome.issue?.map((i) => [i.expression?.[0], i.code]) };
  }
}

describe('planTaskChange: a FHIR update as one action of the transition table', () => {
  it('ignores the server elements; finds the changed ones', () => {
    expect(changedElements(stored, { ...stored, meta: { versionId: '1' }, lastModified: 'x' } as never)).toEqual([]);
    expect(changedElements(stored, { ...stored, status: 'accepted', note: [{ text: 'x' }] } as never)).toEqual(['note', 'status']);
    expect(plan({})).toEqual({ kind: 'none' });
  });

  it('maps each status the consultant may set to its action, with the input the JSON door builds', () => {
    expect(plan({ status: 'accepted' })).toEqual({ kind: 'consult-action', body: { action: 'accept' } });
    expect(plan({ status: 'in-progress' })).toEqual({ kind: 'consult-action', body: { action: 'start' } });
    expect(plan({ status: 'cancelled' })).toEqual({ kind: 'consult-action', body: { action: 'confirm-cancellation' } });
    expect(plan({ status: 'rejected', statusReason: { text: 'No capacity' } })).toEqual({ kind: 'consult-action', body: { action: 'decline', reason: 'No capacity' } });
    expect(plan({ status: 'on-hold', businessStatus: { coding: [{ system: SYSTEM.taskBusinessStatus, code: 'information-requested' }], text: 'Which implant?' } })).toEqual({
      kind: 'consult-action',
      body: { action: 'request-info', question: 'Which implant?' },
    });
    expect(plan({ status: 'cancelled', statusReason: { text: 'Changed our mind' } }, 'referrer')).toEqual({ kind: 'cancel', reason: 'Changed our mind' });
    expect(plan({ status: 'in-progress', note: [{ text: ' A 350 cc implant ' }] }, 'referrer')).toEqual({ kind: 'answer', text: 'A 350 cc implant' });
  });

  it("reads the referrer's answer from one note appended to the stored ones", () => {
    const withNotes = { ...stored, status: 'on-hold', note: [{ text: 'Information requested: which implant?' }] } as Task & Record<string, unknown>;
    const answer = (note: Task['note']) => {
      try {
        return planTaskChange(withNotes, { ...withNotes, status: 'in-progress', note } as Task & Record<string, unknown>, 'referrer');
      } catch (err) {
        if (!(err instanceof HttpOutcomeError)) throw err;
        return { status: err.status, issues: err.outcome.issue?.map((i) => [i.expression?.[0], i.code]) };
      }
    };
    expect(answer([...(withNotes.note ?? []), { text: 'A 350 cc implant', time: '2026-01-01T00:00:00Z' }])).toEqual({ kind: 'answer', text: 'A 350 cc implant' });
    expect(answer(withNotes.note)).toEqual({ status: 422, issues: [['Task.note', 'required']] });
    expect(answer([{ text: 'A 350 cc implant' }])).toEqual({ status: 422, issues: [['Task.note', 'required']] });
    expect(answer([{ text: 'rewritten' }, { text: 'A 350 cc implant' }])).toEqual({ status: 422, issues: [['Task.note', 'required']] });
    expect(answer([...(withNotes.note ?? []), { authorString: 'no text' }] as Task['note'])).toEqual({ status: 422, issues: [['Task.note[1].text', 'required']] });
  });

  it('refuses with 422 naming the element: other elements, carried elements without their status, statuses outside the table, missing reasons', () => {
    expect(plan({ status: 'accepted', owner: { reference: 'Organization/other' } })).toEqual({ status: 422, issues: [['Task.owner', 'business-rule']] });
    expect(plan({ statusReason: { text: 'why' } })).toEqual({ status: 422, issues: [['Task.statusReason', 'business-rule']] });
    expect(plan({ status: 'accepted', statusReason: { text: 'why' } })).toEqual({ status: 422, issues: [['Task.statusReason', 'business-rule']] });
    expect(plan({ status: 'failed' })).toEqual({ status: 422, issues: [['Task.status', 'business-rule']] });
    expect(plan({ status: 'accepted' }, 'referrer')).toEqual({ status: 422, issues: [['Task.status', 'business-rule']] });
    expect(plan({ status: 'rejected' })).toEqual({ status: 422, issues: [['Task.statusReason.text', 'required']] });
    expect(plan({ status: 'on-hold', businessStatus: { text: 'Which implant?' } })).toEqual({ status: 422, issues: [['Task.businessStatus.coding', 'required']] });
    expect(plan({ status: 'completed', output: [{ type: { text: 'opinion' }, valueReference: { reference: 'DocumentReference/x' } }] })).toEqual({ status: 422, issues: [['Task.output', 'required']] });
  });

  it('names a JSON Pointer as a FHIRPath element', () => {
    expect(pointerPath('/output/0/valueReference')).toBe('Task.output[0].valueReference');
    expect(pointerPath('/note/-')).toBe('Task.note');
    expect(pointerPath('/a~1b')).toBe('Task.a/b');
  });
});

describe('planServiceRequestChange: a FHIR update of the referral is its revoke, or nothing', () => {
  const referral: ServiceRequest = {
    resourceType: 'ServiceRequest',
    id: 'sr1',
    meta: { versionId: '2' },
    status: 'active',
    intent: 'order',
    subject: { reference: 'Patient/p1' },
    priority: 'routine',
    note: [{ text: 'Is a revision needed?' }],
  };
  const revoke = (change: Partial<ServiceRequest>) => {
    try {
      return planServiceRequestChange(referral, { ...referral, ...change } as ServiceRequest & Record<string, unknown>);
    } catch (err) {
      if (!(err instanceof HttpOutcomeError)) throw err;
      return { status: err.status, issues: err.outcome.issue?.map((i) => [i.expression?.[0], i.code]) };
    }
  };
  const reason = [...(referral.note ?? []), { text: 'Patient chose another clinic' }];

  it('status revoked with one new note is the cancel, its text the reason; the same referral is nothing', () => {
    expect(revoke({ meta: { versionId: '1' } })).toEqual({ kind: 'none' });
    expect(revoke({ status: 'revoked', note: reason })).toEqual({ kind: 'revoke', reason: 'Patient chose another clinic' });
  });

  it('refuses with 422 naming the element: no reason, other statuses, other elements, a note alone', () => {
    expect(revoke({ status: 'revoked' })).toEqual({ status: 422, issues: [['ServiceRequest.note', 'required']] });
    expect(revoke({ status: 'revoked', note: [...(referral.note ?? []), { text: '' }] })).toEqual({ status: 422, issues: [['ServiceRequest.note[1].text', 'required']] });
    expect(revoke({ status: 'completed', note: reason })).toEqual({ status: 422, issues: [['ServiceRequest.status', 'business-rule']] });
    expect(revoke({ status: 'revoked', note: reason, priority: 'urgent' })).toEqual({ status: 422, issues: [['ServiceRequest.priority', 'business-rule']] });
    expect(revoke({ note: reason })).toEqual({ status: 422, issues: [['ServiceRequest.note', 'business-rule']] });
  });
});
