import type { AuditEvent, Bundle, OperationOutcome, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admitConsultant } from '../src/access/consultant-admission.ts';
import { CLIENT_ID_SYSTEM, PARTICIPANT_ID_SYSTEM } from '../src/fhir/constants.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { createValidator, ResourceValidationError } from '../src/fhir/validator.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const PATIENT = 'http://localhost:8090/fhir/R4/Patient/pat-1';
const REST = 'http://hl7.org/fhir/restful-interaction';

/**
 * Auditing over real HTTP: every read of a referral (FHIR read, vread, history, search and
 * the summary) leaves an AuditEvent with who, what, when and outcome; refused reads too; the
 * audit trail is served at /fhir/AuditEvent to auditors only.
 */
describe('audit (flow)', () => {
  let service: TestService;
  const tokens: Record<string, string> = {};
  const validator = createValidator();
  const request = makeSecondOpinionRequest({ consultants: ['lakeside-consults', 'northfield-pathology'] });
  let serviceRequest: ServiceRequest;
  let tasks: Task[];
  /** Switch: make every AuditEvent write fail (as a broken audit store would). */
  let failAuditWrites = false;

  beforeAll(async () => {
    const validate = (resource: Resource) => {
      if (failAuditWrites && resource.resourceType === 'AuditEvent') throw new ResourceValidationError('AuditEvent', []);
      return validator.validate(resource);
    };
    service = await startTestService({}, undefined, { validator: { validate } });
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology', 'riverside-imaging', 'audit-office']) {
      tokens[p] = await getAccessToken(service.url, clientIdOf(p));
    }
    const res = await fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens['st-olaf']}`, 'content-type': 'application/json' },
      body: JSON.stringify(request),
    });
    expect(res.status).toBe(201);
    ({ serviceRequest, tasks } = (await res.json()) as { serviceRequest: ServiceRequest; tasks: Task[] });
    // No EHR answers in this file: admit Lakeside to the case as the record assembly does once
    // the consent covers it (Northfield stays outside, as a clinic the consent does not name).
    const store = new ResourceStore(service.database.db, validator);
    await store.withTransaction((tx) => admitConsultant(tx, serviceRequest, tasks[0] as Task, 'lakeside-consults'));
  });
  afterAll(async () => service?.stop());

  const get = (path: string, participant: string, headers: Record<string, string> = {}) =>
    fetch(`${service.url}${path}`, { headers: { authorization: `Bearer ${tokens[participant]}`, ...headers } });

  /** Every AuditEvent in the store, oldest first (straight from the database: reading them through the API would add more). */
  async function storedEvents(): Promise<AuditEvent[]> {
    const result = await service.database.db.execute(sql`SELECT content FROM resource WHERE resource_type = 'AuditEvent' ORDER BY last_updated, id`);
    return (result as unknown as { rows: { content: AuditEvent }[] }).rows.map((r) => r.content);
  }

  /** The one AuditEvent of the HTTP request that answered `res` (its X-Request-Id is an entity of the event). */
  async function eventOf(res: Response): Promise<AuditEvent> {
    const requestId = res.headers.get('x-request-id');
    expect(requestId).toBeTruthy();
    const events = (await storedEvents()).filter((e) => e.entity?.some((x) => x.what?.identifier?.value === requestId));
    expect(events).toHaveLength(1);
    return events[0] as AuditEvent;
  }

  const references = (event: AuditEvent) => (event.entity ?? []).flatMap((e) => (e.what?.reference ? [e.what.reference] : []));
  const queryOf = (event: AuditEvent) => {
    const q = event.entity?.find((e) => e.query)?.query;
    return q ? Buffer.from(q, 'base64').toString('utf8') : undefined;
  };

  /** The client (Device, by client id) and the participant's Organization, as the agents say. */
  function who(event: AuditEvent): { client?: string; organization?: string; participant?: string } {
    const client = event.agent.find((a) => a.who?.identifier?.system === CLIENT_ID_SYSTEM);
    const org = event.agent.find((a) => a.who?.identifier?.system === PARTICIPANT_ID_SYSTEM);
    return { client: client?.who?.identifier?.value, organization: org?.who?.reference, participant: org?.who?.identifier?.value };
  }

  describe('successful reads', () => {
    it("the referrer's read of its ServiceRequest: action R, subtype read, outcome 0, the patient and the resource", async () => {
      const before = Date.now();
      const res = await get(`/fhir/ServiceRequest/${serviceRequest.id}`, 'st-olaf');
      expect(res.status).toBe(200);
      const event = await eventOf(res);
      expect(event).toMatchObject({
        type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
        subtype: [{ system: REST, code: 'read' }],
        action: 'R',
        outcome: '0',
      });
      expect(who(event)).toEqual({ client: 'st-olaf-ehr', organization: 'Organization/st-olaf', participant: 'st-olaf' });
      expect(references(event)).toEqual([PATIENT, `ServiceRequest/${serviceRequest.id}`]);
      expect(event.entity?.[0]).toMatchObject({ role: { code: '1', display: 'Patient' } });
      expect(new Date(event.recorded).getTime()).toBeGreaterThanOrEqual(before - 1000);
      expect(new Date(event.recorded).getTime()).toBeLessThanOrEqual(Date.now());
    });

    it("a consultant's read of its Task", async () => {
      const task = tasks[0] as Task;
      const res = await get(`/fhir/Task/${task.id}`, 'lakeside-consults');
      expect(res.status).toBe(200);
      const event = await eventOf(res);
      expect(event).toMatchObject({ subtype: [{ code: 'read' }], action: 'R', outcome: '0' });
      expect(who(event)).toEqual({ client: 'lakeside-worklist', organization: 'Organization/lakeside', participant: 'lakeside-consults' });
      expect(references(event)).toEqual([PATIENT, `Task/${task.id}`]);
    });

    it('a conditional read answered 304 is audited too', async () => {
      const res = await get(`/fhir/Task/${tasks[0]?.id}`, 'lakeside-consults', { 'if-none-match': 'W/"1"' });
      expect(res.status).toBe(304);
      expect(await eventOf(res)).toMatchObject({ subtype: [{ code: 'read' }], outcome: '0' });
    });

    it("a consultant's search: action E, subtype search-type, the results and the query", async () => {
      const res = await get(`/fhir/Task?focus=ServiceRequest/${serviceRequest.id}&bogus=Alex%20Example`, 'lakeside-consults');
      expect(res.status).toBe(200);
      expect(((await res.json()) as Bundle).entry?.filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id)).toEqual([tasks[0]?.id]);
      const event = await eventOf(res);
      expect(event).toMatchObject({ subtype: [{ system: REST, code: 'search-type' }], action: 'E', outcome: '0' });
      expect(who(event)).toMatchObject({ client: 'lakeside-worklist', organization: 'Organization/lakeside' });
      expect(references(event)).toEqual([PATIENT, `Task/${tasks[0]?.id}`]);
      // Unknown parameters (which could carry anything) are left out of the recorded query.
      expect(queryOf(event)).toBe(`Task?focus=${encodeURIComponent(`ServiceRequest/${serviceRequest.id}`)}`);
    });

    it('vread and history name the version and the resource', async () => {
      const task = tasks[0] as Task;
      const v = await get(`/fhir/Task/${task.id}/_history/1`, 'lakeside-consults');
      expect(v.status).toBe(200);
      const vread = await eventOf(v);
      expect(vread).toMatchObject({ subtype: [{ system: REST, code: 'vread' }], action: 'R', outcome: '0' });
      expect(references(vread)).toEqual([PATIENT, `Task/${task.id}/_history/1`]);
      const h = await get(`/fhir/Task/${task.id}/_history`, 'lakeside-consults');
      expect(h.status).toBe(200);
      const history = await eventOf(h);
      expect(history).toMatchObject({ subtype: [{ system: REST, code: 'history-instance' }], action: 'R', outcome: '0' });
      expect(references(history)).toEqual([PATIENT, `Task/${task.id}`]);
    });

    it('the summary read names the ServiceRequest and its Tasks', async () => {
      const res = await get(`/second-opinions/${serviceRequest.id}`, 'st-olaf');
      expect(res.status).toBe(200);
      const event = await eventOf(res);
      expect(event).toMatchObject({ subtype: [{ code: 'read' }], action: 'R', outcome: '0' });
      expect(who(event)).toEqual({ client: 'st-olaf-ehr', organization: 'Organization/st-olaf', participant: 'st-olaf' });
      expect(references(event)).toEqual([PATIENT, `ServiceRequest/${serviceRequest.id}`, ...tasks.map((t) => `Task/${t.id}`)]);
    });
  });

  describe('refused reads are audited', () => {
    it("a consultant of another clinic reading someone else's Task: 404 and a refused AuditEvent", async () => {
      const res = await get(`/fhir/Task/${tasks[0]?.id}`, 'northfield-pathology');
      expect(res.status).toBe(404);
      expect(((await res.json()) as OperationOutcome).issue?.[0]?.code).toBe('not-found');
      const event = await eventOf(res);
      expect(event).toMatchObject({ subtype: [{ code: 'read' }], action: 'R', outcome: '4', outcomeDesc: 'Refused (404): not found, or not visible to the caller' });
      expect(who(event)).toEqual({ client: 'northfield-lis', organization: 'Organization/northfield-pathology', participant: 'northfield-pathology' });
      // The requested resource, and nothing learnt from it (no patient).
      expect(references(event)).toEqual([`Task/${tasks[0]?.id}`]);
    });

    it('a consultant reading the referrer summary: 403 by role (the route guard) and a refused AuditEvent', async () => {
      const res = await get(`/second-opinions/${serviceRequest.id}`, 'riverside-imaging');
      expect(res.status).toBe(403);
      const event = await eventOf(res);
      expect(event).toMatchObject({ outcome: '4', action: 'R', outcomeDesc: 'Refused (403): the caller lacks the scope or role this read needs' });
      expect(who(event)).toMatchObject({ client: 'riverside-pacs', organization: 'Organization/riverside-imaging' });
      expect(references(event)).toEqual([`ServiceRequest/${serviceRequest.id}`]);
    });

    it('a read of an id that does not exist is refused and audited the same way', async () => {
      const res = await get('/fhir/ServiceRequest/no-such-referral', 'st-olaf');
      expect(res.status).toBe(404);
      expect(references(await eventOf(res))).toEqual(['ServiceRequest/no-such-referral']);
    });

    it('a missing scope: 403 and a refused AuditEvent', async () => {
      const res = await get(`/fhir/ServiceRequest/${serviceRequest.id}`, 'audit-office');
      expect(res.status).toBe(403);
      const event = await eventOf(res);
      expect(event).toMatchObject({ outcome: '4', outcomeDesc: 'Refused (403): the caller lacks the scope or role this read needs' });
      expect(who(event)).toMatchObject({ client: 'audit-office-siem', organization: 'Organization/audit-office' });
      expect(references(event)).toEqual([`ServiceRequest/${serviceRequest.id}`]);
    });

    it('a non-auditor gets 403 on /fhir/AuditEvent (search and read), audited as refused', async () => {
      // st-olaf-ehr holds system/*.rs, so only the missing auditor role refuses it.
      const search = await get('/fhir/AuditEvent?agent=Organization/lakeside', 'st-olaf');
      expect(search.status).toBe(403);
      expect(await search.json()).toEqual({
        resourceType: 'OperationOutcome',
        id: 'forbidden',
        issue: [{ severity: 'error', code: 'forbidden', details: { text: 'This operation requires the auditor role; participant st-olaf has referrer' } }],
      });
      const event = await eventOf(search);
      expect(event).toMatchObject({ subtype: [{ code: 'search-type' }], action: 'E', outcome: '4' });
      expect(queryOf(event)).toBe('AuditEvent?agent=Organization%2Flakeside');

      const someEvent = (await storedEvents())[0] as AuditEvent;
      const read = await get(`/fhir/AuditEvent/${someEvent.id}`, 'lakeside-consults');
      expect(read.status).toBe(403);
      expect(((await read.json()) as OperationOutcome).issue?.[0]?.code).toBe('forbidden');
      expect(references(await eventOf(read))).toEqual([`AuditEvent/${someEvent.id}`]);
    });
  });

  describe('the auditor', () => {
    async function searchAll(path: string): Promise<{ events: AuditEvent[]; pages: number }> {
      const events: AuditEvent[] = [];
      let url: string | undefined = path;
      let pages = 0;
      while (url) {
        const res = await get(url, 'audit-office');
        expect(res.status).toBe(200);
        const bundle = (await res.json()) as Bundle<AuditEvent>;
        expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'searchset' });
        events.push(...(bundle.entry ?? []).map((e) => e.resource as AuditEvent));
        const next = bundle.link?.find((l) => l.relation === 'next')?.url;
        url = next ? next.slice(service.config.publicUrl.length) : undefined;
        pages++;
      }
      return { events, pages };
    }

    it('searches by entity and pages through the results, newest first', async () => {
      const stored = (await storedEvents()).filter((e) => references(e).includes(`Task/${tasks[0]?.id}`));
      // Read (200), conditional read (304), search, summary, refused read.
      expect(stored.length).toBeGreaterThanOrEqual(5);
      const { events, pages } = await searchAll(`/fhir/AuditEvent?entity=Task/${tasks[0]?.id}&_count=2`);
      expect(pages).toBe(Math.ceil(stored.length / 2));
      expect(events.map((e) => e.id).sort()).toEqual(stored.map((e) => e.id).sort());
      const times = events.map((e) => e.meta?.lastUpdated as string);
      expect([...times].sort().reverse()).toEqual(times);
    });

    it('searches by agent (the Organization, or its bare id) and outcome', async () => {
      const { events } = await searchAll('/fhir/AuditEvent?agent=northfield-pathology&outcome=4');
      expect(events.length).toBeGreaterThanOrEqual(1);
      for (const e of events) {
        expect(who(e).organization).toBe('Organization/northfield-pathology');
        expect(e.outcome).toBe('4');
      }
      const byRef = await searchAll('/fhir/AuditEvent?agent=Organization/northfield-pathology&outcome=4');
      expect(byRef.events.map((e) => e.id)).toEqual(events.map((e) => e.id));
    });

    it('searches by patient, action, subtype and date', async () => {
      const { events } = await searchAll(`/fhir/AuditEvent?patient=${encodeURIComponent(PATIENT)}&subtype=search-type&action=E`);
      expect(events.length).toBeGreaterThanOrEqual(1);
      for (const e of events) {
        expect(references(e)).toContain(PATIENT);
        expect(e).toMatchObject({ action: 'E', subtype: [{ code: 'search-type' }] });
      }
      const future = await searchAll(`/fhir/AuditEvent?patient=${encodeURIComponent(PATIENT)}&date=gt${new Date(Date.now() + 60_000).toISOString()}`);
      expect(future.events).toEqual([]);
      const past = await searchAll(`/fhir/AuditEvent?patient=${encodeURIComponent(PATIENT)}&date=ge2020-01-01`);
      expect(past.events.length).toBeGreaterThan(events.length);
    });

    it('reads one AuditEvent; its own reads are audited too', async () => {
      const some = (await storedEvents())[0] as AuditEvent;
      const res = await get(`/fhir/AuditEvent/${some.id}`, 'audit-office');
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual(some);
      const event = await eventOf(res);
      expect(event).toMatchObject({ subtype: [{ code: 'read' }], outcome: '0' });
      expect(who(event)).toEqual({ client: 'audit-office-siem', organization: 'Organization/audit-office', participant: 'audit-office' });
      expect(references(event)).toEqual([`AuditEvent/${some.id}`]);
    });
  });

  describe('a failing audit write', () => {
    it('fails the read with a generic 500 and sends nothing of the resource', async () => {
      const before = (await storedEvents()).length;
      failAuditWrites = true;
      try {
        for (const path of [`/fhir/ServiceRequest/${serviceRequest.id}`, `/fhir/Task/${tasks[0]?.id}`, `/second-opinions/${serviceRequest.id}`, '/fhir/Task?status=requested']) {
          const res = await get(path, 'st-olaf');
          expect(res.status, path).toBe(500);
          expect(await res.json()).toEqual({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', details: { text: 'Internal server error' } }] });
        }
        // A refused read whose audit fails is a 500 too, not a silent 404.
        expect((await get(`/fhir/Task/${tasks[0]?.id}`, 'riverside-imaging')).status).toBe(500);
      } finally {
        failAuditWrites = false;
      }
      expect((await storedEvents()).length).toBe(before);
    });
  });

  describe('every stored AuditEvent', () => {
    it('validates against R4 and is in an empty access list', async () => {
      const events = await storedEvents();
      expect(events.length).toBeGreaterThan(15);
      for (const e of events) expect(validator.validate(e)).toEqual([]);
      const access = await service.database.db.execute(sql`SELECT DISTINCT access FROM resource WHERE resource_type = 'AuditEvent'`);
      expect((access as unknown as { rows: { access: string[] }[] }).rows).toEqual([{ access: [] }]);
    });

    it('carries no PHI: no names, identifiers or clinical text', async () => {
      const all = JSON.stringify(await storedEvents());
      for (const phi of ['Alex Example', '999-00-1234', 'Ingrid Nilsen', 'implant advisable', 'Revision surgery', 'Complication of breast implant', request.requestId as string]) {
        expect(all).not.toContain(phi);
      }
      for (const e of await storedEvents()) {
        for (const entity of e.entity ?? []) {
          expect(Object.keys(entity).sort()).toEqual(expect.arrayContaining(['type']));
          expect(entity).not.toHaveProperty('name');
          expect(entity).not.toHaveProperty('description');
          expect(entity.what?.display).toBeUndefined();
        }
      }
    });
  });
});
