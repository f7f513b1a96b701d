import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Resource, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import type { SeededIds } from './support/sandbox-ehr/seed.ts';
import { captureLogs } from './support/log-capture.ts';
import { freePort, startTestService, type TestService } from './support/service.ts';
import { CLIENT_ASSERTION_TYPE, generateClientKey, getAccessToken, loadExamplePrivateJwk, postTokenRequest, signClientAssertion } from './support/tokens.ts';

/** The sandbox's seeded ids, for module-level builders (set once the sandbox runs). */
let chart: SeededIds;

/**
 * No PHI in logs, proven: the real service, the sandbox EHR, a webhook
 * receiver and the real database are driven through every failure this test can provoke, with
 * PHI-marked values in everything the caller, the EHR and the database can put into an error:
 * bad input (bodies, paths, query strings, headers), refused tokens, a built resource that
 * fails validation, database failures (intake, record assembly, the overdue sweep), EHR
 * failures (token endpoint, 5xx with the request quoted back, connection reset, post-back) and
 * failing webhooks. Every log line is captured at debug level; none may carry a marker, and
 * the error lines each path should write must be there, with class, code and stack frames.
 *
 * Database failures are provoked by a trigger on the resource table, armed per resource type
 * and operation, that raises an error whose message and detail quote the whole row: a real
 * PostgreSQL error under drizzle's DrizzleQueryError, whose own message is the SQL and every
 * parameter. It does not depend on the shape of the input, so it keeps working when the edge
 * refuses input PostgreSQL would refuse (a NUL character).
 */

const RUN = randomBytes(4).toString('hex');
/** Everything a log line must never carry; all begin with `PHI-`, which nothing else in the logs does. */
const PHI = {
  patientId: `PHI-ID-${RUN}`,
  patientName: `PHI-NAME-PATIENT-${RUN}`,
  practitioner: `PHI-NAME-DR-${RUN}`,
  question: `PHI-Q-${RUN}`,
  requestId: `PHI-REQ-${RUN}`,
  plan: `PHI-PLAN-${RUN}`,
  opinion: `PHI-OPINION-${RUN}`,
};

type Line = Record<string, unknown> & { msg?: string; err?: Record<string, unknown> };

let referralCount = 0;

/** A valid request whose patient, clinician, question, request id and first opinion are all marked. */
function markedRequest(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return makeSecondOpinionRequest({
    requestId: `${PHI.requestId}-${++referralCount}`,
    patient: { reference: `Patient/${chart.patientId}`, identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.1', value: PHI.patientId }], display: PHI.patientName },
    requester: { reference: `Practitioner/${chart.practitionerId}`, display: PHI.practitioner },
    question: `Is revision advisable for ${PHI.patientName}? ${PHI.question}`,
    consultants: ['lakeside-consults'],
    blinded: false,
    firstOpinion: { diagnosis: [{ system: 'http://snomed.info/sct', code: '428341000124104', display: 'Complication of breast implant' }], plan: PHI.plan, documents: [] },
    ...overrides,
  }, chart);
}

/** Every line of a logged stack is a frame, and at least one names a source file of ours or a dependency. */
function expectFrames(err: Record<string, unknown> | undefined): void {
  expect(typeof err?.stack).toBe('string');
  const frames = (err?.stack as string).split('\n');
  for (const frame of frames) expect(frame).toMatch(/^ {4}at \S/);
  expect(frames.some((f) => /\.(ts|js|mjs|cjs):\d+:\d+\)?$/.test(f))).toBe(true);
}

