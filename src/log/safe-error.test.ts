import { sql } from 'drizzle-orm';
import { errors as jose } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/support/database.ts';
import { OAuthError } from '../auth/oauth-error.ts';
import { OutboundAuthError, OutboundHttpError } from '../outbound/outbound-errors.ts';
import type { Database } from '../store/database.ts';
import { usedAssertions } from '../store/schema.ts';
import { LOG_FIELDS, safeError, stackFrames, type LogFields } from './safe-error.ts';

/** Values that must never leave an error: what a patient's request or record would put there. */
const PHI = { id: 'PHI-ID-5d21', name: 'PHI-NAME-7f3a', question: 'PHI-Q-90be' };

function expectNoPhi(value: unknown): void {
  const text = JSON.stringify(value);
  for (const marker of Object.values(PHI)) expect(text).not.toContain(marker);
}

/** Every line of a serialized stack is a frame. */
function expectFramesOnly(stack: unknown): void {
  expect(typeof stack).toBe('string');
  for (const line of (stack as string).split('\n')) expect(line).toMatch(/^ {4}at \S/);
}

/** A real failing query: drizzle's error over the driver's (PGlite, or PostgreSQL when DATABASE_URL is set). */
async function failure(run: () => Promise<unknown>): Promise<Error> {
  try {
    await run();
  } catch (err) {
    return err as Error;
  }
  throw new Error('the query did not fail');
}

describe('safeError: database errors (real driver errors)', () => {
  let database: Database;

  beforeAll(async () => {
    database = await openTestDatabase();
  });
  afterAll(async () => database?.close());

  it('a parametrised query PostgreSQL refuses: the class, SQLSTATE and frames stay; the SQL, its parameters and the quoting message go', async () => {
    const err = await failure(() => database.db.execute(sql`select ${PHI.id}::uuid, ${PHI.name} as name, ${PHI.question} as question`));
    // What would leak: drizzle's message is the SQL and every parameter; PostgreSQL's quotes the value.
    expect(err.constructor.name).toBe('DrizzleQueryError');
    expect(err.message).toContain(PHI.name);
    expect((err.cause as Error).message).toContain(PHI.id);

    const safe = safeError(err);
    expectNoPhi(safe);
    expect(safe).toEqual({
      type: 'DrizzleQueryError',
      stack: expect.any(String),
      cause: expect.objectContaining({ type: 'DatabaseError', code: '22P02', severity: 'ERROR', routine: 'string_to_uuid' }),
    });
    expectFramesOnly(safe.stack);
    expect(safe.stack).toContain('safe-error.test.ts');
    expect(Object.keys(safe.cause ?? {}).sort()).toEqual(expect.arrayContaining(['code', 'routine', 'severity', 'type']));
    for (const key of ['message', 'detail', 'where', 'hint', 'internalQuery', 'query', 'params']) {
      expect(safe).not.toHaveProperty(key);
      expect(safe.cause).not.toHaveProperty(key);
    }
  });

  it('a unique violation keeps the constraint and table, never the detail that quotes the key', async () => {
    const row = { clientId: PHI.name, jti: PHI.id, expiresAt: new Date(Date.now() + 60_000) };
    await database.db.insert(usedAssertions).values(row);
    const err = await failure(() => database.db.insert(usedAssertions).values(row));
    expect((err.cause as { detail?: string }).detail).toContain(PHI.id);

    const safe = safeError(err);
    expectNoPhi(safe);
    expect(safe.cause).toMatchObject({ type: 'DatabaseError', code: '23505', table: 'client_assertion_jti', constraint: 'client_assertion_jti_client_id_jti_pk' });
  });
});

