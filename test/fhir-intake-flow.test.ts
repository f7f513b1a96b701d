import type { Bundle, ClinicalImpression, OperationOutcome, Provenance, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import { eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXTENSION, PROFILE } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { intakeRequests, resources } from '../src/store/schema.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { EHR_ORDER_SYSTEM, jsonTwinOverrides, ORG_REGISTRY, referralParts, toTransaction, type BundleParts } from './support/fhir-referrals.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { stateChanges, storeState } from './support/store-state.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * The FHIR intake door over real HTTP against the strict sandbox EHR: referral
 * Bundles written the way an EHR builds them give the same stored referral as the equivalent
 * JSON intake; every refusal names the FHIR element and writes nothing; a replay creates nothing.
 */
describe('FHIR intake (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let token: string;
  let consultantToken: string;
  const validator = createValidator();

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0 });
    const networkFile = await writeSandboxNetwork(ehr);
    service = await startTestService({ NETWORK_FILE: networkFile });
    token = await getAccessToken(service.url, clientIdOf('st-olaf'));
    consultantToken = await getAccessToken(service.url, clientIdOf('lakeside-consults'));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  const fhirBase = () => `${service.config.publicUrl}/fhir`;
  const send = (path: string, body: unknown, headers: Record<string, string> = {}, who = token) =>
    fetch(`${service.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${who}`, 'content-type': 'application/fhir+json', ...headers }, body: JSON.stringify(body) });
  const parts = (requestId?: string): BundleParts => referralParts(ehr.seeded, ehr.baseUrl, requestId);
  const read = async <T extends Resource>(path: string): Promise<T> => {
    const res = await fetch(`${service.url}/fhir/${path}`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status, path).toBe(200);
    return (await res.json()) as T;
  };

  /** The referrals' keys and the resources intake creates (record assembly adds others in the background). */
  async function referralRows(): Promise<{ intakes: number; created: string[] }> {
    const rows = await service.database.db.select({ type: resources.resourceType, id: resources.id }).from(resources).where(inArray(resources.resourceType, ['ServiceRequest', 'Task', 'ClinicalImpression']));
    const intakes = await service.database.db.select({ id: intakeRequests.serviceRequestId }).from(intakeRequests);
    return { intakes: intakes.length, created: rows.map((r) => `${r.type}/${r.id}`).sort() };
  }

  /** Asserts the status, an OperationOutcome naming `expressions` (in order), and that nothing was written. */
  async function refused(request: () => Promise<Response>, status: number, expressions: string[]): Promise<OperationOutcome> {
    const before = await storeState(service);
    const res = await request();
    const body = (await res.json()) as OperationOutcome;
    expect(res.status, JSON.stringify(body)).toBe(status);
    expect(body.resourceType).toBe('OperationOutcome');
    expect(body.issue.map((i) => i.expression?.[0])).toEqual(expressions);
    expect(stateChanges(before, await storeState(service))).toEqual([]);
    return body;
  }

  // Refusals first: no referral exists yet, so no background assembly changes the store meanwhile.
  describe('refusals name the FHIR element and write nothing', () => {
    it('stat: 422 naming the ServiceRequest priority, with the emergency guidance', async () => {
      const p = parts();
      p.serviceRequest.priority = 'stat';
      const body = await refused(() => send('/fhir', toTransaction(p)), 422, ['Bundle.entry[0].resource.priority']);
      expect(body.issue[0]).toMatchObject({ severity: 'error', code: 'business-rule', details: { text: expect.stringContaining('must not delay emergency care') } });
    });

    it('a performer no participant is known by: 422 naming Bundle.entry[2].resource.performer[0]', async () => {
      const p = parts();
      p.serviceRequest.performer = [{ identifier: { system: ORG_REGISTRY, value: 'ORG-9001' }, display: 'Harbor Clinic' }];
      p.tasks = [p.tasks[0] as Task];
      p.tasks[0]!.owner = { identifier: { system: ORG_REGISTRY, value: 'ORG-9001' } };
      const bundle = toTransaction(p, ['t0', 'ci', 'sr']);
      const body = await refused(() => send('/fhir', bundle), 422, ['Bundle.entry[0].resource.owner', 'Bundle.entry[2].resource.performer[0]']);
      expect(body.issue.map((i) => i.code)).toEqual(['business-rule', 'business-rule']);
    });

    it('a clinic that is not a consultant (the referrer itself): 422 from the intake rule, named at the Task owner', async () => {
      const p = parts();
      p.serviceRequest.performer = undefined;
      p.tasks[1]!.owner = { identifier: { system: ORG_REGISTRY, value: 'ORG-1001' } };
      const body = await refused(() => send('/fhir', toTransaction(p)), 422, ['Bundle.entry[2].resource.owner']);
      expect(body.issue[0]?.details?.text).toBe("Participant 'st-olaf' is not a consultant");
    });

    it('a resource type that is not part of a referral, and an interaction other than create: 400 naming each entry', async () => {
      const bundle = toTransaction(parts());
      bundle.entry![1]!.request = { method: 'PUT', url: 'Task/123' };
      bundle.entry!.push({ fullUrl: `urn:uuid:${crypto.randomUUID()}`, resource: { resourceType: 'Patient', name: [{ family: 'Example' }] }, request: { method: 'POST', url: 'Patient' } });
      const body = await refused(() => send('/fhir', bundle), 400, ['Bundle.entry[1].request', 'Bundle.entry[4].resource']);
      expect(body.issue.map((i) => i.code)).toEqual(['not-supported', 'not-supported']);
    });

    it('a batch instead of a transaction: 400 naming Bundle.type', async () => {
      const bundle = { ...toTransaction(parts()), type: 'batch' };
      await refused(() => send('/fhir', bundle), 400, ['Bundle.type']);
    });

    it('fields the shared intake schema refuses are named as FHIR elements (requester display, a reason coding without system)', async () => {
      const p = parts();
      p.serviceRequest.requester = { reference: p.serviceRequest.requester!.reference };
      p.serviceRequest.reasonCode = [{ coding: [{ code: '428341000124104' }] }];
      const body = await refused(() => send('/fhir', toTransaction(p)), 400, ['Bundle.entry[0].resource.requester.display', 'Bundle.entry[0].resource.reasonCode[0].coding[0].system']);
      expect(body.issue.map((i) => i.details?.text)).toEqual(['Bundle.entry[0].resource.requester.display is required', 'Bundle.entry[0].resource.reasonCode[0].coding[0].system is required']);
    });

    it('a record on another server: 422 naming the supportingInfo reference', async () => {
      const p = parts();
      p.serviceRequest.supportingInfo![2] = { reference: 'http://169.254.169.254/fhir/DocumentReference/x' };
      await refused(() => send('/fhir', toTransaction(p)), 422, ['Bundle.entry[0].resource.supportingInfo[2].reference']);
    });

    it('a Task whose focus is not the ServiceRequest, and a modifier extension: 400', async () => {
      const p = parts();
      p.tasks[0]!.focus = { reference: 'ServiceRequest/elsewhere' };
      p.firstOpinion.modifierExtension = [{ url: 'http://ehr.example/fhir/StructureDefinition/entered-in-error', valueBoolean: true }];
      await refused(() => send('/fhir', toTransaction(p)), 400, ['Bundle.entry[1].resource.focus']);
      const q = parts();
      q.firstOpinion.modifierExtension = [{ url: 'http://ehr.example/fhir/StructureDefinition/entered-in-error', valueBoolean: true }];
      await refused(() => send('/fhir', toTransaction(q)), 400, ['Bundle.entry[3].resource.modifierExtension[0]']);
    });

    it('no kind the service knows: 400 naming ServiceRequest.code', async () => {
      const p = parts();
      p.serviceRequest.code = { coding: [{ system: 'http://snomed.info/sct', code: '3457005' }] };
      await refused(() => send('/fhir', toTransaction(p)), 400, ['Bundle.entry[0].resource.code']);
    });

    it('POST /fhir/ServiceRequest names the element from the ServiceRequest root; a consultant cannot refer (403)', async () => {
      const p = parts();
      p.serviceRequest.performer = [{ reference: 'Organization/nowhere' }];
      p.serviceRequest.supportingInfo = p.serviceRequest.supportingInfo!.slice(1);
      await refused(() => send('/fhir/ServiceRequest', p.serviceRequest), 422, ['ServiceRequest.performer[0]']);
      await refused(() => send('/fhir', toTransaction(parts()), {}, consultantToken), 403, [undefined as unknown as string]);
    });
  });

  describe('a referral Bundle as an EHR writes it', () => {
    let fhirIds: { serviceRequest: string; tasks: string[]; firstOpinion: string };
    let bundle: Bundle;
    let response: Bundle;

    it('answers a transaction-response with each created resource\'s location and version, in entry order', async () => {
      bundle = toTransaction(parts(), ['t0', 'sr', 'ci', 't1']);
      const res = await send('/fhir', bundle);
      response = (await res.json()) as Bundle;
      expect(res.status, JSON.stringify(response)).toBe(200);
      expect(res.headers.get('content-type')).toContain('application/fhir+json');
      expect(response.type).toBe('transaction-response');
      const types = response.entry!.map((e) => e.response?.location?.slice(fhirBase().length + 1).split('/')[0]);
      expect(types).toEqual(['Task', 'ServiceRequest', 'ClinicalImpression', 'Task']);
      for (const e of response.entry!) {
        expect(e.response).toMatchObject({ status: '201 Created', etag: 'W/"1"', location: expect.stringMatching(new RegExp(`^${fhirBase()}/\\w+/[0-9a-f-]{36}/_history/1$`)) });
      }
      const id = (i: number) => response.entry![i]!.response!.location!.split('/').at(-3) as string;
      fhirIds = { serviceRequest: id(1), tasks: [id(0), id(3)], firstOpinion: id(2) };
    });

    it('stores the same referral as the equivalent JSON intake (modulo ids and timestamps), valid against R4 and our profiles', async () => {
      const requestId = `REQ-${crypto.randomUUID()}`;
      const res = await fetch(`${service.url}/second-opinions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(makeSecondOpinionRequest(jsonTwinOverrides(ehr.seeded, requestId), ehr.seeded)),
      });
      expect(res.status).toBe(201);
      const json = (await res.json()) as { id: string; tasks: Task[] };
      const jsonSr = await read<ServiceRequest>(`ServiceRequest/${json.id}/_history/1`);
      const jsonCi = jsonSr.supportingInfo![0]!.reference!.split('/')[1] as string;
      const jsonIds = { serviceRequest: json.id, tasks: json.tasks.map((t) => t.id as string), firstOpinion: jsonCi };

      // Version 1 of each: what intake stored (record assembly updates the ServiceRequest and Tasks later).
      const store = new ResourceStore(service.database.db, validator);
      const stored = async (ids: typeof fhirIds) => {
        const versions = [
          await store.readVersion<ServiceRequest>('ServiceRequest', ids.serviceRequest, '1', 'system'),
          ...(await Promise.all(ids.tasks.map((t) => store.readVersion<Task>('Task', t, '1', 'system')))),
          await store.readVersion<ClinicalImpression>('ClinicalImpression', ids.firstOpinion, '1', 'system'),
        ];
        expect(versions.every(Boolean)).toBe(true);
        for (const r of versions) expect(validator.validate(r as Resource)).toEqual([]);
        return normalize(versions as Resource[], ids);
      };
      const fromFhir = await stored(fhirIds);
      expect(fromFhir).toEqual(await stored(jsonIds));
      // What the comparison covers, spelled out: the EHR's extra elements and unknown extension are not stored.
      const sr = fromFhir[0] as ServiceRequest;
      expect(sr.extension?.map((e) => e.url)).toEqual([EXTENSION.reviewType, EXTENSION.blinded]);
      expect(sr).toMatchObject({ meta: { profile: [PROFILE.serviceRequest] }, priority: 'routine', code: { coding: [{ code: 'revision' }] } });
      expect(sr.subject?.reference).toBe(`${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`);
      expect(sr.requester?.reference).toBe(`${ehr.baseUrl}/Practitioner/${ehr.seeded.practitionerId}`);
      expect(sr.performer?.map((p) => p.reference)).toEqual(['Organization/lakeside', 'Organization/northfield-pathology']);
      expect(sr.supportingInfo?.map((s) => s.reference)).toEqual([
        'ClinicalImpression/<first-opinion>',
        `${ehr.baseUrl}/Consent/${ehr.seeded.consentId}`,
        `${ehr.baseUrl}/DocumentReference/${ehr.seeded.documents.find((d) => d.key === 'op-note-2024')!.id}`,
      ]);
      expect('encounter' in sr || 'text' in sr).toBe(false);
      expect((fromFhir.slice(1, 3) as Task[]).map((t) => [t.owner?.reference, t.focus?.reference])).toEqual([
        ['Organization/lakeside', 'ServiceRequest/<referral>'],
        ['Organization/northfield-pathology', 'ServiceRequest/<referral>'],
      ]);
    });

    it('wrote a Provenance naming every created resource, as intake does', async () => {
      const rows = await service.database.db.select({ content: resources.content }).from(resources).where(eq(resources.resourceType, 'Provenance'));
      const mine = rows.map((r) => r.content as Provenance).filter((p) => p.target.some((t) => t.reference === `ServiceRequest/${fhirIds.serviceRequest}`));
      expect(mine.map((p) => p.target.map((t) => t.reference))).toEqual([[`ServiceRequest/${fhirIds.serviceRequest}`, ...fhirIds.tasks.map((t) => `Task/${t}`), `ClinicalImpression/${fhirIds.firstOpinion}`]]);
    });

    it('a replay of the same Bundle returns the same ids and creates nothing', async () => {
      const before = await referralRows();
      const res = await send('/fhir', bundle);
      const again = (await res.json()) as Bundle;
      expect(res.status).toBe(200);
      expect(again.entry!.map((e) => e.response?.location?.split('/').at(-3))).toEqual(response.entry!.map((e) => e.response?.location?.split('/').at(-3)));
      expect(again.entry!.map((e) => e.response?.status)).toEqual(['200 OK', '200 OK', '200 OK', '200 OK']);
      expect(await referralRows()).toEqual(before);
    });

    it('the same request id with changed content: 409 naming the placer identifier; with If-None-Exist: the existing referral, nothing created', async () => {
      const requestId = bundle.entry![1]!.resource!.resourceType === 'ServiceRequest' ? ((bundle.entry![1]!.resource as ServiceRequest).identifier![0]!.value as string) : '';
      const changed = structuredClone(bundle);
      (changed.entry![1]!.resource as ServiceRequest).note = [{ text: 'A different question' }];
      const before = await referralRows();
      const conflict = await send('/fhir', changed);
      const outcome = (await conflict.json()) as OperationOutcome;
      expect(conflict.status).toBe(409);
      expect(outcome.issue[0]?.expression).toEqual(['Bundle.entry[1].resource.identifier[0].value']);
      changed.entry![1]!.request!.ifNoneExist = `identifier=${EHR_ORDER_SYSTEM}|${requestId}`;
      const res = await send('/fhir', changed);
      const existing = (await res.json()) as Bundle;
      expect(res.status, JSON.stringify(existing)).toBe(200);
      expect(existing.entry!.map((e) => e.response?.location?.split('/').at(-3))).toEqual(response.entry!.map((e) => e.response?.location?.split('/').at(-3)));
      expect(await referralRows()).toEqual(before);
    });
  });

  describe('POST /fhir/ServiceRequest: the referral alone, its performers become Tasks', () => {
    it('creates the ServiceRequest (201, Location with version) and one Task per performer; a replay answers 200 with the same resource', async () => {
      const p = parts();
      p.serviceRequest.supportingInfo = p.serviceRequest.supportingInfo!.slice(1);
      p.serviceRequest.occurrenceDateTime = new Date(Date.now() + 5 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
      const res = await send('/fhir/ServiceRequest', p.serviceRequest, { 'If-None-Exist': `identifier=${p.serviceRequest.identifier![0]!.value}` });
      const sr = (await res.json()) as ServiceRequest;
      expect(res.status, JSON.stringify(sr)).toBe(201);
      expect(res.headers.get('location')).toBe(`${fhirBase()}/ServiceRequest/${sr.id}/_history/1`);
      expect(res.headers.get('etag')).toBe('W/"1"');
      expect(validator.validate(sr)).toEqual([]);
      expect(sr.performer?.map((x) => x.reference)).toEqual(['Organization/lakeside', 'Organization/northfield-pathology']);
      const tasks = await fetch(`${service.url}/fhir/Task?focus=ServiceRequest/${sr.id}`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.json() as Promise<Bundle<Task>>);
      const owned = (tasks.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource as Task);
      expect(owned.map((t) => t.owner?.reference).sort()).toEqual(['Organization/lakeside', 'Organization/northfield-pathology']);
      for (const t of owned) expect(t.restriction?.period?.end).toBe(p.serviceRequest.occurrenceDateTime);

      const before = await referralRows();
      const again = await send('/fhir/ServiceRequest', p.serviceRequest);
      expect(again.status).toBe(200);
      expect(((await again.json()) as ServiceRequest).id).toBe(sr.id);
      expect(await referralRows()).toEqual(before);
    });
  });
});

/** The resources with their ids replaced by role names and the intake time left out (they differ between two referrals). */
function normalize(resources: Resource[], ids: { serviceRequest: string; tasks: string[]; firstOpinion: string }): Resource[] {
  let text = JSON.stringify(resources);
  text = text.replaceAll(ids.serviceRequest, '<referral>').replaceAll(ids.firstOpinion, '<first-opinion>');
  ids.tasks.forEach((t, i) => (text = text.replaceAll(t, `<task-${i}>`)));
  return (JSON.parse(text) as Resource[]).map((r) => {
    const { meta, ...rest } = r as Resource & Record<string, unknown>;
    const copy: Record<string, unknown> = { ...rest, meta: { ...meta, lastUpdated: '<time>' } };
    for (const field of ['authoredOn', 'lastModified', 'date']) if (field in copy) copy[field] = '<time>';
    if (r.resourceType === 'ServiceRequest') copy.identifier = (r as ServiceRequest).identifier?.map((i) => ({ ...i, value: '<request-id>' }));
    if (r.resourceType === 'Task') {
      const t = r as Task;
      copy.restriction = { period: { end: new Date(t.restriction!.period!.end!).getTime() - new Date(t.authoredOn!).getTime() } };
    }
    return copy as unknown as Resource;
  });
}
