import type { Bundle, CodeSystem, OperationOutcome, Organization, Resource, StructureDefinition, ValueSet } from '@medplum/fhirtypes';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CANONICAL_BASE, EXTENSION, PARTICIPANT_ROLE_DISPLAY, PROFILE, SYSTEM } from '../src/fhir/constants.ts';
import { GENERATED_PROFILES_PATH } from '../src/fhir/profile-registry.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { clientIdOf } from './support/example-network.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * Our CodeSystems, ValueSets and StructureDefinitions over real HTTP: served with no
 * token, read by id and found by canonical URL, so every canonical the service writes into a
 * resource resolves here; valid R4; unknown parameters reported or (strict) refused.
 */
describe('conformance resources at /fhir', () => {
  let service: TestService;
  const validator = createValidator();
  const fhir = () => `${service.config.publicUrl}/fhir`;
  /** No Authorization header: these routes are public. */
  const get = async <T>(path: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${service.url}${path}`, { headers: { accept: 'application/fhir+json', ...headers } });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as T };
  };
  const byUrl = async <T extends Resource>(type: string, url: string) => {
    const res = await get<Bundle<T>>(`/fhir/${type}?url=${encodeURIComponent(url)}`);
    expect([url, res.status]).toEqual([url, 200]);
    return res.body;
  };

  beforeAll(async () => {
    service = await startTestService();
  }, 60_000);
  afterAll(async () => {
    await service?.stop();
  });

  it('every canonical of constants.ts (code systems, profiles, extensions) resolves by url, without a token, to exactly one resource', async () => {
    const codeSystems = Object.values(SYSTEM).filter((s) => s.startsWith(`${CANONICAL_BASE}/CodeSystem/`));
    expect(codeSystems).toContain(SYSTEM.participantRole);
    for (const [type, urls] of [
      ['CodeSystem', codeSystems],
      ['ValueSet', codeSystems.map((s) => s.replace('/CodeSystem/', '/ValueSet/'))],
      ['StructureDefinition', [...Object.values(PROFILE), ...Object.values(EXTENSION)]],
    ] as const) {
      for (const url of urls) {
        const found = await byUrl<CodeSystem | ValueSet | StructureDefinition>(type, url);
        expect([url, found.total, found.entry?.map((e) => e.resource?.url)]).toEqual([url, 1, [url]]);
        expect(found.entry?.[0]?.fullUrl).toBe(`${fhir()}/${type}/${found.entry?.[0]?.resource?.id}`);
      }
    }
  });

  it('every value set a profile binds to resolves too, and every served resource is valid R4', async () => {
    const sds = (await get<Bundle<StructureDefinition>>('/fhir/StructureDefinition')).body;
    expect(sds.total).toBe(Object.values(PROFILE).length + Object.values(EXTENSION).length);
    const bound = new Set(
      (sds.entry ?? []).flatMap((e) => (e.resource?.snapshot?.element ?? []).map((el) => el.binding?.valueSet?.split('|')[0]).filter((v): v is string => !!v?.startsWith(CANONICAL_BASE))),
    );
    expect(bound.size).toBeGreaterThan(0);
    for (const url of bound) expect([url, (await byUrl<ValueSet>('ValueSet', url)).total]).toEqual([url, 1]);
    for (const type of ['CodeSystem', 'ValueSet', 'StructureDefinition', 'Measure']) {
      for (const entry of (await get<Bundle>(`/fhir/${type}`)).body.entry ?? []) expect([entry.fullUrl, validator.validate(entry.resource as Resource)]).toEqual([entry.fullUrl, []]);
    }
  });

  it('the participant-role code system resolves with the codes and displays the directory writes into Organization.type', async () => {
    const token = await getAccessToken(service.url, clientIdOf('st-olaf'));
    const org = await fetch(`${service.url}/fhir/Organization/st-olaf`, { headers: { authorization: `Bearer ${token}` } });
    expect(org.status).toBe(200);
    const codings = ((await org.json()) as Organization).type?.flatMap((t) => t.coding ?? []) ?? [];
    expect(codings.length).toBeGreaterThan(0);
    const cs = (await get<CodeSystem>('/fhir/CodeSystem/participant-role')).body;
    expect(cs).toMatchObject({ resourceType: 'CodeSystem', id: 'participant-role', url: SYSTEM.participantRole, content: 'complete', caseSensitive: true });
    expect(Object.fromEntries((cs.concept ?? []).map((c) => [c.code, c.display]))).toEqual(PARTICIPANT_ROLE_DISPLAY);
    for (const coding of codings) expect(cs.concept?.find((c) => c.code === coding.code)?.display).toBe(coding.display);
    for (const coding of codings) expect(coding.system).toBe(cs.url);
  });

  it('a read carries an ETag that answers If-None-Match with 304; an unknown id is a 404 OperationOutcome', async () => {
    const read = await get<CodeSystem>('/fhir/CodeSystem/second-opinion-kind');
    expect(read.status).toBe(200);
    expect(read.body.url).toBe(SYSTEM.kind);
    const etag = read.headers.get('etag') as string;
    expect(etag).toBe(`W/"${read.body.meta?.versionId}"`);
    expect((await get('/fhir/CodeSystem/second-opinion-kind', { 'if-none-match': etag })).status).toBe(304);
    const missing = await get<OperationOutcome>('/fhir/ValueSet/no-such-value-set');
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
  });

  it('searches: url|version, name prefix, OR by comma, _summary=count; unknown parameters reported, or refused under handling=strict', async () => {
    const versioned = await byUrl<StructureDefinition>('StructureDefinition', `${PROFILE.task}|0.1.0`);
    expect(versioned.entry?.map((e) => e.resource?.id)).toEqual(['second-opinion-task']);
    expect((await byUrl('StructureDefinition', `${PROFILE.task}|9.9.9`)).total).toBe(0);
    const byName = (await get<Bundle<CodeSystem>>('/fhir/CodeSystem?name=secondopinion')).body;
    expect(byName.entry?.map((e) => e.resource?.id)).toEqual(['second-opinion-kind']);
    const either = (await get<Bundle<CodeSystem>>(`/fhir/CodeSystem?url=${encodeURIComponent(`${SYSTEM.kind},${SYSTEM.reviewType}`)}`)).body;
    expect(either.entry?.map((e) => e.resource?.id).sort()).toEqual(['review-type', 'second-opinion-kind']);
    const count = (await get<Bundle>('/fhir/ValueSet?_summary=count')).body;
    // Every value set compiled from profiles/ (FSH), however many there are.
    const valueSets = ((JSON.parse(readFileSync(GENERATED_PROFILES_PATH, 'utf8')) as Bundle).entry ?? []).filter((e) => e.resource?.resourceType === 'ValueSet').length;
    expect(valueSets).toBeGreaterThanOrEqual(6);
    expect(count).toEqual({ resourceType: 'Bundle', type: 'searchset', total: valueSets, link: [{ relation: 'self', url: `${fhir()}/ValueSet?_summary=count` }] });

    const lenient = (await get<Bundle>('/fhir/CodeSystem?_id=review-type&title=Review')).body;
    expect(lenient.entry?.map((e) => e.search?.mode)).toEqual(['match', 'outcome']);
    expect(lenient.entry?.[1]?.resource).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'warning', code: 'not-supported', details: { text: "Search parameter 'title' is not supported on CodeSystem and was ignored" }, expression: ['title'] }],
    });
    expect(lenient.link?.[0]?.url).toBe(`${fhir()}/CodeSystem?_id=review-type`);
    const strict = await get<OperationOutcome>('/fhir/CodeSystem?title=Review', { prefer: 'handling=strict' });
    expect(strict.status).toBe(400);
    expect(strict.body).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'not-supported', details: { text: "Search parameter 'title' is not supported on CodeSystem" }, expression: ['title'] }],
    });
  });

  it('the CapabilityStatement lists read and search on the four types with their search parameters', async () => {
    const cs = (await get<{ rest: { resource: { type: string; interaction?: { code: string }[]; searchParam?: { name: string }[] }[] }[] }>('/fhir/metadata')).body;
    for (const type of ['CodeSystem', 'ValueSet', 'StructureDefinition', 'Measure']) {
      const entry = cs.rest[0]?.resource.find((r) => r.type === type);
      expect([type, entry?.interaction?.map((i) => i.code), entry?.searchParam?.map((p) => p.name)]).toEqual([type, ['read', 'search-type'], ['_id', 'url', 'version', 'name', 'status']]);
    }
  });
});
