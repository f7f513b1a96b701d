import type { CapabilityStatementRestResource } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { ROUTE_RULES } from '../access/route-rules.ts';
import { loadProfileRegistry } from '../fhir/profile-registry.ts';
import { createValidator } from '../fhir/validator.ts';
import { capabilityStatement, FHIR_ROUTE_CAPABILITIES } from './capability-statement.ts';
import { INCLUDES, revincludesOf, SEARCH_PARAMETERS } from './search-parameters.ts';

const cs = capabilityStatement('https://so.example.org', { name: 'second-opinion-service', version: '0.0.0' }, '2026-01-01T00:00:00.000Z');
const rest = cs.rest?.[0];
const byType = new Map((rest?.resource ?? []).map((r) => [r.type, r] as [string, CapabilityStatementRestResource]));
const keyOf = (r: { method: string; path: string }) => `${r.method} ${r.path}`;

describe('the CapabilityStatement matches the routes, the search-parameter table and our profiles', () => {
  it('every /fhir route of ROUTE_RULES says what it is in the CapabilityStatement, and nothing else is listed', () => {
    const fhirRoutes = ROUTE_RULES.filter((r) => r.path.startsWith('/fhir')).map(keyOf);
    expect(fhirRoutes.filter((k) => !FHIR_ROUTE_CAPABILITIES[k]), '/fhir routes missing from FHIR_ROUTE_CAPABILITIES').toEqual([]);
    expect(Object.keys(FHIR_ROUTE_CAPABILITIES).filter((k) => !fhirRoutes.includes(k)), 'capabilities of routes that do not exist').toEqual([]);
  });

  it('each type lists exactly the interactions its routes answer', () => {
    const expected = new Map<string, string[]>();
    for (const rule of ROUTE_RULES.filter((r) => r.path.startsWith('/fhir'))) {
      const cap = FHIR_ROUTE_CAPABILITIES[keyOf(rule)];
      if (cap?.kind !== 'interaction') continue;
      for (const type of cap.types === 'served' ? Object.keys(SEARCH_PARAMETERS) : cap.types) expected.set(type, [...(expected.get(type) ?? []), cap.code]);
    }
    const listed = new Map([...byType].filter(([, r]) => r.interaction?.length).map(([t, r]) => [t, (r.interaction ?? []).map((i) => i.code)]));
    const sorted = (m: Map<string, string[]>) => Object.fromEntries([...m].map(([t, codes]) => [t, [...codes].sort()]));
    expect(sorted(listed)).toEqual(sorted(expected));
    expect(listed.get('Organization')).toEqual(['read', 'vread', 'history-instance', 'search-type']);
    expect(listed.get('Binary')).toEqual(['read']);
    expect(byType.get('Measure')?.operation).toEqual([{ name: 'evaluate-measure', definition: 'http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure' }]);
    expect(listed.get('Measure')).toEqual(['read', 'search-type']);
    // Operations and system interactions: exactly the routes that are ones (none yet).
    const ops = Object.values(FHIR_ROUTE_CAPABILITIES).filter((c) => c.kind === 'operation');
    expect([...(rest?.operation ?? []), ...[...byType.values()].flatMap((r) => r.operation ?? [])].map((o) => o.name).sort()).toEqual(ops.map((o) => (o.kind === 'operation' ? o.name : '')).sort());
    expect((rest?.interaction ?? []).map((i) => i.code)).toEqual(Object.values(FHIR_ROUTE_CAPABILITIES).flatMap((c) => (c.kind === 'system-interaction' ? [c.code] : [])));
  });

  it('each searchable type lists exactly its search parameters (with _lastUpdated), includes and revincludes', () => {
    for (const [type, params] of Object.entries(SEARCH_PARAMETERS)) {
      const entry = byType.get(type);
      expect([type, entry?.searchParam?.map((p) => p.name)]).toEqual([type, [...(params ?? []).map((p) => p.name), '_lastUpdated']]);
      expect([type, entry?.searchInclude ?? []]).toEqual([type, (INCLUDES[type as keyof typeof INCLUDES] ?? []).map((d) => `${type}:${d.name}`)]);
      expect([type, entry?.searchRevInclude ?? []]).toEqual([type, revincludesOf(type as never).map((r) => `${r.source}:${r.def.name}`)]);
    }
    expect(byType.get('Task')?.searchInclude).toEqual(['Task:focus', 'Task:input', 'Task:output', 'Task:owner']);
    expect(byType.get('ServiceRequest')?.searchRevInclude).toEqual(['Task:focus']);
    expect(byType.get('Organization')?.searchParam?.map((p) => `${p.name}:${p.type}`)).toEqual(['_id:token', 'name:string', 'identifier:token', 'type:token', '_lastUpdated:date']);
    expect(byType.get('Endpoint')?.searchParam?.map((p) => `${p.name}:${p.type}`)).toEqual(['_id:token', 'organization:reference', 'connection-type:token', 'status:token', '_lastUpdated:date']);
  });

  it('every resource profile we build is listed on its type', () => {
    createValidator();
    const profiles = [...loadProfileRegistry().profiles.values()];
    expect(profiles.length).toBeGreaterThanOrEqual(5);
    for (const p of profiles) expect([p.url, byType.get(p.type)?.supportedProfile ?? []]).toEqual([p.url, expect.arrayContaining([p.url])]);
  });

  it('is valid R4', () => {
    expect(createValidator().validate(cs)).toEqual([]);
  });
});