describe('no PHI in logs, whatever fails', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let webhooks: Server;
  const { log, raw, lines } = captureLogs<Line>('debug');
  /** Client assertions and bearer tokens sent with marked claims: base64url, so checked segment by segment. */
  const markedJwts: string[] = [];
  const tokens: Record<string, string> = {};
  let breakTasks = false;

  beforeAll(async () => {
    // A webhook receiver that fails and echoes PHI in its error body (the service never reads it).
    webhooks = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `no patient ${PHI.patientName}` })));
    });
    await new Promise<void>((resolve) => webhooks.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(webhooks.address() as AddressInfo).port}`;
    const closedPort = await freePort();

    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 50_000 } });

    chart = ehr.seeded;
    const networkFile = await writeSandboxNetwork(ehr, {
      timeoutMs: 2_000,
      edit: (byId) => {
        byId('lakeside-consults').notify = { url: `${hook}/lakeside`, secret: 'lakeside-webhook-secret-0123456789' };
        byId('st-olaf').notify = { url: `http://127.0.0.1:${closedPort}/st-olaf`, secret: 'st-olaf-webhook-secret-0123456789' };
      },
    });

    // The real validator; on demand it sees every Task without its owner, as a builder bug would leave it.
    const real = createValidator();
    const validator = {
      validate(resource: Resource) {
        if (breakTasks && resource.resourceType === 'Task') {
          const { owner: _dropped, ...withoutOwner } = resource as Task;
          return real.validate(withoutOwner as Task);
        }
        return real.validate(resource);
      },
    };
    service = await startTestService({ NETWORK_FILE: networkFile, OVERDUE_SWEEP_INTERVAL_SECONDS: '1' }, log, {
      validator,
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryLimit: 1, retryDelaySeconds: 1, retryDelayMaxSeconds: 1 })),
      jobPollingIntervalSeconds: 0.5,
    });

    // The database trap: a trigger that refuses a row with an error quoting all of it.
    await service.database.db.execute(sql`CREATE TABLE phi_trap (resource_type text NOT NULL, operation text NOT NULL, PRIMARY KEY (resource_type, operation))`);
    await service.database.db.execute(
      sql.raw(`CREATE FUNCTION phi_trap_check() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF EXISTS (SELECT 1 FROM phi_trap WHERE resource_type = NEW.resource_type AND operation = TG_OP) THEN
            RAISE EXCEPTION 'refused row %', NEW.content USING DETAIL = NEW.content::text, HINT = coalesce(NEW.content #>> '{subject,display}', NEW.content #>> '{for,display}', '-');
          END IF;
          RETURN NEW;
        END $$`),
    );
    await service.database.db.execute(sql`CREATE TRIGGER phi_trap BEFORE INSERT OR UPDATE ON resource FOR EACH ROW EXECUTE FUNCTION phi_trap_check()`);

    for (const p of ['st-olaf', 'lakeside-consults']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterEach(() => ehr?.faults.clear());
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
    await new Promise((r) => webhooks?.close(r));
  });

  const call = callerFor(() => service.url, tokens);
  const arm = (resourceType: string, operation: 'INSERT' | 'UPDATE') => service.database.db.execute(sql`INSERT INTO phi_trap VALUES (${resourceType}, ${operation})`);
  const disarm = () => service.database.db.execute(sql`DELETE FROM phi_trap`);

  /** Waits for a log line; fails naming what it waited for and the error lines seen so far. */
  const logged = (match: (l: Line) => boolean, what: string, timeoutMs = 45_000) =>
    until(() => lines.find(match), what, timeoutMs, () => `error lines: ${JSON.stringify(lines.filter((l) => l.err).map((l) => [l.msg, l.err]))}`);

  /** Raw HTTP: bodies, headers and content types the JSON caller would not send. */
  const send = (method: string, path: string, init: { token?: string; body?: string; headers?: Record<string, string> } = {}) =>
    fetch(`${service.url}${path}`, {
      method,
      headers: { ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
      ...(init.body !== undefined ? { body: init.body } : {}),
    }).then(async (res) => ({ status: res.status, text: await res.text() }));

  async function refer(body: Record<string, unknown>): Promise<{ id: string; taskId: string }> {
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', body);
    expect(created.status).toBe(201);
    return { id: created.body.id, taskId: created.body.tasks[0]?.id as string };
  }

  const assemblyFailure = (serviceRequestId: string, type: string) => (l: Line) => l.msg === 'record set assembly attempt failed' && l.serviceRequestId === serviceRequestId && l.err?.type === type;

  it('bad input: malformed, invalid and oversized bodies, marked paths, query strings and headers', async () => {
    const referrer = tokens['st-olaf'] as string;
    const consultant = tokens['lakeside-consults'] as string;
    const headers = { 'x-patient-name': PHI.patientName, 'user-agent': PHI.practitioner, referer: `https://ehr.example/chart/${PHI.patientId}`, traceparent: `00-${PHI.patientId}-00f067aa0ba902b7-01` };
    const body = JSON.stringify(markedRequest());

    expect((await send('POST', '/second-opinions', { token: referrer, body: body.slice(0, -20), headers })).status).toBe(400);
    expect((await send('POST', '/second-opinions', { token: referrer, body: JSON.stringify(markedRequest({ kind: PHI.question, priority: PHI.plan, patient: { reference: PHI.patientName, identifier: [{ value: PHI.patientId }] } })) })).status).toBe(400);
    expect((await send('POST', '/second-opinions', { token: referrer, body: JSON.stringify(markedRequest({ priority: 'stat' })) })).status).toBe(422);
    expect((await send('POST', '/second-opinions', { token: referrer, body: JSON.stringify(markedRequest({ consultants: [PHI.practitioner] })) })).status).toBeGreaterThanOrEqual(400);
    expect((await send('POST', '/second-opinions', { token: referrer, body: JSON.stringify({ question: PHI.question.repeat(80_000) }) })).status).toBe(413);
    expect((await send('POST', '/second-opinions', { token: referrer, body, headers: { 'content-type': `application/json; charset=${PHI.patientName}` } })).status).toBe(415);
    for (const path of [
      `/second-opinions/${PHI.requestId}`,
      `/second-opinions/${PHI.requestId}/comparison`,
      `/fhir/Task/${PHI.patientId}`,
      `/fhir/Task/${randomUUID()}/_history/${PHI.patientId}`,
      `/fhir/${PHI.patientName}`,
      `/fhir/ServiceRequest?identifier=${PHI.requestId}&patient=${PHI.patientName}`,
      `/fhir/Task?_id=${PHI.patientId}`,
      `/participants?role=${PHI.question}`,
      `/${PHI.patientName}/chart?mrn=${PHI.patientId}`,
    ]) {
      expect((await send('GET', path, { token: referrer, headers })).status).toBeLessThan(500);
    }
    expect((await send('POST', `/consults/${PHI.patientId}/accept`, { token: consultant, body: JSON.stringify({ note: PHI.question }) })).status).toBeLessThan(500);

    // A NUL character: refused at the edge (400), or by PostgreSQL (500, logged as an error line).
    const nul = await send('POST', '/second-opinions', { token: referrer, body: JSON.stringify(markedRequest({ question: `${PHI.question}\u0000` })) });
    expect([400, 500]).toContain(nul.status);
    if (nul.status === 500) {
      const line = await logged((l) => l.msg === 'unhandled error' && l.err?.type === 'DrizzleQueryError', 'the NUL character refused by PostgreSQL');
      expect(line.err?.cause).toMatchObject({ type: 'DatabaseError', code: expect.stringMatching(/^22/) });
    }

    await logged((l) => l.msg === 'request' && l.route === '/second-opinions/:id' && l.status === 404, 'the request line of the marked path');
    const requestLines = lines.filter((l) => l.msg === 'request');
    expect(requestLines.find((l) => l.route === '/second-opinions/:id')).toMatchObject({ path: '/second-opinions/:id', status: 404 });
    expect(requestLines.find((l) => l.route === '/fhir/:type/:id')).toMatchObject({ path: '/fhir/Task/:id' });
    expect(requestLines.some((l) => l.status === 413) && requestLines.some((l) => l.status === 415)).toBe(true);
  });

  it('token failures: assertions and bearer tokens carrying marked claims', async () => {
    const tokenUrl = `${service.url}/auth/token`;
    const clientId = clientIdOf('st-olaf');
    const privateJwk = await loadExamplePrivateJwk(clientId);
    const marked = { patient: PHI.patientName, patient_id: PHI.patientId, note: PHI.question };
    const form = (assertion: string, extra: Record<string, string> = {}) => ({ grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion, ...extra });
    const sign = async (options: Partial<Parameters<typeof signClientAssertion>[0]> = {}) => {
      const jwt = await signClientAssertion({ clientId, privateJwk, tokenUrl, claims: marked, ...options });
      markedJwts.push(jwt);
      return jwt;
    };
    const refusals: { status: number; error: unknown }[] = [];
    const post = async (f: Record<string, string>) => {
      const { status, body } = await postTokenRequest(service.url, f);
      refusals.push({ status, error: body.error });
    };

    await post(form(`${PHI.patientName}.${PHI.patientId}.${PHI.question}`));
    await post(form(await sign({ privateJwk: (await generateClientKey()).privateJwk, kid: privateJwk.kid as string })));
    await post(form(await sign({ tokenUrl: `https://${PHI.patientId}.example/token` })));
    await post(form(await sign({ clientId: PHI.patientId })));
    await post(form(await sign({ claims: { ...marked, sub: PHI.practitioner } })));
    await post(form(await sign({ expiresInSeconds: -600 })));
    await post(form(await sign(), { scope: `system/Task.rs ${PHI.question}` }));
    await post(form(await sign(), { practitioner: PHI.practitioner }));
    const replayed = await sign({ jti: PHI.requestId });
    await post(form(replayed));
    await post(form(replayed));
    expect(refusals.map((r) => r.status)).toEqual([401, 401, 401, 401, 401, 401, 400, 400, 200, 401]);

    // Bearer tokens: a forged access token with marked claims, and a header that is not a bearer at all.
    const forged = await signClientAssertion({ clientId, privateJwk: (await generateClientKey()).privateJwk, tokenUrl: service.url, claims: { ...marked, client_id: clientId, scope: 'system/*.rs' } });
    markedJwts.push(forged);
    expect((await send('GET', '/fhir/Task', { token: forged })).status).toBe(401);
    expect((await send('GET', '/fhir/Task', { headers: { authorization: `Basic ${PHI.patientName}` } })).status).toBe(401);

    const refused = await until(() => {
      const found = lines.filter((l) => l.msg === 'token request refused');
      return found.length >= 9 ? found : undefined;
    }, 'nine token refusals logged');
    for (const line of refused) {
      expect(line.err).toMatchObject({ type: 'OAuthError', error: expect.stringMatching(/^invalid_/), reason: expect.any(String) });
      expectFrames(line.err);
    }
    expect(refused.map((l) => l.err?.reason)).toEqual(expect.arrayContaining(['not a supported SMART system scope', 'client_assertion jti has already been used', 'unknown client']));
    expect(refused.find((l) => (l.err?.cause as Line | undefined)?.type === 'JWTClaimValidationFailed')?.err?.cause).toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
    expect(refused.some((l) => (l.err?.cause as Line | undefined)?.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' || (l.err?.cause as Line | undefined)?.code === 'ERR_JWKS_NO_MATCHING_KEY')).toBe(true);
  });

  it('validation failure: a built resource breaks our profiles', async () => {
    breakTasks = true;
    try {
      expect((await call('POST', '/second-opinions', 'st-olaf', markedRequest())).status).toBe(500);
    } finally {
      breakTasks = false;
    }
    const line = await logged((l) => l.msg === 'built resource failed validation; nothing was stored', 'the validation failure');
    expect(line).toMatchObject({ level: 'error', resourceType: 'Task', err: { type: 'ResourceValidationError', resourceType: 'Task', issues: expect.any(Number) } });
    expectFrames(line.err);
    expect((line.rules as { expression?: string[] }[]).some((r) => r.expression?.some((e) => e.startsWith('Task.owner')))).toBe(true);
  });

  it('database failure at intake: the error handler logs the query error, not its SQL and parameters', async () => {
    await arm('ServiceRequest', 'INSERT');
    try {
      expect((await call('POST', '/second-opinions', 'st-olaf', markedRequest())).status).toBe(500);
    } finally {
      await disarm();
    }
    const line = await logged((l) => l.msg === 'unhandled error' && l.err?.type === 'DrizzleQueryError' && (l.err.cause as Line | undefined)?.code === 'P0001', 'the intake query error');
    expect(line).toMatchObject({ level: 'error', err: { type: 'DrizzleQueryError', cause: { type: 'DatabaseError', code: 'P0001', severity: 'ERROR' } } });
    expectFrames(line.err);
  });

  it('EHR token endpoint failure: the EHR refuses our client with PHI in its error code and a token in its description', async () => {
    // The error_description is logged (it is what tells an integrator what to fix;
    // the token endpoint is sent no patient data), sanitised: printable ASCII, 200 characters,
    // nothing shaped like a token or assertion. A malformed `error` code is still left out.
    const quotedToken = 'eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJzby1zZXJ2aWNlIn0.c2lnbmF0dXJlLXF1b3RlZC1iYWNr';
    ehr.faults.add({ path: '/auth/token', status: 401, body: { error: `invalid_client ${PHI.patientName}`, error_description: `Invalid client assertion audience in ${quotedToken}` } });
    const { id } = await refer(markedRequest());
    const line = await logged(assemblyFailure(id, 'OutboundAuthError'), 'the EHR token failure');
    // Permanent: the assembly ends on its first attempt, and the line says so.
    expect(line).toMatchObject({
      level: 'warn',
      attempt: 1,
      outcome: 'failed',
      err: { type: 'OutboundAuthError', status: 401, failure: 'http', retryable: false, oauthErrorDescription: 'Invalid client assertion audience in [redacted]', origin: new URL(ehr.tokenUrl).origin },
    });
    expect(line.err).not.toHaveProperty('oauthError');
    for (const part of quotedToken.split('.')) expect(JSON.stringify(line)).not.toContain(part);
    expectFrames(line.err);
  });

  it('EHR failure: 500 with the request quoted back, and a connection reset', async () => {
    const quoted = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: `No records for ${PHI.patientName} (${PHI.patientId}): ${PHI.question}` }] };
    ehr.faults.add({ path: '/fhir/R4', status: 500, body: quoted });
    const first = await refer(markedRequest());
    const serverError = await logged(assemblyFailure(first.id, 'OutboundHttpError'), 'the EHR 500');
    expect(serverError.err).toMatchObject({ type: 'OutboundHttpError', status: 500, failure: 'http', method: 'GET', retryable: true, origin: new URL(ehr.baseUrl).origin });
    expectFrames(serverError.err);
    ehr.faults.clear();

    ehr.faults.add({ path: '/fhir/R4', resetConnection: true });
    const second = await refer(markedRequest());
    const reset = await logged(assemblyFailure(second.id, 'OutboundHttpError'), 'the EHR connection reset');
    expect(reset.err).toMatchObject({ type: 'OutboundHttpError', failure: 'network', retryable: true, cause: { type: 'TypeError' } });
    expect(reset.err).not.toHaveProperty('status');
  });

  it('database failure in a job and in the overdue sweep: the worker wrapper and the sweep log the query error', async () => {
    await arm('Task', 'UPDATE');
    let taskId: string;
    try {
      const referral = await refer(markedRequest());
      taskId = referral.taskId;
      // Both attempts fail (a query error is not retryable), so no later attempt races the sweep below.
      for (const attempt of [1, 2]) {
        const line = await logged((l) => assemblyFailure(referral.id, 'DrizzleQueryError')(l) && l.attempt === attempt, `assembly attempt ${attempt} failing in the database`);
        expect(line.err).toMatchObject({ cause: { type: 'DatabaseError', code: 'P0001', severity: 'ERROR' } });
        expectFrames(line.err);
      }
    } finally {
      await disarm();
    }

    // The sweep: the Task made overdue behind the service's back and the trap armed in one
    // transaction (so no sweep can mark it in between), then the sweep's update refused.
    await service.database.db.transaction(async (tx) => {
      await tx.execute(sql`UPDATE resource SET content = jsonb_set(content - 'businessStatus', '{restriction,period,end}', '"2020-01-01T00:00:00Z"') WHERE resource_type = 'Task' AND id = ${taskId}`);
      await tx.execute(sql`INSERT INTO phi_trap VALUES ('Task', 'UPDATE')`);
    });
    try {
      const line = await logged((l) => l.msg === 'overdue sweep failed', 'the overdue sweep failing in the database');
      expect(line).toMatchObject({ level: 'warn', err: { type: 'DrizzleQueryError', cause: { type: 'DatabaseError', code: 'P0001' } } });
      expectFrames(line.err);
    } finally {
      await disarm();
    }
  });

  it('EHR failure on post-back: the opinion (marked) is refused with PHI in the answer', async () => {
    // The patient's own question (marked) too: the opinion that leaves it unanswered is refused first.
    const { id, taskId } = await refer(markedRequest({ questions: [{ text: `${PHI.question}: can ${PHI.patientName} swim again?`, askedBy: 'patient' }] }));
    await until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records ready');
    expect((await call('POST', `/consults/${taskId}/accept`, 'lakeside-consults')).status).toBe(200);
    expect((await call('POST', `/consults/${taskId}/start`, 'lakeside-consults')).status).toBe(200);
    ehr.faults.add({ path: '/fhir/R4/DocumentReference', method: 'POST', status: 500, body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: `Duplicate note for ${PHI.patientName}: ${PHI.opinion}` }] } });
    const unanswered = { ...EXAMPLE_OPINION, summary: `${PHI.opinion} for ${PHI.patientName}`, followUp: PHI.question };
    expect((await call('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', unanswered)).status).toBe(422);
    const opinion = { ...unanswered, answers: [{ question: 0, text: `${PHI.opinion}: yes` }] };
    expect((await call('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', opinion)).status).toBe(200);
    const line = await logged((l) => l.msg === 'opinion delivery attempt failed' && l.err?.type === 'OutboundHttpError', 'the post-back failure');
    expect(line).toMatchObject({ level: 'warn', deliveryId: expect.any(String), err: { type: 'OutboundHttpError', status: 500, method: 'POST', failure: 'http' } });
    expectFrames(line.err);
  });

  it('webhook failures: a receiver answering 500 with PHI, and one that cannot be reached', async () => {
    const refused = await logged((l) => l.msg === 'webhook notification attempt failed' && l.err?.type === 'WebhookRefusedError', 'a refused webhook');
    expect(refused).toMatchObject({ participantId: 'lakeside-consults', err: { type: 'WebhookRefusedError', status: 500 } });
    expectFrames(refused.err);
    const unreachable = await logged((l) => l.msg === 'webhook notification attempt failed' && l.participantId === 'st-olaf', 'an unreachable webhook');
    expect(unreachable.err).toMatchObject({ type: 'TypeError', cause: { code: 'ECONNREFUSED' } });
  });

  it('no log line carries a marked value, a marked token or an error message from outside', () => {
    expect(lines.length).toBeGreaterThan(50);
    const leaks = raw.filter((line) => line.includes('PHI-'));
    expect(leaks).toEqual([]);
    for (const marker of Object.values(PHI)) expect(raw.join('\n')).not.toContain(marker);
    for (const jwt of markedJwts) {
      for (const segment of jwt.split('.')) expect(raw.join('\n')).not.toContain(segment);
    }
    // What drizzle, PostgreSQL and the EHR would have said is nowhere either.
    for (const phrase of ['Failed query', 'params:', 'refused row', 'No records for', 'Duplicate note for', 'no patient']) {
      expect(raw.filter((line) => line.includes(phrase))).toEqual([]);
    }
  });
});
