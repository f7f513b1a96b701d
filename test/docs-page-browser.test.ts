import { afterAll, beforeAll, expect, it } from 'vitest';
import { type CheckedPage, describeInBrowser, launchBrowser, type TestBrowser } from './support/browser.ts';
import { startTestService, type TestService } from './support/service.ts';

/**
 * The API reference page (`GET /docs`, Swagger UI served by the service from node_modules) as a
 * browser shows it: the operations listed, no console error, nothing loaded from any other
 * origin, no serious axe-core violation.
 */
describeInBrowser('/docs in Chromium', () => {
  let service: TestService;
  let browser: TestBrowser;
  let page: CheckedPage;
  let document: { paths: Record<string, Record<string, unknown>> };

  beforeAll(async () => {
    browser = await launchBrowser();
    service = await startTestService();
    document = (await (await fetch(`${service.url}/openapi.json`)).json()) as typeof document;
    page = await browser.open(`${service.url}/docs`);
    // Swagger UI renders after fetching the document: wait for the operations.
    await page.page.locator('.opblock').first().waitFor();
  });
  afterAll(async () => {
    await browser?.close();
    await service?.stop();
  });

  it('lists every operation of /openapi.json', async () => {
    expect(page.response?.status()).toBe(200);
    const operations = Object.values(document.paths).flatMap((p) => Object.keys(p).filter((m) => ['get', 'post', 'put', 'patch', 'delete'].includes(m)));
    expect(operations.length).toBeGreaterThan(10);
    expect(await page.page.locator('.opblock').count()).toBe(operations.length);
    expect(await page.page.locator('.opblock-summary-path').allInnerTexts()).toContain('/second-opinions/{id}/comparison');
  });

  it('logs no console error and loads nothing from another origin', () => {
    expect(page.consoleErrors).toEqual([]);
    expect(page.requestsOutside(service.url)).toEqual([]);
    expect(page.requests).toContain(`${service.url}/openapi.json`);
  });

  it('passes axe-core with no serious or critical violation', async () => {
    expect(await page.seriousViolations()).toEqual([]);
  });
});
