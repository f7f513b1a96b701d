import { lt } from 'drizzle-orm';
import type { Db } from './database.ts';
import { usedAssertions } from './schema.ts';

/**
 * Remembers client-assertion `jti`s in the database so a replayed assertion is refused
 * by every replica, not only the one that saw it first. Rows are kept until the assertion
 * expires; expired ones are purged now and then.
 */
export function createDatabaseJtiStore(db: Db, options: { now?: () => Date; purgeEvery?: number } = {}) {
  const now = options.now ?? (() => new Date());
  const purgeEvery = options.purgeEvery ?? 500;
  let calls = 0;
  return {
    async claim(clientId: string, jti: string, expiresAt: Date): Promise<boolean> {
      if (++calls % purgeEvery === 0) await db.delete(usedAssertions).where(lt(usedAssertions.expiresAt, now()));
      const inserted = await db
        .insert(usedAssertions)
        .values({ clientId, jti, expiresAt })
        .onConflictDoNothing()
        .returning({ jti: usedAssertions.jti });
      return inserted.length === 1;
    },
  };
}
