import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from './support/service.ts';

describe('GET / (public)', () => {
  let service: TestService;
  beforeAll(async () => {
    service = await startTestService();
  });
  afterAll(async () => {
    await service?.stop();
  });

  it('answers JSON without a token: what the service is and where to go next', async () => {
    const res = await fetch(`${service.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { name: string; version: string; links: { rel: string; href: string }[] };
    expect(body.name).toBe('second-opinion-referrals');
    const base = service.config.publicUrl;
    expect(Object.fromEntries(body.links.map((l) => [l.rel, l.href]))).toEqual({
      docs: `${base}/docs`,
      openapi: `${base}/openapi.json`,
      'fhir-metadata': `${base}/fhir/metadata`,
      'smart-configuration': `${base}/.well-known/smart-configuration`,
      token: `${base}/auth/token`,
      healthz: `${base}/healthz`,
      readyz: `${base}/readyz`,
    });
    // The links it gives that this service serves without a token answer 200.
    for (const rel of ['fhir-metadata', 'smart-configuration', 'healthz', 'readyz']) {
      expect((await fetch(body.links.find((l) => l.rel === rel)!.href)).status, rel).toBe(200);
    }
  });

  it('answers a browser with a small HTML page carrying the same links', async () => {
    const res = await fetch(`${service.url}/`, { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('vary')).toMatch(/Accept/);
    const html = await res.text();
    for (const path of ['/docs', '/openapi.json', '/fhir/metadata', '/healthz', '/readyz']) expect(html).toContain(`href="${service.config.publicUrl}${path}"`);
  });

  it('a route that does not exist is still refused without a token', async () => {
    expect((await fetch(`${service.url}/nothing-here`)).status).toBe(401);
  });
});
