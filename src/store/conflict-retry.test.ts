import { OperationOutcomeError, preconditionFailed, serverError } from '@medplum/core';
import { describe, expect, it } from 'vitest';
import { CONFLICT_ATTEMPTS, retryOnConflict } from './conflict-retry.ts';

describe('retryOnConflict', () => {
  const conflictsThen = (conflicts: number) => {
    let runs = 0;
    return {
      runs: () => runs,
      transaction: async () => {
        runs++;
        if (runs <= conflicts) throw new OperationOutcomeError(preconditionFailed);
        return 'written';
      },
    };
  };

  it('without If-Match, runs the transaction again after a version conflict', async () => {
    const t = conflictsThen(1);
    await expect(retryOnConflict(undefined, t.transaction)).resolves.toBe('written');
    expect(t.runs()).toBe(2);
  });

  it('with If-Match, the conflict is the caller\'s: 412 at once', async () => {
    const t = conflictsThen(1);
    await expect(retryOnConflict('3', t.transaction)).rejects.toMatchObject({ outcome: { id: 'precondition-failed' } });
    expect(t.runs()).toBe(1);
  });

  it(`gives up after ${CONFLICT_ATTEMPTS} conflicts in a row, answering the last`, async () => {
    const t = conflictsThen(CONFLICT_ATTEMPTS);
    await expect(retryOnConflict(undefined, t.transaction)).rejects.toMatchObject({ outcome: { id: 'precondition-failed' } });
    expect(t.runs()).toBe(CONFLICT_ATTEMPTS);
  });

  it('any other error is not retried', async () => {
    let runs = 0;
    await expect(
      retryOnConflict(undefined, async () => {
        runs++;
        throw new OperationOutcomeError(serverError(new Error('boom')));
      }),
    ).rejects.toBeInstanceOf(OperationOutcomeError);
    expect(runs).toBe(1);
  });
});