describe('safeError: what other errors keep', () => {
  it('a message header shaped like frames is cut off with the message', () => {
    const err = new Error(`boom ${PHI.name}\n    at ${PHI.id} (file:///x.ts:1:1)\n    at file:///${PHI.question}.ts:2:2`);
    const frames = stackFrames(err);
    expect(frames).toBeDefined();
    expectNoPhi(frames);
    expectFramesOnly(frames);
    expect(safeError(err)).toEqual({ type: 'Error', stack: frames });
  });

  it('a JSON.parse error, which quotes its input, keeps its class only', () => {
    let err: unknown;
    try {
      JSON.parse(PHI.name);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toContain(PHI.name);
    const safe = safeError(err);
    expectNoPhi(safe);
    expect(safe.type).toBe('SyntaxError');
  });

  it('an EHR failure keeps status, kind, method and origin; not the URL path, nor the outcome the EHR sent', () => {
    const err = new OutboundHttpError({
      status: 500,
      failure: 'http',
      method: 'GET',
      url: `https://ehr.example/fhir/R4/Patient/${PHI.id}?identifier=${PHI.id}`,
      outcome: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: `${PHI.name} ${PHI.question}` }] },
    });
    const safe = safeError(err);
    expectNoPhi(safe);
    expect(safe).toEqual({ type: 'OutboundHttpError', status: 500, retryable: true, message: 'GET https://ehr.example HTTP 500', failure: 'http', method: 'GET', origin: 'https://ehr.example', stack: expect.any(String) });
  });

  it('a token endpoint failure keeps the OAuth error only when shaped like a code; the cause keeps its Node code', () => {
    const refused = safeError(new OutboundAuthError({ status: 400, failure: 'http', tokenUrl: 'https://ehr.example/token', oauthError: `invalid_client${PHI.name}` }));
    expectNoPhi(refused);
    expect(refused).toMatchObject({ type: 'OutboundAuthError', status: 400, failure: 'http', retryable: false, origin: 'https://ehr.example' });
    expect(refused).not.toHaveProperty('oauthError');

    const reset = Object.assign(new Error(`read ECONNRESET ${PHI.id}`), { code: 'ECONNRESET' });
    const unreachable = safeError(new OutboundAuthError({ status: 0, failure: 'network', tokenUrl: 'https://ehr.example/token', cause: new TypeError('fetch failed', { cause: reset }) }));
    expectNoPhi(unreachable);
    expect(unreachable).toMatchObject({ type: 'OutboundAuthError', failure: 'network', cause: { type: 'TypeError', cause: { type: 'Error', code: 'ECONNRESET' } } });
    expect(unreachable).not.toHaveProperty('status');
  });

  it('an OAuth refusal logs its fixed-text reason, not a description that quotes the caller', () => {
    const err = new OAuthError('invalid_scope', `not a supported SMART system scope: ${PHI.name}`, { reason: 'not a supported SMART system scope' });
    expect(safeError(err)).toMatchObject({ type: 'OAuthError', error: 'invalid_scope', reason: 'not a supported SMART system scope' });
    expectNoPhi(safeError(err));
  });

  it("jose's errors keep their code, never the JWT payload they carry", () => {
    const err = new jose.JWTClaimValidationFailed('unexpected "aud" claim value', { aud: PHI.id, patient: PHI.name }, 'aud', 'check_failed');
    const safe = safeError(new OAuthError('invalid_client', 'client_assertion aud must be the token endpoint URL', { cause: err }));
    expectNoPhi(safe);
    expect(safe.cause).toMatchObject({ type: 'JWTClaimValidationFailed', code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
  });

  it('declared fields: primitives only, reserved names ignored, a throwing declaration loses its fields only', () => {
    class Declaring extends Error {
      [LOG_FIELDS](): LogFields {
        return { kind: 'fixed', count: 2, ok: true, type: 'Spoofed', stack: PHI.name, nested: { x: PHI.id } as unknown as string, nan: Number.NaN };
      }
    }
    class Throwing extends Error {
      [LOG_FIELDS](): LogFields {
        throw new Error(PHI.name);
      }
    }
    const declared = safeError(new Declaring(PHI.question));
    expect(declared).toEqual({ type: 'Declaring', kind: 'fixed', count: 2, ok: true, stack: expect.any(String) });
    expectNoPhi(declared);
    expect(safeError(new Throwing(PHI.question))).toEqual({ type: 'Throwing', stack: expect.any(String) });
    expectNoPhi(safeError(new Throwing(PHI.question)));
  });

  it('non-errors are reduced to their type; cause chains are bounded and cycles end', () => {
    expect(safeError(`patient ${PHI.name}`)).toEqual({ type: 'string' });
    expect(safeError({ message: PHI.name, name: PHI.id })).toEqual({ type: 'Object' });
    expect(safeError(undefined)).toEqual({ type: 'undefined' });

    const a = new Error(PHI.name);
    const b = new RangeError(PHI.id, { cause: a });
    (a as { cause?: unknown }).cause = b;
    const safe = safeError(b);
    expectNoPhi(safe);
    expect(safe).toMatchObject({ type: 'RangeError', cause: { type: 'Error', cause: { type: 'RangeError' } } });

    let deep: Error = new Error('root');
    for (let i = 0; i < 10; i++) deep = new Error(`level ${i}`, { cause: deep });
    let depth = 0;
    for (let e: { cause?: unknown } | undefined = safeError(deep); e; e = e.cause as { cause?: unknown } | undefined) depth++;
    expect(depth).toBe(5);

    const aggregate = safeError(new AggregateError([new Error(PHI.name), Object.assign(new Error(PHI.id), { code: 'ECONNREFUSED' })], PHI.question));
    expectNoPhi(aggregate);
    expect(aggregate).toMatchObject({ type: 'AggregateError', errors: [{ type: 'Error' }, { type: 'Error', code: 'ECONNREFUSED' }] });
  });
});
