import { OperationOutcomeError } from '@medplum/core';

/** Transactions a use case runs in all when each finds its resource moved on under it. */
export const CONFLICT_ATTEMPTS = 3;

/** The store refused a write because the resource is no longer at the version that was read (412, `precondition-failed`). */
export function isVersionConflict(err: unknown): boolean {
  return err instanceof OperationOutcomeError && err.outcome.id === 'precondition-failed';
}

/**
 * Runs `transaction` again, from a fresh read, when its write found the resource moved on
 * since it read it, and the caller did not name the version it expects. A caller without
 * If-Match asked for an action, not for a version: a write the service made meanwhile (a record
 * assembly pointing the Task at a newer record set, a push the clinic's server accepted, the
 * overdue sweep) is not the caller's conflict, and the action is judged again on what is there
 * now (the transition table may still refuse it: 409). With If-Match the 412 stands. After
 * CONFLICT_ATTEMPTS conflicts in a row the last one is answered.
 */
export async function retryOnConflict<T>(ifMatch: string | undefined, transaction: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction();
    } catch (err) {
      if (ifMatch !== undefined || attempt >= CONFLICT_ATTEMPTS || !isVersionConflict(err)) throw err;
    }
  }
}
