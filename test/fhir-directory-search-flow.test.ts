import type { AuditEvent, Bundle, Endpoint, OperationOutcome, Organization, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { SYSTEM } from '../src/fhir/constants.ts';
import { SUBSETTED } from '../src/fhir/subset.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * The directory and search as FHIR clients expect them, over real HTTP against the
 * sandbox EHR: Organization and Endpoint from the network file; relative and absolute references,
 * _include/_revinclude through the access filter (and audited), _summary=count, _elements;
 * unsupported parameters reported (lenient) or refused (Prefer: handling=strict).
 */
describe('FHIR directory and search', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);
  const validator = createValidator();
  let referral: { id: string; tasks: Task[] };
  let summary: ReferralSummary;
  let noteReference: string;
  const fhir = () => `${service.config.publicUrl}/fhir`;
  const taskOf = (org: string) => referral.tasks.find((t) => t.owner?.reference === org) as Task;
  const ids = (b: Bundle, mode = 'match') => (b.entry ?? []).filter((e) => e.search?.mode === mode).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`).sort();

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 50_000 } });
    service = await startTestService({ NETWORK_FILE: await writeSandboxNetwork(ehr, { timeoutMs: 5_000 }) });
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology', 'riverside-imaging', 'audit-office']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
    const consentId = await ehr.addConsent(['lakeside', 'northfield-pathology']);
    const body = makeSecondOpinionRequest(
      {
        consultants: ['lakeside-consults', 'northfield-pathology'],
        blinded: false,
        consent: { reference: `Consent/${consentId}` },
        records: { documents: [{ reference: `DocumentReference/${seededDocument(ehr.seeded, 'op-note-2024').id}` }] },
      },
      ehr.seeded,
    );
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', body);
    expect(created.status).toBe(201);
    referral = created.body;
    summary = await until(async () => {
      const s = await call<ReferralSummary>('GET', `/second-opinions/${referral.id}`, 'st-olaf');
      return s.body.recordSet.status === 'records-ready' ? s.body : undefined;
    }, 'the record set');
    const lakesideTask = taskOf('Organization/lakeside').id as string;
    for (const action of ['accept', 'start']) expect((await call('POST', `/consults/${lakesideTask}/${action}`, 'lakeside-consults')).status).toBe(200);
    const done = await call<Task>('POST', `/consults/${lakesideTask}/opinion`, 'lakeside-consults', EXAMPLE_OPINION);
    expect(done.status).toBe(200);
    noteReference = done.body.output?.[0]?.valueReference?.reference as string;
    expect(noteReference).toMatch(/^DocumentReference\//);
  }, 120_000);
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  describe('the directory: Organization and Endpoint from the network file', () => {
    it('any participant reads an Organization with no Organization scope; it carries the identifiers, the roles and its Endpoint, and is valid R4', async () => {
      const res = await call<Organization>('GET', '/fhir/Organization/st-olaf', 'northfield-pathology');
      expect(res.status).toBe(200);
      expect(res.headers.get('etag')).toBe('W/"1"');
      expect(res.body).toEqual({
        resourceType: 'Organization',
        id: 'st-olaf',
        meta: { versionId: '1', lastUpdated: expect.any(String) },
        identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-1001' }],
        active: true,
        type: [{ coding: [{ system: SYSTEM.participantRole, code: 'referrer', display: 'Referrer' }] }],
        name: 'St Olaf Hospital (example)',
        endpoint: [{ reference: 'Endpoint/st-olaf-fhir' }],
      });
      expect(validator.validate(res.body)).toEqual([]);
      const endpoint = await call<Endpoint>('GET', '/fhir/Endpoint/st-olaf-fhir', 'lakeside-consults');
      expect(endpoint.body).toMatchObject({
        status: 'active',
        connectionType: { system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code: 'hl7-fhir-rest' },
        managingOrganization: { reference: 'Organization/st-olaf' },
        address: ehr.baseUrl,
      });
      expect(validator.validate(endpoint.body)).toEqual([]);
      // No keys, token URL, client id or webhook leaves in the directory.
      expect(JSON.stringify(endpoint.body)).not.toMatch(/tokenUrl|clientId|privateKey|auth\/token/);
      expect((await call<Bundle>('GET', '/fhir/Organization/st-olaf/_history', 'lakeside-consults')).body.entry?.map((e) => e.resource?.id)).toEqual(['st-olaf']);
      expect((await call('GET', '/fhir/Organization/st-olaf/_history/1', 'lakeside-consults')).status).toBe(200);
      expect((await call('GET', '/fhir/Organization/st-olaf/_history/2', 'lakeside-consults')).status).toBe(404);
      const missing = await call<OperationOutcome>('GET', '/fhir/Organization/nowhere', 'lakeside-consults');
      expect([missing.status, missing.body.resourceType]).toEqual([404, 'OperationOutcome']);
      expect((await fetch(`${service.url}/fhir/Organization/st-olaf`)).status).toBe(401);
    });

    it('Organization search by name (prefix, :exact, :contains), identifier, type; every one valid R4', async () => {
      const search = async (q: string) => (await call<Bundle>('GET', `/fhir/Organization?${q}`, 'lakeside-consults')).body;
      expect(ids(await search('name=lake'))).toEqual(['Organization/lakeside']);
      expect(ids(await search('name=LAKESIDE%20clinic'))).toEqual(['Organization/lakeside']);
      expect(ids(await search('name:exact=Lakeside'))).toEqual([]);
      expect(ids(await search('name:exact=Lakeside%20Clinic%20(example)'))).toEqual(['Organization/lakeside']);
      expect(ids(await search('name:contains=pathology'))).toEqual(['Organization/northfield-pathology']);
      expect(ids(await search(`identifier=${encodeURIComponent('https://registry.example.org/organizations|ORG-2002')}`))).toEqual(['Organization/northfield-pathology']);
      expect(ids(await search('identifier=ORG-2001,ORG-2003'))).toEqual(['Organization/lakeside', 'Organization/riverside-imaging']);
      const consultants = await search(`type=${encodeURIComponent(`${SYSTEM.participantRole}|consultant`)}&_count=100`);
      expect(ids(consultants)).toEqual(['Organization/lakeside', 'Organization/northfield-pathology', 'Organization/riverside-imaging']);
      for (const e of consultants.entry ?? []) expect(validator.validate(e.resource as Resource)).toEqual([]);
      expect(ids(await search('type=consultant&name=north'))).toEqual(['Organization/northfield-pathology']);
    });

    it('Endpoint search by organization (relative, bare, absolute), connection-type and status; pages continue with next', async () => {
      const search = async (q: string) => (await call<Bundle>('GET', `/fhir/Endpoint?${q}`, 'northfield-pathology')).body;
      for (const org of ['Organization/st-olaf', 'st-olaf', `${fhir()}/Organization/st-olaf`]) {
        expect([org, ids(await search(`organization=${encodeURIComponent(org)}`))]).toEqual([org, ['Endpoint/st-olaf-fhir']]);
      }
      const all = await search('connection-type=hl7-fhir-rest&status=active');
      expect(ids(all)).toContain('Endpoint/st-olaf-fhir');
      for (const e of all.entry ?? []) expect(validator.validate(e.resource as Resource)).toEqual([]);
      const orgs = await search('_count=100');
      const first = await call<Bundle>('GET', '/fhir/Organization?_count=2', 'northfield-pathology');
      const next = first.body.link?.find((l) => l.relation === 'next')?.url as string;
      expect(next).toContain('_cursor=');
      const second = await call<Bundle>('GET', next.slice(service.config.publicUrl.length), 'northfield-pathology');
      const paged = [...ids(first.body), ...ids(second.body)];
      expect(new Set(paged).size).toBe(paged.length);
      expect(orgs.entry?.length).toBeGreaterThan(0);
      expect((await call<Bundle>('GET', '/fhir/Organization?_summary=count', 'northfield-pathology')).body).toMatchObject({ type: 'searchset', total: expect.any(Number) });
    });
  });

  describe('search forms', () => {
    const patientId = () => ehr.seeded.patientId;

    it('patient and subject take relative references, bare ids and absolute ones; focus an absolute reference to this server', async () => {
      const both = [taskOf('Organization/lakeside'), taskOf('Organization/northfield-pathology')].map((t) => `Task/${t.id}`).sort();
      for (const q of [`patient=Patient/${patientId()}`, `patient=${patientId()}`, `patient=${encodeURIComponent(`${ehr.baseUrl}/Patient/${patientId()}`)}`, `subject=Patient/${patientId()}`, `focus=${encodeURIComponent(`${fhir()}/ServiceRequest/${referral.id}`)}`]) {
        const res = await call<Bundle>('GET', `/fhir/Task?${q}&_count=100`, 'st-olaf');
        expect([q, res.status, ids(res.body)]).toEqual([q, 200, both]);
      }
      const sr = await call<Bundle>('GET', `/fhir/ServiceRequest?subject=Patient/${patientId()}`, 'st-olaf');
      expect(ids(sr.body)).toContain(`ServiceRequest/${referral.id}`);
      // A clinic reads a relative patient reference on any referrer's EHR, but sees only its own Task.
      const clinic = await call<Bundle>('GET', `/fhir/Task?patient=Patient/${patientId()}`, 'northfield-pathology');
      expect(ids(clinic.body)).toEqual([`Task/${taskOf('Organization/northfield-pathology').id}`]);
    });

    it('_summary=count answers the total only; the count respects access', async () => {
      const q = `/fhir/Task?focus=ServiceRequest/${referral.id}&_summary=count`;
      const referrer = await call<Bundle>('GET', q, 'st-olaf');
      expect(referrer.body).toEqual({ resourceType: 'Bundle', type: 'searchset', total: 2, link: [{ relation: 'self', url: `${fhir()}/Task?focus=ServiceRequest%2F${referral.id}&_summary=count` }] });
      expect((await call<Bundle>('GET', q, 'lakeside-consults')).body.total).toBe(1);
      expect((await call<Bundle>('GET', q, 'riverside-imaging')).body.total).toBe(0);
    });

    it('_elements returns the listed elements and the mandatory ones, tagged SUBSETTED', async () => {
      const res = await call<Bundle>('GET', `/fhir/Task?focus=ServiceRequest/${referral.id}&_elements=owner`, 'lakeside-consults');
      const task = res.body.entry?.[0]?.resource as Task;
      expect(Object.keys(task).sort()).toEqual(['id', 'intent', 'meta', 'owner', 'resourceType', 'status']);
      expect(task.meta?.tag).toContainEqual(SUBSETTED);
      expect(task.owner).toEqual(taskOf('Organization/lakeside').owner);
    });
  });

  describe('_include and _revinclude', () => {
    it('Task:focus, Task:input, Task:output and Task:owner bring the referral, the record set, the opinion and the clinic', async () => {
      const res = await call<Bundle>('GET', `/fhir/Task?focus=ServiceRequest/${referral.id}&_include=Task:focus&_include=Task:input&_include=Task:output&_include=Task:owner`, 'st-olaf');
      expect(res.status).toBe(200);
      expect(ids(res.body)).toHaveLength(2);
      expect(ids(res.body, 'include')).toEqual(
        [`ServiceRequest/${referral.id}`, `Bundle/${summary.recordSet.bundleId}`, noteReference, 'Organization/lakeside', 'Organization/northfield-pathology'].sort(),
      );
      const focus = res.body.entry?.find((e) => e.resource?.resourceType === 'ServiceRequest');
      expect(focus).toMatchObject({ fullUrl: `${fhir()}/ServiceRequest/${referral.id}`, search: { mode: 'include' } });
      expect(validator.validate(focus?.resource as ServiceRequest)).toEqual([]);
    });

    it('a clinic never gets another clinic\'s Task via _revinclude, nor a referral\'s opinion it did not write via _include', async () => {
      for (const [clinic, org] of [['lakeside-consults', 'Organization/lakeside'], ['northfield-pathology', 'Organization/northfield-pathology']] as const) {
        const res = await call<Bundle>('GET', `/fhir/ServiceRequest?_id=${referral.id}&_revinclude=Task:focus`, clinic);
        expect([clinic, ids(res.body), ids(res.body, 'include')]).toEqual([clinic, [`ServiceRequest/${referral.id}`], [`Task/${taskOf(org).id}`]]);
      }
      const referrer = await call<Bundle>('GET', `/fhir/ServiceRequest?_id=${referral.id}&_revinclude=Task:focus`, 'st-olaf');
      expect(ids(referrer.body, 'include')).toHaveLength(2);
      // Northfield's own Task has no output; Lakeside's opinion is not Northfield's to read.
      const northfield = await call<Bundle>('GET', `/fhir/Task?_id=${taskOf('Organization/lakeside').id}&_include=Task:output`, 'northfield-pathology');
      expect(northfield.body.entry ?? []).toEqual([]);
      // A clinic the referral does not go to sees nothing, included or not.
      const riverside = await call<Bundle>('GET', `/fhir/ServiceRequest?_id=${referral.id}&_revinclude=Task:focus`, 'riverside-imaging');
      expect(riverside.body.entry ?? []).toEqual([]);
    });

    it('included resources are audited as reads, like the matches', async () => {
      const lakesideTask = `Task/${taskOf('Organization/lakeside').id}`;
      await call<Bundle>('GET', `/fhir/ServiceRequest?_id=${referral.id}&_revinclude=Task:focus`, 'lakeside-consults');
      const events = await call<Bundle>('GET', `/fhir/AuditEvent?agent=Organization/lakeside&subtype=search-type&entity=${lakesideTask}&_count=100`, 'audit-office');
      const event = events.body.entry?.map((e) => e.resource as AuditEvent).find((e) => e.entity?.some((x) => x.what?.reference === `ServiceRequest/${referral.id}`));
      expect(event?.entity?.map((x) => x.what?.reference).filter((r) => r === lakesideTask || r === `ServiceRequest/${referral.id}`).sort()).toEqual([`ServiceRequest/${referral.id}`, lakesideTask].sort());
      expect(event?.outcome).toBe('0');
    });
  });

  describe('unsupported parameters: lenient by default, refused with Prefer: handling=strict', () => {
    const q = () => `/fhir/Task?focus=ServiceRequest/${referral.id}&color=blue&_include=Task:requester&_summary=text`;

    it('lenient: ignored, named in the OperationOutcome entry, left out of the self link', async () => {
      const res = await call<Bundle>('GET', q(), 'st-olaf');
      expect(res.status).toBe(200);
      expect(ids(res.body)).toHaveLength(2);
      expect(res.body.link?.[0]).toEqual({ relation: 'self', url: `${fhir()}/Task?focus=ServiceRequest%2F${referral.id}` });
      const outcome = res.body.entry?.find((e) => e.search?.mode === 'outcome')?.resource as OperationOutcome;
      expect(outcome).toEqual({
        resourceType: 'OperationOutcome',
        issue: [
          { severity: 'warning', code: 'not-supported', details: { text: "Search parameter 'color' is not supported and was ignored" }, expression: ['color'] },
          { severity: 'warning', code: 'not-supported', details: { text: 'Task:requester is not supported (supported: Task:focus, Task:input, Task:output, Task:owner); ignored' }, expression: ['_include'] },
          { severity: 'warning', code: 'not-supported', details: { text: '_summary=text is not supported (supported: count, false); ignored' }, expression: ['_summary'] },
        ],
      });
    });

    it('strict: 400 naming each', async () => {
      const res = await call<OperationOutcome>('GET', q(), 'st-olaf', undefined, { prefer: 'handling=strict' });
      expect(res.status).toBe(400);
      expect(res.body).toEqual({
        resourceType: 'OperationOutcome',
        issue: [
          { severity: 'error', code: 'not-supported', details: { text: "Search parameter 'color' is not supported on Task" }, expression: ['color'] },
          { severity: 'error', code: 'not-supported', details: { text: 'Task:requester is not supported (supported: Task:focus, Task:input, Task:output, Task:owner)' }, expression: ['_include'] },
          { severity: 'error', code: 'not-supported', details: { text: '_summary=text is not supported (supported: count, false)' }, expression: ['_summary'] },
        ],
      });
      const revStrict = await call<OperationOutcome>('GET', '/fhir/Task?_revinclude=Task:focus', 'st-olaf', undefined, { prefer: 'handling=strict' });
      expect(revStrict.status).toBe(400);
      expect(revStrict.body.issue).toEqual([{ severity: 'error', code: 'not-supported', details: { text: 'Task:focus does not point at Task (none is supported on Task)' }, expression: ['_revinclude'] }]);
    });
  });

  it('GET /fhir/metadata lists the directory, the includes and the new search parameters', async () => {
    const cs = (await (await fetch(`${service.url}/fhir/metadata`)).json()) as { rest: { resource: { type: string; searchInclude?: string[]; searchRevInclude?: string[]; searchParam?: { name: string }[] }[] }[] };
    const byType = Object.fromEntries(cs.rest[0]!.resource.map((r) => [r.type, r]));
    expect(byType.Task?.searchInclude).toEqual(['Task:focus', 'Task:input', 'Task:output', 'Task:owner']);
    expect(byType.ServiceRequest?.searchRevInclude).toEqual(['Task:focus']);
    expect(byType.Organization?.searchParam?.map((p) => p.name)).toEqual(['_id', 'name', 'identifier', 'type', '_lastUpdated']);
    expect(byType.Endpoint?.searchParam?.map((p) => p.name)).toEqual(['_id', 'organization', 'connection-type', 'status', '_lastUpdated']);
  });
});
