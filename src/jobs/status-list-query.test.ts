import { describe, expect, it } from 'vitest';
import { HttpOutcomeError } from '../fhir/outcomes.ts';
import { parseStatusListQuery } from './status-list-query.ts';

const STATUSES = ['pending', 'done', 'failed'] as const;

describe('parseStatusListQuery', () => {
  it('reads status and _count (the last value wins, _count capped at 100), 50 by default', () => {
    expect(parseStatusListQuery({}, STATUSES)).toEqual({ count: 50 });
    expect(parseStatusListQuery({ status: ['pending', 'failed'], _count: ['500'] }, STATUSES)).toEqual({ status: 'failed', count: 100 });
  });

  it('refuses a status not in the list, a _count that is not a positive integer and unknown parameters, naming each (400)', () => {
    let err: unknown;
    try {
      parseStatusListQuery({ status: ['lost'], _count: ['0'], sort: ['x'] }, STATUSES);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HttpOutcomeError);
    expect((err as HttpOutcomeError).status).toBe(400);
    expect((err as HttpOutcomeError).outcome.issue?.map((i) => [i.code, i.expression?.[0], i.details?.text])).toEqual([
      ['value', 'status', 'status must be one of pending, done, failed'],
      ['value', '_count', '_count must be a positive integer'],
      ['not-supported', 'sort', "Unknown parameter 'sort' (status, _count)"],
    ]);
  });
});
