import { createRequire } from 'node:module';
import path from 'node:path';
import { Router } from 'express';
import { HttpOutcomeError, issue, outcome } from '../../fhir/outcomes.ts';
import { DOCS_PAGE_CSP } from '../security-headers.ts';
import { openApiJson } from './openapi.ts';

/** swagger-ui-dist's folder in node_modules: the page is served by the service itself, never from a CDN. */
const SWAGGER_UI_DIR = path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

/** The files of swagger-ui-dist the page loads: nothing else of node_modules is reachable. */
const VENDOR_ASSETS: Readonly<Record<string, string>> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

/**
 * The page's start-up script, served as a file (the page's CSP allows no inline script).
 * `validatorUrl: null`: Swagger UI would otherwise send the document to an outside validator;
 * no "Try it out" (the token endpoint wants a signed client assertion, which a browser form cannot make).
 * For accessibility (axe-core, test/docs-page-browser.test.ts): no deep links (Swagger UI puts
 * their anchors inside each operation's button, interactive inside interactive) and no server
 * selector (one entry, and Swagger UI gives the select no label).
 */
export const DOCS_INIT_SCRIPT = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: false,
    plugins: [function () { return { components: { ServersContainer: function () { return null; } } }; }],
    validatorUrl: null,
    supportedSubmitMethods: [],
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout'
  });
});
`;

/**
 * Swagger UI's colours, darkened where they fall short of WCAG AA contrast (4.5:1): the method
 * badges get dark text, the links, version badges and the Authorize button darker shades.
 */
export const DOCS_STYLE = `.swagger-ui .opblock .opblock-summary-method{color:#000;text-shadow:none}
.swagger-ui .info .title small{background:#4b5260}
.swagger-ui .info .title small.version-stamp{background:#3d6b00}
.swagger-ui .info a,.swagger-ui .info .url,.swagger-ui .info__extdocs{color:#1f5fa8}
.swagger-ui .btn.authorize{color:#176b43;border-color:#176b43}.swagger-ui .btn.authorize svg{fill:#176b43}
.swagger-ui .json-schema-2020-12-expand-deep-button{color:#555}
`;

/** The page: Swagger UI renders into a plain `div` (it brings its own `main` landmark; a second would be one too many). */
export const DOCS_PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Second-opinion referrals API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="stylesheet" href="/docs/docs.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"><noscript>This page needs JavaScript. The document it renders is at <a href="/openapi.json">/openapi.json</a>.</noscript></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

/** Vendored assets change only with the package: browsers may keep them an hour. */
const ASSET_CACHE = 'public, max-age=3600';

/**
 * Public: `GET /openapi.json` (the OpenAPI 3.1 document, built once), `GET /docs` (the reference
 * page, Swagger UI from swagger-ui-dist) and `GET /docs/{asset}` (its script, style sheet, icons).
 */
export function createApiDocsRouter(deps: { publicUrl: string; software: { name: string; version: string } }): Router {
  const router = Router();
  router.get('/openapi.json', (_req, res) => {
    res.type('application/json').send(openApiJson(deps.publicUrl, deps.software));
  });
  router.get('/docs', (_req, res) => {
    res.setHeader('Content-Security-Policy', DOCS_PAGE_CSP);
    res.type('html').send(DOCS_PAGE);
  });
  router.get('/docs/:asset', (req, res, next) => {
    const asset = req.params.asset as string;
    res.setHeader('Cache-Control', ASSET_CACHE);
    if (asset === 'docs.css') {
      res.type('text/css; charset=utf-8').send(DOCS_STYLE);
      return;
    }
    if (asset === 'init.js') {
      res.type('text/javascript; charset=utf-8').send(DOCS_INIT_SCRIPT);
      return;
    }
    const type = Object.hasOwn(VENDOR_ASSETS, asset) ? VENDOR_ASSETS[asset] : undefined;
    if (!type) {
      res.setHeader('Cache-Control', 'no-store');
      throw new HttpOutcomeError(404, outcome([issue('not-found', 'No such file of the reference page')]));
    }
    res.setHeader('Content-Type', type);
    res.sendFile(asset, { root: SWAGGER_UI_DIR, dotfiles: 'deny', cacheControl: false }, (err) => {
      if (err) next(err);
    });
  });
  return router;
}
