import type { RequestHandler } from 'express';

/** The API serves no pages of its own: nothing may load, frame or submit from its responses. */
export const API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * The API reference page (GET /docs, Swagger UI served from the service's own node_modules): its
 * scripts, style sheet and icons from this origin only, the OpenAPI document fetched from this
 * origin, the style sheet's icons as data: URLs. No inline script (the start-up script is a file),
 * nothing from any other origin; not framed, no forms, no base URL.
 */
export const DOCS_PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

export interface SecurityHeadersOptions {
  /** The service's public base URL: HSTS is sent only when clients reach it over https. */
  publicUrl: string;
  /** `Strict-Transport-Security` max-age; 0 sends none. */
  hstsMaxAgeSeconds: number;
}

/**
 * Security headers on every response, set before the routes so a route can replace any of
 * them with its own (the Binary route's `sandbox` CSP and `private, no-cache`, the comparison
 * page's and /docs' CSP, discovery's public caching). What helmet would set, limited to what matters
 * for an API carrying PHI (OWASP REST Security Cheat Sheet, "Security headers"):
 * - `Cache-Control: no-store`: no shared or browser cache keeps PHI unless a route says so;
 * - `X-Content-Type-Options: nosniff`, `Content-Security-Policy` with `frame-ancestors 'none'`
 *   and `X-Frame-Options: DENY` for older browsers: a response is never run as a page or framed;
 * - `Referrer-Policy: no-referrer`: ids in our URLs never leak to another site;
 * - `Cross-Origin-Resource-Policy` and `-Opener-Policy: same-origin`: other sites cannot embed
 *   our responses or keep a handle on our pages;
 * - `Strict-Transport-Security` only when PUBLIC_URL is https (RFC 6797 §7.2: not over plain
 *   http), without includeSubDomains, which would bind the hospital's other hosts too.
 */
export function securityHeaders(options: SecurityHeadersOptions): RequestHandler {
  const headers: [string, string][] = [
    ['Cache-Control', 'no-store'],
    ['X-Content-Type-Options', 'nosniff'],
    ['Content-Security-Policy', API_CONTENT_SECURITY_POLICY],
    ['X-Frame-Options', 'DENY'],
    ['Referrer-Policy', 'no-referrer'],
    ['Cross-Origin-Resource-Policy', 'same-origin'],
    ['Cross-Origin-Opener-Policy', 'same-origin'],
  ];
  if (options.hstsMaxAgeSeconds > 0 && options.publicUrl.startsWith('https://')) {
    headers.push(['Strict-Transport-Security', `max-age=${options.hstsMaxAgeSeconds}`]);
  }
  return (_req, res, next) => {
    for (const [name, value] of headers) res.setHeader(name, value);
    next();
  };
}
