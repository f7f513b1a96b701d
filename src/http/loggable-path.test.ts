import { describe, expect, it } from 'vitest';
import { loggablePath } from './loggable-path.ts';

const TASK_ID = '8c1e3f2a-5b6d-4e7f-9a0b-1c2d3e4f5a6b';
const SHA256 = 'a'.repeat(64);

/** The parts of an Express request loggablePath reads. */
function request(routePath: string | undefined, originalUrl: string, baseUrl = '') {
  return { baseUrl, originalUrl, route: routePath === undefined ? undefined : { path: routePath } } as Parameters<typeof loggablePath>[0];
}

describe('loggablePath', () => {
  it('keeps our ids, served resource types and version numbers', () => {
    expect(loggablePath(request('/fhir/:type/:id', `/fhir/Task/${TASK_ID}`))).toBe(`/fhir/Task/${TASK_ID}`);
    expect(loggablePath(request('/fhir/:type/:id/_history/:vid', `/fhir/Task/${TASK_ID}/_history/3`))).toBe(`/fhir/Task/${TASK_ID}/_history/3`);
    expect(loggablePath(request('/fhir/Binary/:id', `/fhir/Binary/${SHA256}`))).toBe(`/fhir/Binary/${SHA256}`);
    expect(loggablePath(request('/consults/:taskId/opinion', `/consults/${TASK_ID}/opinion`))).toBe(`/consults/${TASK_ID}/opinion`);
    expect(loggablePath(request('/second-opinions', '/second-opinions?x=1'))).toBe('/second-opinions');
  });

  it('puts the parameter name where a caller wrote anything else', () => {
    expect(loggablePath(request('/second-opinions/:id', '/second-opinions/REQ-1001'))).toBe('/second-opinions/:id');
    expect(loggablePath(request('/fhir/:type/:id', '/fhir/Patient/999-00-1234'))).toBe('/fhir/:type/:id');
    expect(loggablePath(request('/fhir/:type/:id/_history/:vid', `/fhir/Task/${TASK_ID}/_history/999001234`))).toBe(`/fhir/Task/${TASK_ID}/_history/:vid`);
    expect(loggablePath(request('/fhir/:type', '/fhir/Nilsen%20Ingrid?identifier=999-00-1234'))).toBe('/fhir/:type');
    expect(loggablePath(request('/consults/:taskId/opinion', `/consults/${TASK_ID}x/opinion`))).toBe('/consults/:taskId/opinion');
  });

  it('gives the route when the URL does not line up with it, and nothing when no route matched', () => {
    expect(loggablePath(request('/second-opinions/:id', '/second-opinions/REQ-1001/'))).toBe('/second-opinions/:id');
    expect(loggablePath(request(undefined, '/patients/999-00-1234'))).toBeUndefined();
  });

  it('a request refused before routing (401, 429) is logged with the route its path fits, from the route table', () => {
    expect(loggablePath(request(undefined, `/second-opinions/${TASK_ID}/comparison`))).toBe(`/second-opinions/${TASK_ID}/comparison`);
    expect(loggablePath(request(undefined, '/second-opinions/REQ-1001'))).toBe('/second-opinions/:id');
    expect(loggablePath(request(undefined, '/fhir/Patient/999-00-1234'))).toBe('/fhir/:type/:id');
    expect(loggablePath(request(undefined, `/fhir/Binary/${SHA256}?x=1`))).toBe(`/fhir/Binary/${SHA256}`);
  });
});
