import { BACKPORT_EXTENSION, BACKPORT_OPERATION, BACKPORT_PROFILE, BACKPORT_SERVER_CAPABILITIES, TASK_TOPIC } from '../src/subscriptions/backport.ts';
import type { CapabilityStatement } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROFILE } from '../src/fhir/constants.ts';
import { SEARCH_PARAMETERS } from '../src/fhir-rest/search-parameters.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { captureLogs } from './support/log-capture.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

describe('logs and metadata', () => {
  let service: TestService;
  const { log, raw: lines } = captureLogs('debug');

  beforeAll(async () => {
    service = await startTestService({}, log);
  });
  afterAll(async () => service?.stop());

  it('one JSON line per request with ids, and no PHI, bodies or tokens', async () => {
    const token = await getAccessToken(service.url, clientIdOf('st-olaf'));
    const request = makeSecondOpinionRequest();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const res = await fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      body: JSON.stringify(request),
    });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    await fetch(`${service.url}/fhir/ServiceRequest?identifier=${encodeURIComponent('999-00-1234')}`, { headers: { authorization: `Bearer ${token}` } });
    await new Promise((r) => setTimeout(r, 50));

    const requestLines = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request');
    const intake = requestLines.find((l) => l.method === 'POST' && l.path === '/second-opinions');
    expect(intake).toMatchObject({ level: 'info', status: 201, traceId, client: 'st-olaf-ehr', participant: 'st-olaf', route: '/second-opinions' });
    expect(typeof intake?.durationMs).toBe('number');
    expect(intake?.requestId).toBe(res.headers.get('x-request-id'));
    const search = requestLines.find((l) => l.path === '/fhir/ServiceRequest');
    expect(search).toMatchObject({ status: 200 });

    const all = lines.join('\n');
    for (const secret of ['Alex Example', '999-00-1234', 'Ingrid Nilsen', 'implant advisable', token, request.requestId as string]) {
      expect(all).not.toContain(secret);
    }
  });

  it('GET /fhir/metadata lists the served types, their search parameters and our profiles, without a token', async () => {
    const res = await fetch(`${service.url}/fhir/metadata`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/fhir+json');
    const cs = (await res.json()) as CapabilityStatement;
    expect(cs).toMatchObject({ resourceType: 'CapabilityStatement', status: 'active', kind: 'instance', fhirVersion: '4.0.1' });
    const rest = cs.rest?.[0];
    expect(rest?.security?.extension?.[0]?.extension?.[0]).toEqual({ url: 'token', valueUri: `${service.config.publicUrl}/auth/token` });
    const byType = Object.fromEntries((rest?.resource ?? []).map((r) => [r.type, r]));
    // Generated from the search-parameter table, plus Binary (read only), ClinicalImpression (a profile, not served on its own),
    // Subscription (R5 Backport), our conformance resources (CodeSystem, ValueSet, StructureDefinition, Measure: read and search, no token)
    // and MeasureReport (a profile: the answer of $evaluate-measure, not stored).
    expect(Object.keys(byType).sort()).toEqual([...Object.keys(SEARCH_PARAMETERS), 'Binary', 'ClinicalImpression', 'Subscription', 'CodeSystem', 'ValueSet', 'StructureDefinition', 'Measure', 'MeasureReport'].sort());
    expect(Object.keys(byType)).toEqual(expect.arrayContaining(['AuditEvent', 'Binary', 'Bundle', 'DocumentReference', 'ServiceRequest', 'Task']));
    expect(byType.Task?.supportedProfile).toEqual([PROFILE.task]);
    expect(byType.ServiceRequest?.supportedProfile).toEqual([PROFILE.serviceRequest]);
    expect(byType.Task?.searchParam?.map((p) => p.name).sort()).toEqual(['_id', '_lastUpdated', 'focus', 'owner', 'patient', 'status', 'subject']);
    expect(byType.ServiceRequest?.searchParam?.map((p) => p.name).sort()).toEqual(['_id', '_lastUpdated', 'identifier', 'patient', 'status', 'subject']);
    expect(byType.Task?.interaction?.map((i) => i.code)).toEqual(['read', 'vread', 'update', 'patch', 'history-instance', 'search-type']);
    expect(byType.AuditEvent?.searchParam?.map((p) => `${p.name}:${p.type}`).sort()).toEqual([
      '_id:token',
      '_lastUpdated:date',
      'action:token',
      'agent:reference',
      'date:date',
      'entity:reference',
      'outcome:token',
      'patient:reference',
      'subtype:token',
    ]);
    expect(byType.Binary).toEqual({ type: 'Binary', documentation: expect.any(String), interaction: [{ code: 'read' }] });
    // Topic-based Subscriptions: the backport's profile, our Task topic, $status and $events.
    expect(cs.instantiates).toEqual([BACKPORT_SERVER_CAPABILITIES]);
    expect(byType.Subscription).toMatchObject({
      extension: [{ url: BACKPORT_EXTENSION.topicCanonical, valueCanonical: TASK_TOPIC }],
      supportedProfile: [BACKPORT_PROFILE.subscription],
      interaction: [{ code: 'read' }, { code: 'delete' }, { code: 'create' }, { code: 'search-type' }],
      operation: [
        { name: 'status', definition: BACKPORT_OPERATION.status },
        { name: 'events', definition: BACKPORT_OPERATION.events },
      ],
    });
  });

  it('an unsupported resource type is a FHIR 404, an unknown route too', async () => {
    const token = await getAccessToken(service.url, clientIdOf('st-olaf'));
    const res = await fetch(`${service.url}/fhir/Patient/1`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      resourceType: 'OperationOutcome',
      id: 'not-found',
      issue: [{ severity: 'error', code: 'not-supported', details: { text: "Resource type 'Patient' is not served here" } }],
    });
    const unknown = await fetch(`${service.url}/nowhere`, { headers: { authorization: `Bearer ${token}` } });
    expect(unknown.status).toBe(404);
    const write = await fetch(`${service.url}/fhir/Task`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' }, body: '{}' });
    expect(write.status).toBe(405);
    expect(write.headers.get('allow')).toBe('GET');
    expect(((await write.json()) as { issue: { code: string }[] }).issue[0]?.code).toBe('not-supported');
  });
});
