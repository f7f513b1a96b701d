import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/support/database.ts';
import { OutboundHttpError } from '../outbound/outbound-errors.ts';
import type { Database } from '../store/database.ts';
import { describeDeliveryFailure } from './deliver-opinion.ts';

describe('describeDeliveryFailure: what the referrer sees of a failed post-back', () => {
  let database: Database;
  beforeAll(async () => {
    database = await openTestDatabase();
  });
  afterAll(async () => database?.close());

  it("keeps the EHR's answer (method, URL, status)", () => {
    const err = new OutboundHttpError({ status: 503, failure: 'http', method: 'POST', url: 'https://ehr.example/fhir/DocumentReference?x=1' });
    expect(describeDeliveryFailure(err)).toBe('OutboundHttpError: POST https://ehr.example/fhir/DocumentReference HTTP 503 (transient)');
  });

  it('reduces an internal failure to its type and code: never the SQL or its parameters (the opinion)', async () => {
    let err: unknown;
    try {
      await database.db.execute(sql`select ${'Opinion: revision is premature'}::uuid`);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toContain('revision is premature');
    expect(describeDeliveryFailure(err)).toBe('Internal error (DrizzleQueryError)');
    expect(describeDeliveryFailure('a thrown string')).toBe('Internal error (string)');
  });
});
