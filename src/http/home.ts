import { Router, type Request } from 'express';

/**
 * `GET /`: what this service is and where to go next, without a token: the API reference
 * (`/docs`, `/openapi.json`), the FHIR CapabilityStatement, SMART discovery, the token endpoint
 * and the health endpoints. JSON by default; a small HTML page for a browser (`Accept: text/html`).
 * It names no participant and no resource: it is the same for everyone.
 */
export interface HomeLink {
  rel: string;
  href: string;
  title: string;
}

export function homeLinks(publicUrl: string): HomeLink[] {
  const at = (path: string) => `${publicUrl}${path}`;
  return [
    { rel: 'docs', href: at('/docs'), title: 'API reference (human-readable)' },
    { rel: 'openapi', href: at('/openapi.json'), title: 'OpenAPI document of the JSON API' },
    { rel: 'fhir-metadata', href: at('/fhir/metadata'), title: 'FHIR R4 CapabilityStatement' },
    { rel: 'smart-configuration', href: at('/.well-known/smart-configuration'), title: 'SMART discovery (token endpoint, scopes)' },
    { rel: 'token', href: at('/auth/token'), title: 'SMART Backend Services token endpoint (POST)' },
    { rel: 'healthz', href: at('/healthz'), title: 'Liveness' },
    { rel: 'readyz', href: at('/readyz'), title: 'Readiness' },
  ];
}

export function createHomeRouter(deps: { publicUrl: string; software: { name: string; version: string } }): Router {
  const router = Router();
  const links = homeLinks(deps.publicUrl);
  const body = {
    name: deps.software.name,
    version: deps.software.version,
    description: 'Carries second-opinion referrals between hospital systems over FHIR R4. Every other route needs a bearer token from the token endpoint.',
    links,
  };
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(body.name)}</title></head>
<body><main>
<h1>Second-opinion referrals</h1>
<p>${escapeHtml(body.description)}</p>
<ul>
${links.map((l) => `<li><a href="${escapeHtml(l.href)}">${escapeHtml(l.title)}</a> <code>${escapeHtml(new URL(l.href).pathname)}</code></li>`).join('\n')}
</ul>
<p>Version ${escapeHtml(body.version)}</p>
</main></body></html>
`;
  router.get('/', (req: Request, res) => {
    res.vary('Accept');
    if (req.accepts(['application/json', 'text/html']) === 'text/html') return void res.type('html').send(html);
    res.json(body);
  });
  return router;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
