import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Express } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ROUTE_RULES, ruleFor } from '../src/access/route-rules.ts';
import * as examples from '../src/http/api-docs/examples.ts';
import { documentedRules, OPERATIONS, openApiPath, UNDOCUMENTED } from '../src/http/api-docs/openapi.ts';
import { DOCS_PAGE_CSP } from '../src/http/security-headers.ts';
import { clientIdOf } from './support/example-network.ts';
import { listRoutes } from './support/routes.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * The OpenAPI document (GET /openapi.json) against the running service: every route the app
 * registers is documented and every documented operation exists, with the rights of its access
 * rule; each example is accepted by the zod schema the route parses with and by the JSON Schema
 * the document shows; real answers fit the document's answer schemas; the reference page
 * (GET /docs) and its assets are served from this origin only.
 */

interface Operation {
  operationId: string;
  security: Record<string, string[]>[];
  'x-roles'?: string[];
  requestBody?: { content: Record<string, { schema: unknown; examples?: Record<string, { value: unknown }> }> };
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
}
interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, { type: string; flows: { clientCredentials: { tokenUrl: string; scopes: Record<string, string> } } }> };
}

const SWAGGER_UI_DIR = path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

describe('OpenAPI document and reference page', () => {
  let service: TestService;
  let app: Express;
  let doc: OpenApiDocument;
  let raw: string;
  const tokens: Record<string, string> = {};

  /** A zod schema from the document's JSON Schema (components become $defs), to hold values to what the document says. */
  const documented = (schema: unknown): z.ZodType => {
    const defs = JSON.parse(JSON.stringify(doc.components.schemas).replaceAll('#/components/schemas/', '#/$defs/')) as Record<string, unknown>;
    const root = JSON.parse(JSON.stringify(schema).replaceAll('#/components/schemas/', '#/$defs/')) as Record<string, unknown>;
    return z.fromJSONSchema({ ...root, $defs: defs } as never);
  };
  const operation = (method: string, p: string): Operation => {
    const op = doc.paths[p]?.[method.toLowerCase()];
    if (!op) throw new Error(`${method} ${p} is not in the document`);
    return op;
  };
  const answerSchema = (method: string, p: string, status: number, type = 'application/json') => {
    const schema = operation(method, p).responses[String(status)]?.content?.[type]?.schema;
    expect(schema, `${method} ${p} ${status} ${type} in the document`).toBeDefined();
    return documented(schema);
  };
  const call = async (method: string, p: string, who?: string, body?: unknown) => {
    const res = await fetch(`${service.url}${p}`, {
      method,
      headers: { ...(who ? { authorization: `Bearer ${tokens[who]}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, type: res.headers.get('content-type') ?? '', body: (await res.json()) as unknown };
  };

  beforeAll(async () => {
    service = await startTestService();
    // The Express app, not the drain listener http-server.ts puts before it.
    app = service.server.listeners('request').find((l) => 'router' in l) as unknown as Express;
    const res = await fetch(`${service.url}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    raw = await res.text();
    doc = JSON.parse(raw) as OpenApiDocument;
    tokens.referrer = await getAccessToken(service.url, clientIdOf('st-olaf'));
    tokens.consultant = await getAccessToken(service.url, clientIdOf('lakeside-consults'));
  }, 120_000);
  afterAll(async () => service?.stop());

  it('is an OpenAPI 3.1 document, built once: a second request gets the same text', async () => {
    expect(doc.openapi).toBe('3.1.0');
    const again = await fetch(`${service.url}/openapi.json`);
    expect(await again.text()).toBe(raw);
    const scheme = doc.components.securitySchemes.smart;
    expect(scheme?.type).toBe('oauth2');
    expect(scheme?.flows.clientCredentials.tokenUrl).toBe('/auth/token');
    expect(scheme?.flows.clientCredentials.scopes).toHaveProperty('system/ServiceRequest.c');
    expect(scheme?.flows.clientCredentials.scopes).toHaveProperty('system/Task.u');
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['OperationOutcome', 'IntakeRequest', 'Opinion', 'ReferralSummary', 'Worklist']));
  });

  it('documents every route the app registers, and every documented operation exists', () => {
    const registered = listRoutes(app);
    expect(registered.length).toBeGreaterThan(50);
    const missing = registered.filter((r) => !UNDOCUMENTED[`${r.method} ${r.path}`] && !doc.paths[openApiPath(r.path)]?.[r.method.toLowerCase()]).map((r) => `${r.method} ${r.path}`);
    expect(missing, 'routes the document leaves out').toEqual([]);
    const documentedOps = Object.entries(doc.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`));
    const phantom = documentedOps.filter((op) => !registered.some((r) => `${r.method} ${openApiPath(r.path)}` === op));
    expect(phantom, 'documented operations the app does not serve').toEqual([]);
    expect(documentedOps.length).toBe(registered.length - Object.keys(UNDOCUMENTED).length);
    // Only the catch-all is left out, and it is still a route of the app.
    for (const key of Object.keys(UNDOCUMENTED)) expect(registered.map((r) => `${r.method} ${r.path}`)).toContain(key);
    // Every spec of the JSON API names a route of the rules (none left behind by a renamed route).
    const ruleKeys = ROUTE_RULES.map((r) => `${r.method} ${openApiPath(r.path)}`);
    expect(Object.keys(OPERATIONS).filter((k) => !ruleKeys.includes(k))).toEqual([]);
    const ids = documentedOps.map((op) => operation(op.split(' ')[0] as string, op.split(' ')[1] as string).operationId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('gives each operation the roles and scope of its access rule', () => {
    for (const rule of documentedRules()) {
      const op = operation(rule.method, openApiPath(rule.path));
      const label = `${rule.method} ${rule.path}`;
      if (rule.access.kind === 'public') {
        expect(op.security, label).toEqual([]);
        continue;
      }
      const scope = rule.access.kind === 'roles' && rule.access.scope ? [`system/${rule.access.scope.type}.${rule.access.scope.interaction}`] : [];
      expect(op.security, label).toEqual([{ smart: scope }]);
      expect(op['x-roles'], label).toEqual(rule.access.kind === 'roles' ? rule.access.roles : undefined);
      expect(Object.keys(op.responses), label).toContain('401');
      if (rule.access.kind === 'roles') expect(Object.keys(op.responses), label).toContain('403');
    }
    expect(operation('POST', '/second-opinions').security).toEqual([{ smart: ['system/ServiceRequest.c'] }]);
    expect(operation('POST', '/consults/{taskId}/opinion')['x-roles']).toEqual(['consultant']);
    expect(ruleFor('GET', '/openapi.json')?.access.kind).toBe('public');
  });

  it('shows an example for every JSON body, each accepted by the route\'s zod schema and by the document\'s JSON Schema', () => {
    const shown: unknown[] = [];
    for (const [key, spec] of Object.entries(OPERATIONS)) {
      if (!spec.body?.example) continue;
      const [method, p] = key.split(' ') as [string, string];
      const content = operation(method, p).requestBody?.content['application/json'];
      const example = content?.examples?.example?.value;
      expect(example, key).toEqual(spec.body.example);
      shown.push(example);
      const parsed = spec.body.schema.safeParse(example);
      expect(parsed.success, `${key}: ${JSON.stringify(parsed.error?.issues)}`).toBe(true);
      const schema = documented(content?.schema);
      expect(schema.safeParse(example).success, `${key} against the document`).toBe(true);
      // Neither lets an unknown field through (the check can fail).
      const extra = { ...(example as object), notAField: 1 };
      expect(spec.body.schema.safeParse(extra).success, key).toBe(false);
      expect(schema.safeParse(extra).success, `${key} against the document`).toBe(false);
    }
    // Every request example of the module is shown, once (the OperationOutcome is the error component's, checked below).
    const { EXAMPLE_OPERATION_OUTCOME, ...requests } = examples;
    expect(shown.length).toBe(Object.keys(requests).length);
    for (const [name, value] of Object.entries(requests)) expect(shown, name).toContainEqual(value);
    expect((doc.components.schemas.OperationOutcome as { examples: unknown[] }).examples).toEqual([EXAMPLE_OPERATION_OUTCOME]);
    expect(documented(doc.components.schemas.OperationOutcome).safeParse(EXAMPLE_OPERATION_OUTCOME).success).toBe(true);
    // A required field left out fails both.
    const { consultants: _, ...noConsultants } = examples.EXAMPLE_INTAKE_REQUEST;
    expect(documented(operation('POST', '/second-opinions').requestBody?.content['application/json']?.schema).safeParse(noConsultants).success).toBe(false);
  });

  it('the documented example referral is placed, and the answers fit the document', async () => {
    const placed = await call('POST', '/second-opinions', 'referrer', { ...examples.EXAMPLE_INTAKE_REQUEST, requestId: `REQ-openapi-${Date.now()}` });
    expect(placed.status, JSON.stringify(placed.body)).toBe(201);
    const placedCheck = answerSchema('POST', '/second-opinions', 201).safeParse(placed.body);
    expect(placedCheck.success, JSON.stringify(placedCheck.error?.issues)).toBe(true);
    const id = (placed.body as { id: string }).id;

    const summary = await call('GET', `/second-opinions/${id}`, 'referrer');
    expect(summary.status).toBe(200);
    const summaryCheck = answerSchema('GET', '/second-opinions/{id}', 200).safeParse(summary.body);
    expect(summaryCheck.success, JSON.stringify(summaryCheck.error?.issues)).toBe(true);

    const comparison = await call('GET', `/second-opinions/${id}/comparison`, 'referrer');
    expect(comparison.status).toBe(200);
    const comparisonCheck = answerSchema('GET', '/second-opinions/{id}/comparison', 200).safeParse(comparison.body);
    expect(comparisonCheck.success, JSON.stringify(comparisonCheck.error?.issues)).toBe(true);
    expect(answerSchema('GET', '/second-opinions/{id}/comparison', 200).safeParse({ id, opinions: [] }).success).toBe(false);

    const worklist = await call('GET', '/consults?_count=5', 'consultant');
    expect(worklist.status).toBe(200);
    expect(answerSchema('GET', '/consults', 200).safeParse(worklist.body).success).toBe(true);

    const participants = await call('GET', '/participants?role=consultant', 'consultant');
    expect(participants.status).toBe(200);
    expect((participants.body as { participants: unknown[] }).participants.length).toBeGreaterThan(1);
    expect(answerSchema('GET', '/participants', 200).safeParse(participants.body).success).toBe(true);

    const health = await call('GET', '/readyz');
    expect(health).toMatchObject({ status: 200, body: { status: 'ready' } });
    expect(answerSchema('GET', '/readyz', 200).safeParse(health.body).success).toBe(true);

    // A refusal: the document's OperationOutcome example is what the service answers.
    const refused = await call('POST', '/second-opinions', 'referrer', { ...examples.EXAMPLE_INTAKE_REQUEST, priority: 'soon', consultants: [] });
    expect(refused.status).toBe(400);
    expect(refused.type).toBe('application/fhir+json; charset=utf-8');
    expect(refused.body).toEqual(examples.EXAMPLE_OPERATION_OUTCOME);
    expect(answerSchema('POST', '/second-opinions', 400, 'application/fhir+json').safeParse(refused.body).success).toBe(true);
    const unauthenticated = await call('GET', '/participants');
    expect(unauthenticated.status).toBe(401);
    expect(answerSchema('GET', '/participants', 401, 'application/fhir+json').safeParse(unauthenticated.body).success).toBe(true);
    // The check can fail: a body that is not an OperationOutcome does not fit.
    expect(answerSchema('GET', '/participants', 401, 'application/fhir+json').safeParse(participants.body).success).toBe(false);
  });

  it('serves the reference page with same-origin assets only, no inline script, and a CSP that allows nothing else', async () => {
    const res = await fetch(`${service.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toBe(DOCS_PAGE_CSP);
    const html = await res.text();
    const refs = [...html.matchAll(/\b(?:src|href)="([^"]*)"/g)].map((m) => m[1] as string);
    expect(refs.sort()).toEqual(['/docs/docs.css', '/docs/favicon-16x16.png', '/docs/favicon-32x32.png', '/docs/init.js', '/docs/swagger-ui-bundle.js', '/docs/swagger-ui.css', '/openapi.json']);
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBe(2);
    for (const [, attributes, body] of scripts) {
      expect(attributes).toMatch(/src="\/docs\//);
      expect(body).toBe('');
    }
    expect(html).not.toMatch(/\sstyle=|<style/);
    // Every source the CSP names is this origin, data: (the style sheet's icons) or none.
    const sources = DOCS_PAGE_CSP.split(';').flatMap((d) => d.trim().split(/\s+/).slice(1));
    expect(sources.filter((s) => !["'self'", "'none'", 'data:'].includes(s))).toEqual([]);
    expect(DOCS_PAGE_CSP).toContain("script-src 'self';");
    expect(DOCS_PAGE_CSP).toContain("connect-src 'self';");
  });

  it('serves the page\'s assets from swagger-ui-dist and its start-up script; nothing else of node_modules', async () => {
    for (const [asset, type] of [
      ['swagger-ui-bundle.js', 'text/javascript; charset=utf-8'],
      ['swagger-ui.css', 'text/css; charset=utf-8'],
      ['favicon-32x32.png', 'image/png'],
      ['favicon-16x16.png', 'image/png'],
    ] as const) {
      const res = await fetch(`${service.url}/docs/${asset}`);
      expect(res.status, asset).toBe(200);
      expect(res.headers.get('content-type'), asset).toBe(type);
      expect(res.headers.get('cache-control'), asset).toBe('public, max-age=3600');
      const bytes = Buffer.from(await res.arrayBuffer());
      expect(bytes.length, asset).toBe((await stat(path.join(SWAGGER_UI_DIR, asset))).size);
    }
    const bundle = await readFile(path.join(SWAGGER_UI_DIR, 'swagger-ui-bundle.js'), 'utf8');
    expect(bundle.length).toBeGreaterThan(1_000_000);

    const init = await fetch(`${service.url}/docs/init.js`);
    expect(init.status).toBe(200);
    expect(init.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const script = await init.text();
    expect(script).toContain("url: '/openapi.json'");
    expect(script).toContain('validatorUrl: null');
    expect(script).not.toMatch(/https?:\/\//);

    // The page's own style sheet: Swagger UI's colours darkened to WCAG AA contrast (checked in test/docs-page-browser.test.ts).
    const style = await fetch(`${service.url}/docs/docs.css`);
    expect(style.status).toBe(200);
    expect(style.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect(await style.text()).toContain('.opblock-summary-method{color:#000');

    for (const p of ['/docs/package.json', '/docs/index.html', '/docs/swagger-ui-bundle.js.map', '/docs/absolute-path.js', '/docs/..%2Fpackage.json', '/docs/.env']) {
      const res = await fetch(`${service.url}${p}`);
      expect(res.status, p).toBe(404);
      expect(res.headers.get('content-type'), p).toBe('application/fhir+json; charset=utf-8');
      expect(((await res.json()) as { resourceType: string }).resourceType, p).toBe('OperationOutcome');
    }
  });
});
