import { DrizzleQueryError } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { OutboundHttpError } from '../outbound/outbound-errors.ts';
import { createLogger } from './logger.ts';

const PHI = { id: 'PHI-ID-31c9', name: 'PHI-NAME-b604', question: 'PHI-Q-e2d7' };

/** A logger writing into an array, one parsed JSON object per line. */
function capture() {
  const raw: string[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (line: string) => void raw.push(line) } });
  return { log, raw, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/**
 * drizzle's error for a failed query (its message is the SQL and every parameter) over a
 * driver error shaped as PostgreSQL's (src/log/safe-error.test.ts gets real ones from a database).
 */
function queryError(): Error {
  const cause = Object.assign(new Error(`invalid input syntax for type uuid: "${PHI.id}"`), { severity: 'ERROR', code: '22P02', detail: PHI.name, where: `parameter $1 = '${PHI.question}'` });
  return new DrizzleQueryError('insert into "resource" ("content") values ($1)', [JSON.stringify({ name: PHI.name, identifier: PHI.id, question: PHI.question })], cause);
}

describe('createLogger', () => {
  it('an error under err keeps class, code and frames; the line never borrows its message', () => {
    const { log, raw, lines } = capture();
    log.error({ err: queryError() });
    log.error(queryError());
    log.warn({ jobId: 'j-1', err: queryError() }, 'opinion delivery attempt failed');
    log.child({ requestId: 'r-1' }).error({ err: queryError() }, 'unhandled error');

    for (const marker of Object.values(PHI)) expect(raw.join('')).not.toContain(marker);
    expect(lines().map((l) => l.msg)).toEqual(['error', 'error', 'opinion delivery attempt failed', 'unhandled error']);
    for (const line of lines()) {
      expect(line.err).toMatchObject({ type: 'DrizzleQueryError', stack: expect.stringMatching(/^ {4}at /), cause: { type: 'DatabaseError', code: '22P02', severity: 'ERROR' } });
    }
  });

  it('an error under any other key is serialized the same way', () => {
    const { log, raw, lines } = capture();
    log.warn({ cause: queryError(), failed: new OutboundHttpError({ status: 502, failure: 'http', method: 'POST', url: `https://ehr.example/fhir/Patient/${PHI.id}` }) }, 'two errors');
    for (const marker of Object.values(PHI)) expect(raw.join('')).not.toContain(marker);
    expect(lines()[0]).toMatchObject({ cause: { type: 'DrizzleQueryError' }, failed: { type: 'OutboundHttpError', status: 502, method: 'POST', origin: 'https://ehr.example' } });
  });

  it('a non-error under err is reduced to its type', () => {
    const { log, raw, lines } = capture();
    log.error({ err: { name: PHI.name, message: PHI.question } }, 'plain object');
    log.error({ err: `failed for ${PHI.id}` }, 'string');
    for (const marker of Object.values(PHI)) expect(raw.join('')).not.toContain(marker);
    expect(lines().map((l) => l.err)).toEqual([{ type: 'Object' }, { type: 'string' }]);
  });

  it('redacts PHI-bearing paths that slip into a log object (second line of defence)', () => {
    const { log, raw, lines } = capture();
    log.info(
      {
        body: { question: PHI.question },
        headers: { authorization: `Bearer ${PHI.id}` },
        patient: { reference: `Patient/${PHI.id}` },
        query: `identifier=${PHI.id}`,
        params: [PHI.name],
        requester: { display: PHI.name, identifier: PHI.id },
        task: { description: 'kept', note: PHI.question },
        question: PHI.question,
      },
      'slipped',
    );
    for (const marker of Object.values(PHI)) expect(raw.join('')).not.toContain(marker);
    expect(lines()[0]).toMatchObject({ body: '[redacted]', headers: '[redacted]', requester: { display: '[redacted]', identifier: '[redacted]' }, task: { description: 'kept', note: '[redacted]' } });
  });
  it('a nested error logs type, message and stack while the PHI beside it is redacted', () => {
    const { log, raw, lines } = capture();
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8090'), { code: 'ECONNREFUSED', syscall: 'connect' });
    const failed = new TypeError('fetch failed', { cause: refused });
    const outbound = new OutboundHttpError({ status: 0, failure: 'network', method: 'GET', url: `http://localhost:8090/fhir/R4/Patient/${PHI.id}`, cause: failed });
    log.warn({ lookup: { patient: { name: PHI.name }, requester: { name: PHI.name }, error: outbound }, errors: [failed] }, 'nested');
    // An error whose message quotes a value keeps its type and stack, never its message.
    log.warn({ lookup: { error: new Error(`no chart for ${PHI.name}`) } }, 'message with PHI');

    for (const marker of Object.values(PHI)) expect(raw.join('')).not.toContain(marker);
    const [nested, withPhi] = lines() as [Record<string, any>, Record<string, any>];
    expect(nested.lookup.patient).toBe('[redacted]');
    expect(nested.lookup.requester).toEqual({ name: '[redacted]' });
    expect(nested.lookup.error).toMatchObject({
      type: 'OutboundHttpError',
      message: 'GET http://localhost:8090 connection failed',
      stack: expect.stringMatching(/^ {4}at /),
      cause: { type: 'TypeError', message: 'fetch failed', stack: expect.stringMatching(/^ {4}at /), cause: { type: 'Error', code: 'ECONNREFUSED', message: 'connect ECONNREFUSED' } },
    });
    expect(nested.lookup.error).not.toHaveProperty('name');
    expect(nested.errors).toEqual([expect.objectContaining({ type: 'TypeError', message: 'fetch failed', stack: expect.stringMatching(/^ {4}at /) })]);
    expect(withPhi.lookup.error).toEqual({ type: 'Error', stack: expect.stringMatching(/^ {4}at /) });
  });
});
