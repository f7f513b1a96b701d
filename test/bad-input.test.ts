import { gzipSync } from 'node:zlib';
import type { AuditEvent, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createValidator } from '../src/fhir/validator.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { rawExchange, rawRequest, rowCounts, type RawResponse } from './support/raw-http.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { clientCredentialsForm, getAccessToken, loadExamplePrivateJwk, signClientAssertion } from './support/tokens.ts';

const NUL = 'contains a NUL character (U+0000), which the service cannot store';
const SURROGATE = 'contains a lone surrogate (U+D800 to U+DFFF without its pair), which is not Unicode text';
const MALFORMED = 'is not valid percent-encoded UTF-8';
const CONTROL = 'contains a control character (U+001B), which FHIR text cannot hold';
const NOT_DECOMPRESSED = 'The request body could not be decompressed: it is not what its Content-Encoding says';
const NOT_UTF8 = 'The request body must be UTF-8: send charset=utf-8 or no charset in Content-Type';
const CURSOR_REFUSED = '_cursor is not a cursor this service made: take it from the next link as it is';

function outcome(code: string, text: string, expression?: string): unknown {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text }, ...(expression !== undefined ? { expression: [expression] } : {}) }] };
}

/** The ids the doors are called with: a referral whose Lakeside Task is on hold for information. */
interface Ids {
  referral: string;
  task: string;
}

/**
 * Bad input at every door: a NUL or a lone surrogate in a JSON body, a path id
 * or a query value, malformed percent-encoding, a body that is not what its Content-Encoding
 * says, a charset other than UTF-8, a forged paging cursor, and requests Node's HTTP parser
 * refuses. Each answers its 4xx with an OperationOutcome naming the field or parameter (the
 * token endpoint: an OAuth error), and nothing is written. Requests go out as raw bytes.
 */
