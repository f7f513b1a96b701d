import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { endedForWantOfRecords } from './transition-task.ts';

const referral = (status: ServiceRequest['status']): ServiceRequest => ({ resourceType: 'ServiceRequest', status, intent: 'order', subject: { reference: 'Patient/p' } });
const tasks = (...statuses: Task['status'][]): Task[] => statuses.map((status) => ({ resourceType: 'Task', status, intent: 'order' }));

describe('endedForWantOfRecords: which revoked referral the referrer may take up again', () => {
  it('a referral revoked because its Tasks failed (some may have declined)', () => {
    expect(endedForWantOfRecords(referral('revoked'), tasks('failed'))).toBe(true);
    expect(endedForWantOfRecords(referral('revoked'), tasks('failed', 'rejected'))).toBe(true);
  });

  it('not one somebody ended: a Task cancelled (by the referrer, or consent withdrawn), or none failed', () => {
    expect(endedForWantOfRecords(referral('revoked'), tasks('failed', 'cancelled'))).toBe(false);
    expect(endedForWantOfRecords(referral('revoked'), tasks('rejected'))).toBe(false);
    expect(endedForWantOfRecords(referral('revoked'), tasks())).toBe(false);
  });

  it('only a revoked referral (active and completed ones are open to additions anyway)', () => {
    expect(endedForWantOfRecords(referral('active'), tasks('failed'))).toBe(false);
    expect(endedForWantOfRecords(referral('completed'), tasks('failed', 'completed'))).toBe(false);
  });
});
