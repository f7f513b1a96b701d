import express, { type Request, type Response, Router } from 'express';
import { parameterProblems } from '../http/percent-decoding.ts';
import { tokenEndpointUrl, type AuthDeps } from './auth-deps.ts';
import { OAuthError } from './oauth-error.ts';
import { splitScopes } from './scopes.ts';
import { ASSERTION_ALGORITHMS, issueAccessToken, refusalReason } from './token-endpoint.ts';

/** Largest token request body; an assertion is well under 2 kB. */
const TOKEN_BODY_LIMIT = '16kb';

/** body-parser's `type` for a form refused by `refuseUnreadableForm`. */
const FORM_TEXT_REFUSED = 'form.text.refused';

/**
 * body-parser `verify` hook: the form parser is lenient (`%E0%A4%A` becomes U+FFFD, `%00` a
 * NUL that the jti store cannot hold), so the raw form is checked first and the first bad
 * parameter named in the OAuth error.
 */
function refuseUnreadableForm(_req: unknown, _res: unknown, raw: Buffer): void {
  const [problem] = parameterProblems(raw.toString('utf8'));
  if (problem) throw Object.assign(new Error('unreadable form parameter'), { type: FORM_TEXT_REFUSED, description: problem.reason });
}

const parseForm = express.urlencoded({ extended: false, limit: TOKEN_BODY_LIMIT, type: 'application/x-www-form-urlencoded', parameterLimit: 20, verify: refuseUnreadableForm });

/**
 * The public auth endpoints (mount BEFORE the auth middleware; they need no token):
 * - `POST /auth/token`: SMART Backend Services token request (form-encoded), OAuth JSON errors,
 *   within the abuse limits when `deps.tokenLimits` is given (429 `slow_down`, lockout);
 * - `GET /.well-known/smart-configuration` (also under `/fhir/`, where SMART clients look for it
 *   relative to the FHIR base URL);
 * - `GET /.well-known/jwks.json`: the public key access tokens are signed with.
 */
export function createAuthRouter(deps: AuthDeps): Router {
  const router = Router();

  router.post('/auth/token', async (req, res) => {
    res.set({ 'Cache-Control': 'no-store', Pragma: 'no-cache' });
    let issuing = false;
    try {
      // Per address before the body is read; per client id and lockout in issueAccessToken.
      deps.tokenLimits?.admitAddress(req.ip);
      const form = await readForm(req, res);
      if (!form) {
        deps.metrics?.tokenRefused('invalid_request');
        return;
      }
      issuing = true;
      res.json(await issueAccessToken(form, deps));
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err;
      // issueAccessToken counts its own refusals; the per-address limit refuses before it runs.
      if (!issuing) deps.metrics?.tokenRefused(refusalReason(err));
      if (err.retryAfterSeconds !== undefined) res.set('Retry-After', String(err.retryAfterSeconds));
      res.status(err.status).json(err.toJSON());
    }
  });

  const smartConfiguration = (_req: Request, res: Response) => {
    res.set('Cache-Control', 'public, max-age=300');
    res.json(smartConfigurationDocument(deps));
  };
  router.get('/.well-known/smart-configuration', smartConfiguration);
  router.get('/fhir/.well-known/smart-configuration', smartConfiguration);

  router.get('/.well-known/jwks.json', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=300');
    res.json({ keys: [deps.signingKey.publicJwk] });
  });

  return router;
}

/** A request to the token endpoint (as Express routes it: any case, optional trailing slash), which has limits of its own. */
export function isTokenRequest(req: Request): boolean {
  return req.method === 'POST' && /^\/auth\/token\/?$/i.test(req.path);
}

/**
 * SMART discovery document (https://hl7.org/fhir/smart-app-launch/conformance.html):
 * backend services with asymmetric client authentication only.
 */
export function smartConfigurationDocument(deps: Pick<AuthDeps, 'config' | 'network'>): Record<string, unknown> {
  const scopes = new Set<string>();
  for (const p of deps.network.participants) for (const c of p.clients) for (const s of splitScopes(c.scope)) scopes.add(s);
  return {
    issuer: deps.config.publicUrl,
    jwks_uri: `${deps.config.publicUrl}/.well-known/jwks.json`,
    token_endpoint: tokenEndpointUrl(deps.config),
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGORITHMS],
    grant_types_supported: ['client_credentials'],
    scopes_supported: [...scopes].sort(),
    capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
  };
}

/**
 * Parses the form body, answering OAuth `invalid_request` itself (RFC 6749 §3.2: the token
 * endpoint takes application/x-www-form-urlencoded; §3.2: parameters MUST NOT repeat).
 * Returns undefined when it has already answered.
 */
async function readForm(req: Request, res: Response): Promise<Record<string, string> | undefined> {
  const refuse = (description: string) => {
    res.status(400).json(new OAuthError('invalid_request', description).toJSON());
    return undefined;
  };
  if (!req.is('application/x-www-form-urlencoded')) return refuse('the token request must be sent as application/x-www-form-urlencoded');
  const error = await new Promise<unknown>((resolve) => parseForm(req, res, resolve));
  if (error) {
    const { type, description, errno } = error as { type?: string; description?: string; errno?: unknown };
    if (type === 'entity.too.large') return refuse(`the token request body is larger than ${TOKEN_BODY_LIMIT}`);
    if (type === 'parameters.too.many') return refuse('the token request has too many parameters');
    if (type === FORM_TEXT_REFUSED) return refuse(`the token request parameters must be percent-encoded UTF-8 text: ${description}`);
    if (type === 'charset.unsupported') return refuse('the token request body must be UTF-8: send charset=utf-8 or no charset');
    if (type === 'encoding.unsupported') return refuse('the token request Content-Encoding is not supported');
    if (typeof errno === 'number') return refuse('the token request body could not be decompressed: it is not what its Content-Encoding says');
    return refuse('the token request body could not be read');
  }
  const body: unknown = req.body;
  if (typeof body !== 'object' || body === null) return refuse('the token request body is empty');
  const form: Record<string, string> = {};
  for (const [key, value] of Object.entries(body)) {
    if (typeof value !== 'string') return refuse(`parameter ${key.slice(0, 50)} must not be repeated`);
    form[key] = value;
  }
  return form;
}