describe('bad input', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let store: ResourceStore;
  const tokens: Record<string, string> = {};
  const ids: Ids = { referral: '', task: '' };
  const call = callerFor(() => service.url, tokens);

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 10_000 } });
    service = await startTestService({ NETWORK_FILE: await writeSandboxNetwork(ehr, { timeoutMs: 5_000 }) }, undefined, { jobPollingIntervalSeconds: 0.5 });
    for (const p of ['st-olaf', 'lakeside-consults', 'audit-office']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
    // Two Tasks (so a search has a second page), the Lakeside one on hold: every action would otherwise have work to do.
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants: ['lakeside-consults', 'northfield-pathology'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded));
    expect(created.status).toBe(201);
    ids.referral = created.body.id;
    ids.task = created.body.tasks[0]?.id as string;
    store = new ResourceStore(service.database.db, createValidator());
    await until(async () => ((await store.read<Task>('Task', ids.task, 'system'))?.businessStatus?.coding?.[0]?.code === 'records-ready' ? true : undefined), 'the record set');
    for (const [action, body] of [['accept'], ['start'], ['request-info', { question: 'Which implant was used?' }]] as const) {
      expect((await call('POST', `/consults/${ids.task}/${action}`, 'lakeside-consults', body)).status).toBe(200);
    }
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  const json = (who: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${tokens[who]}`, 'content-type': 'application/json', ...extra });

  /**
   * Sends, asserts the whole answer (status, OperationOutcome, FHIR media type), and that no table
   * changed. A FHIR search refused once the caller is known is audited like every refused read
   * (`audited`): then its AuditEvent, outcome 4, is the one row added.
   */
  async function refused(send: () => Promise<RawResponse>, status: number, body: unknown, audited = false): Promise<void> {
    const before = await rowCounts(service);
    const res = await send();
    expect({ status: res.status, body: res.body }).toEqual({ status, body });
    expect(res.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
    const added = audited ? 1 : 0;
    expect(await rowCounts(service)).toEqual({ ...before, resource: (before.resource ?? 0) + added, resource_history: (before.resource_history ?? 0) + added });
    if (audited) {
      const [event] = (await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 1 }, 'system')).resources;
      expect(event).toMatchObject({ outcome: '4', outcomeDesc: `Refused (${status}): invalid request` });
    }
  }

  describe('a NUL, a lone surrogate or a control character in a JSON body: 400 naming the field', () => {
    // Bodies are built while tests are collected, before the sandbox runs: refused at the door, their example ids never reach an EHR.
    const doors: [string, (i: Ids) => string, string, (bad: string) => unknown, string][] = [
      ['intake', () => '/second-opinions', 'st-olaf', (bad) => makeSecondOpinionRequest({ question: bad }), 'question'],
      ['intake, nested', () => '/second-opinions', 'st-olaf', (bad) => makeSecondOpinionRequest({ records: { documents: [{ reference: 'DocumentReference/op-note-2024', display: bad }] } }), 'records.documents[0].display'],
      ['add records', (i) => `/second-opinions/${i.referral}/records`, 'st-olaf', (bad) => ({ documents: [{ reference: `DocumentReference/x${bad}` }] }), 'documents[0].reference'],
      ['add consultants', (i) => `/second-opinions/${i.referral}/consultants`, 'st-olaf', (bad) => ({ consultants: ['riverside-imaging', `x${bad}`] }), 'consultants[1]'],
      ['cancel', (i) => `/second-opinions/${i.referral}/cancel`, 'st-olaf', (bad) => ({ reason: bad }), 'reason'],
      ['answer information', (i) => `/second-opinions/${i.referral}/info`, 'st-olaf', (bad) => ({ text: `The implant was ${bad}` }), 'text'],
      ['accept', (i) => `/consults/${i.task}/accept`, 'lakeside-consults', (bad) => ({ note: bad }), 'note'],
      ['decline', (i) => `/consults/${i.task}/decline`, 'lakeside-consults', (bad) => ({ reason: bad }), 'reason'],
      ['start', (i) => `/consults/${i.task}/start`, 'lakeside-consults', (bad) => ({ a: ['ok', bad] }), 'a[1]'],
      ['request information', (i) => `/consults/${i.task}/request-info`, 'lakeside-consults', (bad) => ({ question: bad }), 'question'],
      ['confirm cancellation', (i) => `/consults/${i.task}/confirm-cancellation`, 'lakeside-consults', (bad) => ({ x: { y: bad } }), 'x.y'],
      ['opinion', (i) => `/consults/${i.task}/opinion`, 'lakeside-consults', (bad) => ({ ...EXAMPLE_OPINION, recommendations: [EXAMPLE_OPINION.recommendations[0], { option: 'Revision', risks: ['Infection', bad] }] }), 'recommendations[1].risks[1]'],
    ];
    const cases = doors.flatMap(([door, path, who, body, field]) => [
      [door, 'NUL', path, who, body('a\u0000b'), field, NUL],
      [door, 'lone surrogate', path, who, body('a\ud800b'), field, SURROGATE],
      [door, 'control character', path, who, body('a\u001bb'), field, CONTROL],
    ] as const);
    it.each(cases)('%s, %s', async (_door, _defect, path, who, body, field, reason) => {
      await refused(() => rawRequest(service.url, 'POST', path(ids), json(who), JSON.stringify(body)), 400, outcome('value', `${field} ${reason}`, field));
    });

    it('a field name with a NUL: 400 naming the object that holds it (the top level here)', async () => {
      await refused(() => rawRequest(service.url, 'POST', `/consults/${ids.task}/confirm-cancellation`, json('lakeside-consults'), '{"\\u0000":1}'), 400, outcome('value', `The request body has a field name that ${NUL}`));
    });
  });

  describe('a bad path id: 400 naming the path parameter', () => {
    const doors: [string, (i: Ids, bad: string) => string, string, string, unknown?][] = [
      ['GET', (_i, bad) => `/second-opinions/${bad}`, 'st-olaf', 'id'],
      ['GET', (_i, bad) => `/second-opinions/${bad}/comparison`, 'st-olaf', 'id'],
      ['POST', (_i, bad) => `/second-opinions/${bad}/records`, 'st-olaf', 'id', { documents: [{ reference: 'DocumentReference/op-note-2024' }] }],
      ['POST', (_i, bad) => `/second-opinions/${bad}/consultants`, 'st-olaf', 'id', { consultants: ['riverside-imaging'] }],
      ['POST', (_i, bad) => `/second-opinions/${bad}/cancel`, 'st-olaf', 'id', { reason: 'No longer needed' }],
      ['POST', (_i, bad) => `/second-opinions/${bad}/info`, 'st-olaf', 'id', { text: 'A 350 cc implant' }],
      ['POST', (_i, bad) => `/consults/${bad}/accept`, 'lakeside-consults', 'taskId'],
      ['POST', (_i, bad) => `/consults/${bad}/opinion`, 'lakeside-consults', 'taskId', EXAMPLE_OPINION],
      ['POST', (_i, bad) => `/admin/deliveries/${bad}/retry`, 'audit-office', 'id'],
      ['GET', (_i, bad) => `/fhir/Task/${bad}`, 'st-olaf', 'id'],
      ['GET', (_i, bad) => `/fhir/Task/${bad}/_history`, 'st-olaf', 'id'],
      ['GET', (i, bad) => `/fhir/Task/${i.task}/_history/${bad}`, 'st-olaf', 'vid'],
      ['GET', (_i, bad) => `/fhir/Binary/${bad}`, 'lakeside-consults', 'id'],
      ['GET', (_i, bad) => `/fhir/${bad}?_count=1`, 'st-olaf', 'type'],
    ];
    const defects = [
      ['%00', NUL],
      ['%E0%A4%A', MALFORMED],
      ['%ED%A0%80', MALFORMED], // an encoded lone surrogate is not UTF-8
    ] as const;
    const cases = doors.flatMap(([method, path, who, name, body]) => defects.map(([bad, reason]) => [method, path({ referral: '{id}', task: '{taskId}' }, bad), path, bad, who, name, body, reason] as const));
    it.each(cases)('%s %s', async (method, _label, path, bad, who, name, body, reason) => {
      await refused(() => rawRequest(service.url, method, path(ids, bad), json(who), body === undefined ? undefined : JSON.stringify(body)), 400, outcome('value', `The path parameter ${name} ${reason}`, name));
    });
  });

  describe('a bad query value: 400 naming the parameter', () => {
    const doors = [
      ['/fhir/Task?_count=5&status=', 'st-olaf', 'status'],
      ['/fhir/AuditEvent?entity=', 'audit-office', 'entity'],
      ['/consults?status=', 'lakeside-consults', 'status'],
      ['/participants?role=', 'lakeside-consults', 'role'],
    ] as const;
    const defects = [
      ['%00', NUL],
      ['requested%00', NUL],
      ['%E0%A4%A', MALFORMED],
      ['%ED%A0%80', MALFORMED],
    ] as const;
    const cases = doors.flatMap(([path, who, name]) => defects.map(([bad, reason]) => [path, bad, who, name, reason] as const));
    it.each(cases)('%s%s', async (path, bad, who, name, reason) => {
      await refused(() => rawRequest(service.url, 'GET', `${path}${bad}`, json(who)), 400, outcome('value', `${name} ${reason}`, name));
    });

    it('a parameter name that does not decode is named as sent', async () => {
      await refused(() => rawRequest(service.url, 'GET', '/fhir/Task?%E0%A4%A=1', json('st-olaf')), 400, outcome('value', `The parameter name ${MALFORMED}`, '%E0%A4%A'));
    });
  });

  describe('a parameter named like an Object.prototype member is an unknown parameter like any other', () => {
    it.each(['toString', 'constructor', '__proto__', 'hasOwnProperty'])('/fhir/Task?%s=1 with strict handling: 400 naming it', async (name) => {
      await refused(() => rawRequest(service.url, 'GET', `/fhir/Task?${name}=1`, json('st-olaf', { prefer: 'handling=strict' })), 400, outcome('not-supported', `Search parameter '${name}' is not supported on Task`, name), true);
    });

    it('/fhir/Task?toString=1: the search runs and reports the parameter as ignored', async () => {
      const res = await rawRequest(service.url, 'GET', '/fhir/Task?toString=1&_count=1', json('st-olaf'));
      expect(res.status).toBe(200);
      const entries = (res.body as { entry: { resource: unknown; search: { mode: string } }[] }).entry;
      expect(entries.filter((e) => e.search.mode === 'outcome').map((e) => e.resource)).toEqual([
        { resourceType: 'OperationOutcome', issue: [{ severity: 'warning', code: 'not-supported', details: { text: "Search parameter 'toString' is not supported and was ignored" }, expression: ['toString'] }] },
      ]);
    });

    it.each(['toString', 'constructor', '__proto__'])('/consults?%s=1: 400 naming it', async (name) => {
      await refused(() => rawRequest(service.url, 'GET', `/consults?${name}=1`, json('lakeside-consults')), 400, outcome('not-supported', `Unknown parameter '${name}' (status, overdue, _count, _cursor)`, name));
    });
  });

  describe('a paging cursor this service did not make: 400 naming _cursor, not page one', () => {
    const forged = Buffer.from(JSON.stringify(['2026-01-01T00:00:00.000Z', 'x\u0000'])).toString('base64url');
    const yearZero = Buffer.from(JSON.stringify(['0000-01-01T00:00:00.000Z', 'task-1'])).toString('base64url');
    it.each([
      ['/fhir/Task?_cursor=garbage', 'st-olaf', true],
      [`/fhir/Task?_count=1&_cursor=${forged}`, 'st-olaf', true],
      [`/fhir/Task?_cursor=${yearZero}`, 'st-olaf', true],
      [`/consults?_cursor=${yearZero}`, 'lakeside-consults', false],
      ['/fhir/AuditEvent?_cursor=garbage', 'audit-office', true],
      ['/consults?_cursor=garbage', 'lakeside-consults', false],
      [`/consults?_cursor=${forged}`, 'lakeside-consults', false],
    ])('%s', async (path, who, audited) => {
      await refused(() => rawRequest(service.url, 'GET', path, json(who)), 400, outcome('value', CURSOR_REFUSED, '_cursor'), audited);
    });

    it('a _lastUpdated in year 0, which PostgreSQL has not: 400 naming it', async () => {
      await refused(() => rawRequest(service.url, 'GET', '/fhir/Task?_lastUpdated=ge0000', json('st-olaf')), 400, outcome('value', "_lastUpdated 'ge0000' is outside the years 0001 to 9999", '_lastUpdated'), true);
    });

    it('the cursor of a next link still pages', async () => {
      const first = await call<{ entry: { resource: Task }[]; link: { relation: string; url: string }[] }>('GET', '/fhir/Task?_count=1', 'st-olaf');
      const next = first.body.link.find((l) => l.relation === 'next')?.url as string;
      const second = await call<{ entry: { resource: Task }[] }>('GET', next.slice(service.config.publicUrl.length), 'st-olaf');
      expect(second.status).toBe(200);
      expect(second.body.entry.map((e) => e.resource.id)).not.toEqual(first.body.entry.map((e) => e.resource.id));
    });
  });

  describe('a body that is not what its headers say', () => {
    const bodyDoors = [
      ['/second-opinions', 'st-olaf'],
      ['/second-opinions/{referral}/records', 'st-olaf'],
      ['/second-opinions/{referral}/consultants', 'st-olaf'],
      ['/consults/{task}/accept', 'lakeside-consults'],
      ['/consults/{task}/opinion', 'lakeside-consults'],
    ] as const;
    const at = (path: string) => path.replace('{referral}', ids.referral).replace('{task}', ids.task);

    it.each(bodyDoors.flatMap(([path, who]) => [[path, 'gzip', who], [path, 'deflate', who], [path, 'br', who]] as const))('%s, Content-Encoding %s over plain bytes: 400 naming Content-Encoding', async (path, encoding, who) => {
      await refused(() => rawRequest(service.url, 'POST', at(path), json(who, { 'content-encoding': encoding }), '{"not":"compressed"}'), 400, outcome('invalid', NOT_DECOMPRESSED, 'Content-Encoding'));
    });

    it.each(bodyDoors)('%s, charset=utf-16: 415 naming Content-Type, even when the bytes are UTF-16', async (path, who) => {
      const body = Buffer.from(JSON.stringify(makeSecondOpinionRequest({}, ehr.seeded)), 'utf16le');
      await refused(() => rawRequest(service.url, 'POST', at(path), json(who, { 'content-type': 'application/json; charset=utf-16le' }), body), 415, outcome('not-supported', NOT_UTF8, 'Content-Type'));
      await refused(() => rawRequest(service.url, 'POST', at(path), json(who, { 'content-type': 'application/fhir+json; charset="UTF-16"' }), '{}'), 415, outcome('not-supported', NOT_UTF8, 'Content-Type'));
    });
  });

  describe('the token endpoint answers OAuth errors', () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    async function oauthRefused(body: string | Buffer, headers: Record<string, string>, status: number, error: string, description: string): Promise<void> {
      const before = await rowCounts(service);
      const res = await rawRequest(service.url, 'POST', '/auth/token', headers, body);
      expect({ status: res.status, body: res.body }).toEqual({ status, body: { error, error_description: description } });
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(await rowCounts(service)).toEqual(before);
    }
    const valid = async () => new URLSearchParams(await clientCredentialsForm(service.url, clientIdOf('st-olaf'))).toString();

    it.each([
      ['a NUL', 'grant_type=client_credentials%00', `grant_type ${NUL}`],
      ['malformed percent-encoding', 'grant_type=client_credentials&scope=%E0%A4%A', `scope ${MALFORMED}`],
      ['an encoded lone surrogate', 'grant_type=client_credentials&scope=%ED%A0%80', `scope ${MALFORMED}`],
    ])('%s in the form: invalid_request naming the parameter', async (_defect, body, reason) => {
      await oauthRefused(body, form, 400, 'invalid_request', `the token request parameters must be percent-encoded UTF-8 text: ${reason}`);
    });

    it('a body that is not gzip, or not UTF-8: invalid_request', async () => {
      await oauthRefused(await valid(), { ...form, 'content-encoding': 'gzip' }, 400, 'invalid_request', 'the token request body could not be decompressed: it is not what its Content-Encoding says');
      await oauthRefused(Buffer.from(await valid(), 'utf16le'), { 'content-type': 'application/x-www-form-urlencoded; charset=utf-16le' }, 400, 'invalid_request', 'the token request body must be UTF-8: send charset=utf-8 or no charset');
    });

    it.each([
      ['a NUL', 'a\u0000b', NUL],
      ['a lone surrogate', 'a\ud800b', SURROGATE],
    ])('a client assertion whose jti holds %s: invalid_client, nothing stored', async (_defect, jti, reason) => {
      const clientId = clientIdOf('st-olaf');
      const assertion = await signClientAssertion({ clientId, privateJwk: await loadExamplePrivateJwk(clientId), tokenUrl: `${service.url}/auth/token`, jti });
      const body = new URLSearchParams({ ...(await clientCredentialsForm(service.url, clientId)), client_assertion: assertion }).toString();
      await oauthRefused(body, form, 401, 'invalid_client', `client_assertion jti ${reason}`);
    });
  });

  describe("requests Node's HTTP parser refuses: the same status, with an OperationOutcome, and the connection closed", () => {
    function parse(answer: string): { status: number; headers: Record<string, string>; body: unknown } {
      const [head, body = ''] = answer.split('\r\n\r\n');
      const [statusLine, ...lines] = (head ?? '').split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      return { status: Number(statusLine?.split(' ')[1]), headers, body: body ? JSON.parse(body) : undefined };
    }
    it.each([
      ['header fields too large', `GET /fhir/Task HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, outcome('too-long', 'The request header fields are too large')],
      ['a NUL in a header value', 'GET /fhir/Task HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0000b\r\n\r\n', 400, outcome('invalid', 'The request is not valid HTTP/1.1 (malformed request line or header)')],
      ['a header name with a space', 'GET /fhir/Task HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n', 400, outcome('invalid', 'The request is not valid HTTP/1.1 (malformed request line or header)')],
      ['raw non-ASCII bytes in the path', Buffer.from('GET /second-opinions/\xed\xa0\x80 HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1'), 400, outcome('invalid', 'The request is not valid HTTP/1.1 (malformed request line or header)')],
      ['not HTTP at all', 'HELLO\r\n\r\n', 400, outcome('invalid', 'The request is not valid HTTP/1.1 (malformed request line or header)')],
    ])('%s', async (_case, bytes, status, body) => {
      const answer = parse(await rawExchange(service.url, bytes));
      expect(answer).toEqual({ status, headers: { 'content-type': 'application/fhir+json; charset=utf-8', 'content-length': String(JSON.stringify(body).length), connection: 'close' }, body });
    });
  });

  // Last: the referral it creates is assembled in the background, after every row-count check above.
  it('a real gzip body in UTF-8 is still read', async () => {
    const res = await rawRequest(service.url, 'POST', '/second-opinions', json('st-olaf', { 'content-encoding': 'gzip', 'content-type': 'application/json; charset=UTF-8' }), gzipSync(JSON.stringify(makeSecondOpinionRequest({ consultants: ['riverside-imaging'] }, ehr.seeded))));
    expect(res.status).toBe(201);
  });
});
