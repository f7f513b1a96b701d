import type { Bundle, OperationOutcome, ServiceRequest, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createValidator } from '../src/fhir/validator.ts';
import { PROFILE, placerIdentifierSystem } from '../src/fhir/constants.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * A referral round trip over real HTTP: token -> POST -> GET summary -> FHIR read/search,
 * and every refusal of intake, each proving that nothing was written.
 */
describe('second-opinion intake (flow)', () => {
  let service: TestService;
  let referrerToken: string;
  let lakesideToken: string;
  let northfieldToken: string;
  const validator = createValidator();

  beforeAll(async () => {
    service = await startTestService();
    referrerToken = await getAccessToken(service.url, clientIdOf('st-olaf'));
    lakesideToken = await getAccessToken(service.url, clientIdOf('lakeside-consults'));
    northfieldToken = await getAccessToken(service.url, clientIdOf('northfield-pathology'));
  });
  afterAll(async () => service?.stop());

  const post = (body: unknown, token = referrerToken, headers: Record<string, string> = {}) =>
    fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  const get = (path: string, token = referrerToken, headers: Record<string, string> = {}) =>
    fetch(`${service.url}${path}`, { headers: { authorization: `Bearer ${token}`, ...headers } });

  async function rowCounts(): Promise<{ resources: number; history: number; intake: number; jobs: number }> {
    const count = async (table: string) => {
      const result = await service.database.db.execute(sql.raw(`SELECT count(*)::int AS n FROM ${table}`));
      return Number((result as unknown as { rows: { n: number }[] }).rows[0]?.n);
    };
    return {
      resources: await count('resource'),
      history: await count('resource_history'),
      intake: await count('intake_request'),
      jobs: await count(`${service.jobs.schema}.job`),
    };
  }

  async function assemblyJobs(serviceRequestId: string): Promise<{ data: Record<string, unknown> }[]> {
    const result = await service.database.db.execute(
      sql.raw(`SELECT data FROM ${service.jobs.schema}.job WHERE name = 'assemble-record-set' AND data->>'serviceRequestId' = '${serviceRequestId}'`),
    );
    return (result as unknown as { rows: { data: Record<string, unknown> }[] }).rows;
  }

  /** Sends a refused request and asserts its status, that the body is an OperationOutcome, and that nothing was written. */
  async function refused(response: Promise<Response>, status: number): Promise<OperationOutcome> {
    const before = await rowCounts();
    const res = await response;
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toContain('application/fhir+json');
    const body = (await res.json()) as OperationOutcome;
    expect(body.resourceType).toBe('OperationOutcome');
    expect(await rowCounts()).toEqual(before);
    return body;
  }

  describe('round trip', () => {
    const request = makeSecondOpinionRequest();
    let created: { id: string; serviceRequest: ServiceRequest; tasks: Task[] };

    it('POST creates a ServiceRequest, one Task per consultant and answers 201 with Location', async () => {
      const res = await post(request);
      expect(res.status).toBe(201);
      created = (await res.json()) as typeof created;
      expect(res.headers.get('location')).toBe(`${service.config.publicUrl}/second-opinions/${created.id}`);

      const sr = created.serviceRequest;
      expect(sr).toMatchObject({
        resourceType: 'ServiceRequest',
        id: created.id,
        meta: { versionId: '1', profile: [PROFILE.serviceRequest] },
        status: 'active',
        intent: 'order',
        priority: 'routine',
        identifier: [{ system: placerIdentifierSystem('st-olaf'), value: request.requestId }],
        subject: { reference: 'http://localhost:8090/fhir/R4/Patient/pat-1', display: 'Alex Example' },
        requester: { reference: 'http://localhost:8090/fhir/R4/Practitioner/dr-nilsen', display: 'Dr Ingrid Nilsen' },
        code: { coding: [{ code: 'revision' }] },
        note: [{ text: request.question }],
      });
      expect(sr.category?.flatMap((c) => c.coding?.map((x) => `${x.system}|${x.code}`))).toEqual([
        'http://snomed.info/sct|3457005',
        'http://terminology.hl7.org/CodeSystem/v2-0336|S',
      ]);
      expect(sr.performer?.map((p) => p.reference)).toEqual(['Organization/lakeside', 'Organization/northfield-pathology']);

      expect(created.tasks).toHaveLength(2);
      for (const [i, task] of created.tasks.entries()) {
        expect(task).toMatchObject({
          resourceType: 'Task',
          status: 'requested',
          intent: 'order',
          priority: 'routine',
          code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
          focus: { reference: `ServiceRequest/${created.id}` },
          for: { reference: 'http://localhost:8090/fhir/R4/Patient/pat-1' },
          businessStatus: { coding: [{ code: 'records-pending' }] },
          owner: { reference: ['Organization/lakeside', 'Organization/northfield-pathology'][i] },
        });
        // Routine: due 7 days after authoring.
        const due = new Date(task.restriction?.period?.end as string).getTime() - new Date(task.authoredOn as string).getTime();
        expect(due).toBe(7 * 86_400_000);
      }
    });

    it('enqueued the record-assembly job in the same transaction, carrying ids only', async () => {
      expect(await assemblyJobs(created.id)).toEqual([
        { data: { serviceRequestId: created.id, taskIds: created.tasks.map((t) => t.id), serviceRequestVersion: '1', recordsRevision: '0' } },
      ]);
    });

    it('every resource it returns validates against R4 and our profiles', () => {
      expect(validator.validate(created.serviceRequest)).toEqual([]);
      for (const task of created.tasks) expect(validator.validate(task)).toEqual([]);
    });

    it('wrote the first opinion and a Provenance in the same transaction', async () => {
      const rows = await service.database.db.execute(sql`SELECT resource_type, content FROM resource ORDER BY resource_type`);
      const all = (rows as unknown as { rows: { resource_type: string; content: { target?: { reference: string }[] } }[] }).rows;
      const provenance = all.find((r) => r.resource_type === 'Provenance' && r.content.target?.some((t) => t.reference === `ServiceRequest/${created.id}`));
      expect(provenance?.content.target?.map((t) => t.reference.split('/')[0])).toEqual(['ServiceRequest', 'Task', 'Task', 'ClinicalImpression']);
      for (const r of all) expect(validator.validate(r.content as never)).toEqual([]);
    });

    it('the same request again answers 200 with the same resources', async () => {
      const before = await rowCounts();
      const res = await post(request);
      expect(res.status).toBe(200);
      const again = (await res.json()) as typeof created;
      expect(again.id).toBe(created.id);
      expect(again.tasks.map((t) => t.id)).toEqual(created.tasks.map((t) => t.id));
      expect(await rowCounts()).toEqual(before);
      expect(await assemblyJobs(created.id)).toHaveLength(1);
    });

    it('the same requestId with different content answers 409 and writes nothing', async () => {
      const body = await refused(post({ ...request, question: 'Something else entirely?' }), 409);
      expect(body.issue).toEqual([
        expect.objectContaining({ severity: 'error', code: 'conflict', expression: ['requestId'] }),
      ]);
      expect(body.issue?.[0]?.details?.text).toContain(`ServiceRequest/${created.id}`);
    });

    it('GET /second-opinions/{id} summarises each consultant', async () => {
      const res = await get(`/second-opinions/${created.id}`);
      expect(res.status).toBe(200);
      const summary = (await res.json()) as { consultants: unknown[] };
      expect(summary).toMatchObject({
        id: created.id,
        requestId: request.requestId,
        status: 'active',
        kind: 'revision',
        priority: 'routine',
        reviewType: 'records-only',
        blinded: true,
      });
      expect(summary.consultants).toEqual([
        expect.objectContaining({ participant: 'lakeside-consults', task: expect.objectContaining({ id: created.tasks[0]?.id, status: 'requested', businessStatus: 'records-pending', overdue: false }) }),
        expect.objectContaining({ participant: 'northfield-pathology', task: expect.objectContaining({ id: created.tasks[1]?.id, status: 'requested', businessStatus: 'records-pending', overdue: false }) }),
      ]);
    });

    it('a consultant cannot read the referrer summary: 403 by role, the same for every id', async () => {
      for (const id of [created.id, 'no-such-referral']) {
        const res = await get(`/second-opinions/${id}`, lakesideToken);
        expect(res.status).toBe(403);
        expect(((await res.json()) as OperationOutcome).issue?.[0]).toMatchObject({ code: 'forbidden', details: { text: 'This operation requires one of the roles referrer, physician; participant lakeside-consults has consultant' } });
      }
    });

    it('FHIR read answers the ServiceRequest with ETag and Last-Modified, 304 on If-None-Match', async () => {
      const res = await get(`/fhir/ServiceRequest/${created.id}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('application/fhir+json');
      expect(res.headers.get('etag')).toBe('W/"1"');
      expect(new Date(res.headers.get('last-modified') as string).getTime()).toBeGreaterThan(0);
      expect(await res.json()).toEqual(created.serviceRequest);
      const again = await get(`/fhir/ServiceRequest/${created.id}`, referrerToken, { 'if-none-match': 'W/"1"' });
      expect(again.status).toBe(304);
    });

    it('vread and _history return version 1', async () => {
      const task = created.tasks[0] as Task;
      const v = await get(`/fhir/Task/${task.id}/_history/1`);
      expect(v.status).toBe(200);
      expect(await v.json()).toEqual(task);
      const h = await get(`/fhir/Task/${task.id}/_history`);
      const bundle = (await h.json()) as Bundle;
      expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'history', total: 1 });
      expect(bundle.entry?.[0]?.resource).toEqual(task);
      expect((await get(`/fhir/Task/${task.id}/_history/2`)).status).toBe(404);
    });

    it('searches ServiceRequest by identifier and Task by focus', async () => {
      const byId = await get(`/fhir/ServiceRequest?identifier=${encodeURIComponent(`${placerIdentifierSystem('st-olaf')}|${request.requestId}`)}`);
      const srBundle = (await byId.json()) as Bundle;
      expect(srBundle).toMatchObject({ resourceType: 'Bundle', type: 'searchset' });
      expect(srBundle.entry?.map((e) => e.resource?.id)).toEqual([created.id]);
      expect(srBundle.entry?.[0]?.fullUrl).toBe(`${service.config.publicUrl}/fhir/ServiceRequest/${created.id}`);

      const tasks = (await (await get(`/fhir/Task?focus=ServiceRequest/${created.id}`)).json()) as Bundle;
      expect(tasks.entry?.map((e) => e.resource?.id).sort()).toEqual(created.tasks.map((t) => t.id).sort());
    });

    it('a consultant sees nothing of the referral before the record assembly admits it (consent, complete records); the referrer sees every Task', async () => {
      // No EHR answers in this file, so no record set is assembled and no clinic is admitted.
      for (const token of [lakesideToken, northfieldToken]) {
        const search = (await (await get(`/fhir/Task?focus=${created.id}`, token)).json()) as Bundle;
        expect(search.entry ?? []).toEqual([]);
        for (const task of created.tasks) expect((await get(`/fhir/Task/${task.id}`, token)).status).toBe(404);
        expect((await get(`/fhir/ServiceRequest/${created.id}`, token)).status).toBe(404);
      }
      const all = (await (await get(`/fhir/Task?focus=${created.id}`)).json()) as Bundle;
      expect(all.entry?.map((e) => e.resource?.id).sort()).toEqual(created.tasks.map((t) => t.id).sort());
    });

    it('every resource of the intake is readable by the referrer and the requesting clinician only, until consultants are admitted', async () => {
      const ref = created.serviceRequest.supportingInfo?.find((s) => s.reference?.startsWith('ClinicalImpression/'))?.reference as string;
      expect(ref).toBeDefined();
      const rows = await service.database.db.execute(sql`SELECT resource_type, access FROM resource WHERE id IN (${created.id}, ${ref.split('/')[1]}, ${created.tasks[0]?.id})`);
      const lists = (rows as unknown as { rows: { resource_type: string; access: string[] }[] }).rows;
      expect(lists).toHaveLength(3);
      for (const row of lists) expect(row.access).toEqual(['st-olaf', 'st-olaf|Practitioner/dr-nilsen']);
    });
  });

  describe('search paging', () => {
    it('follows next links until every match is seen once', async () => {
      const tag = `page-${Date.now()}`;
      const ids = [];
      for (let i = 0; i < 5; i++) {
        const res = await post(makeSecondOpinionRequest({ consultants: ['riverside-imaging'], kind: 'imaging-review', requestId: `${tag}-${i}` }));
        ids.push(((await res.json()) as { tasks: Task[] }).tasks[0]?.id);
      }
      const seen: string[] = [];
      let url: string | undefined = `/fhir/Task?owner=Organization/riverside-imaging&_count=2`;
      let pages = 0;
      while (url) {
        const bundle = (await (await get(url)).json()) as Bundle;
        seen.push(...(bundle.entry ?? []).map((e) => e.resource?.id as string));
        const next = bundle.link?.find((l) => l.relation === 'next')?.url;
        url = next ? next.slice(service.config.publicUrl.length) : undefined;
        pages++;
      }
      expect(pages).toBe(3);
      expect(seen.sort()).toEqual([...ids].sort());
    });

    it('reports unknown parameters in an outcome entry, or refuses them with Prefer: handling=strict', async () => {
      const lenient = (await (await get('/fhir/Task?bogus=1&_count=1')).json()) as Bundle;
      const outcomeEntry = lenient.entry?.find((e) => e.search?.mode === 'outcome')?.resource as OperationOutcome;
      expect(outcomeEntry.issue).toEqual([expect.objectContaining({ severity: 'warning', code: 'not-supported', expression: ['bogus'] })]);
      const strict = await get('/fhir/Task?bogus=1', referrerToken, { prefer: 'handling=strict' });
      expect(strict.status).toBe(400);
      expect(((await strict.json()) as OperationOutcome).issue).toEqual([expect.objectContaining({ code: 'not-supported', expression: ['bogus'] })]);
    });
  });

  describe('refusals write nothing', () => {
    it('stat: 422 saying a second opinion must not delay emergency care', async () => {
      const body = await refused(post(makeSecondOpinionRequest({ priority: 'stat' })), 422);
      expect(body.issue).toHaveLength(1);
      expect(body.issue?.[0]).toMatchObject({ severity: 'error', code: 'business-rule', expression: ['priority'] });
      expect(body.issue?.[0]?.details?.text).toMatch(/must not delay emergency care/);
    });

    it('unknown consultant and a participant that is not a consultant: 422 naming each', async () => {
      const body = await refused(post(makeSecondOpinionRequest({ consultants: ['lakeside-consults', 'nobody', 'st-olaf'] })), 422);
      expect(body.issue?.map((i) => [i.code, i.expression?.[0]])).toEqual([
        ['business-rule', 'consultants[1]'],
        ['business-rule', 'consultants[2]'],
      ]);
      expect(body.issue?.[0]?.details?.text).toContain("Unknown participant 'nobody'");
      expect(body.issue?.[1]?.details?.text).toContain("'st-olaf' is not a consultant");
    });

    it('bad fields: 400 with one issue per problem, each naming its field', async () => {
      const body = await refused(
        post(
          makeSecondOpinionRequest({
            kind: 'astrology' as never,
            question: '   ',
            consultants: [],
            patient: { reference: 'Practitioner/x', identifier: [] },
            extra: true,
          }),
        ),
        400,
      );
      const fields = body.issue?.map((i) => i.expression?.[0]).sort();
      expect(fields).toEqual(['consultants', 'extra', 'kind', 'patient.reference', 'question']);
      for (const i of body.issue ?? []) expect(i.severity).toBe('error');
    });

    it('values bound for FHIR uri, code and dateTime that FHIR refuses: 400 naming each (the built resource failed validation: a 500)', async () => {
      const body = await refused(
        post(
          makeSecondOpinionRequest({
            patient: { reference: 'Patient/pat-1', identifier: [{ system: 'urn:oid: 1', value: '999-00-1234' }] },
            reason: [{ system: 'http://snom ed.info/sct', code: 'a  b' }],
            firstOpinion: { documents: [], diagnosis: [{ system: 'http://snomed.info/sct', code: 'a\tb' }] },
            dueDate: '2099-01-01T00:00:00.1234567891Z',
          }),
        ),
        400,
      );
      const URI = 'must be a URI: no spaces';
      const CODE = 'must be a code: single spaces only, no tabs, line breaks or other white space';
      const issue = (field: string, text: string) => ({ severity: 'error', code: 'value', details: { text: `${field}: ${text}` }, expression: [field] });
      expect([...(body.issue ?? [])].sort((a, b) => String(a.expression).localeCompare(String(b.expression)))).toEqual([
        issue('dueDate', 'must be a date (YYYY-MM-DD) or a date-time with seconds and a time zone (at most 9 decimals, zone -14:00 to +14:00)'),
        issue('firstOpinion.diagnosis[0].code', CODE),
        issue('patient.identifier[0].system', URI),
        issue('reason[0].code', CODE),
        issue('reason[0].system', URI),
      ]);
      for (const dueDate of ['2099-01-01T00:00:00+14:30', '2099-01-01T00:00Z', '2099-01-01T00:00:00-15:00']) {
        expect((await refused(post(makeSecondOpinionRequest({ dueDate })), 400)).issue?.map((i) => i.expression?.[0])).toEqual(['dueDate']);
      }
    });

    it('missing required fields are named', async () => {
      const body = await refused(post({ requestId: 'x' }), 400);
      const fields = body.issue?.map((i) => i.expression?.[0]).sort();
      expect(fields).toEqual(['consultants', 'kind', 'patient', 'priority', 'question', 'records', 'requester', 'reviewType']);
      expect(body.issue?.every((i) => i.code === 'required')).toBe(true);
    });

    it('malformed JSON: 400', async () => {
      const body = await refused(post('{"requestId": '), 400);
      expect(body.issue).toEqual([expect.objectContaining({ code: 'invalid', details: { text: 'The request body is not valid JSON' } })]);
    });

    it('wrong content type: 415', async () => {
      const body = await refused(post('requestId=1', referrerToken, { 'content-type': 'application/x-www-form-urlencoded' }), 415);
      expect(body.issue?.[0]?.code).toBe('not-supported');
    });

    it('body over the limit: 413', async () => {
      const huge = makeSecondOpinionRequest({ question: 'x'.repeat(service.config.bodyLimitBytes + 10) });
      const body = await refused(post(huge), 413);
      expect(body.issue?.[0]?.code).toBe('too-long');
    });

    it('a consultant may not create referrals: 403', async () => {
      const body = await refused(post(makeSecondOpinionRequest(), lakesideToken), 403);
      expect(body.issue?.[0]?.code).toBe('forbidden');
    });

    it('no token: 401 with WWW-Authenticate', async () => {
      const before = await rowCounts();
      const res = await fetch(`${service.url}/second-opinions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(makeSecondOpinionRequest()) });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(((await res.json()) as OperationOutcome).resourceType).toBe('OperationOutcome');
      expect(await rowCounts()).toEqual(before);
    });

    it('a due date in the past: 422', async () => {
      const body = await refused(post(makeSecondOpinionRequest({ dueDate: '2020-01-01' })), 422);
      expect(body.issue?.[0]?.expression).toEqual(['dueDate']);
    });
  });

  it('urgent and asap get short due dates; a requested due date is kept', async () => {
    for (const [priority, days] of [['urgent', 3], ['asap', 1]] as const) {
      const res = await post(makeSecondOpinionRequest({ priority }));
      const { tasks } = (await res.json()) as { tasks: Task[] };
      const task = tasks[0] as Task;
      expect(new Date(task.restriction?.period?.end as string).getTime() - new Date(task.authoredOn as string).getTime()).toBe(days * 86_400_000);
    }
    const res = await post(makeSecondOpinionRequest({ dueDate: '2099-03-01' }));
    expect(((await res.json()) as { tasks: Task[] }).tasks[0]?.restriction?.period?.end).toBe('2099-03-01');
  });

  it('concurrent identical requests create one referral', async () => {
    const request = makeSecondOpinionRequest();
    const responses = await Promise.all([post(request), post(request), post(request)]);
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 201]);
    const ids = await Promise.all(responses.map(async (r) => ((await r.json()) as { id: string }).id));
    expect(new Set(ids).size).toBe(1);
  });

  it('health and readiness', async () => {
    expect(await (await fetch(`${service.url}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${service.url}/readyz`);
    expect(ready.status).toBe(200);
  });
});
