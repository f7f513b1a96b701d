/**
 * Lines 1 to 4 of the connection check (check-ehr.ts): what the EHR says about itself
 * (CapabilityStatement, SMART configuration), then whether it gives us a token and with which
 * scopes. Nothing here touches patient data.
 */
import type { CapabilityStatement } from '@medplum/fhirtypes';
import type { Interaction } from '../auth/scopes.ts';
import type { Participant } from '../network/network.ts';
import type { CheckLine } from './check-ehr-lines.ts';
import { describeFailure, printable } from './check-ehr-failure.ts';
import { loadOutboundKeys, OutboundKeyError, signingKeyAt } from './outbound-keys.ts';
import { OutboundAuthError, toTransportError } from './outbound-errors.ts';
import { missingOutboundScopes, OUTBOUND_NEEDS, type OutboundNeed } from './outbound-scope.ts';
import { createSmartTokenSource, type SmartAlg, type TokenSource } from './smart-token-source.ts';

interface HttpDeps {
  fetch: typeof globalThis.fetch;
  timeoutMs: number;
}

/** FHIR RESTful interaction codes (CapabilityStatement.rest.resource.interaction) of SMART's letters. */
const INTERACTION_CODE: Readonly<Record<Interaction, string>> = { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search-type' };

/** GET a JSON document without credentials (discovery documents are public). */
async function getJson(url: string, deps: HttpDeps): Promise<{ status: number; json: unknown }> {
  try {
    const response = await deps.fetch(url, { headers: { accept: 'application/fhir+json, application/json' }, signal: AbortSignal.timeout(deps.timeoutMs) });
    const json = await response.json().catch(() => undefined);
    return { status: response.status, json };
  } catch (err) {
    throw toTransportError(err, 'GET', url);
  }
}

/**
 * Line 1: `GET [base]/metadata`. Fails when it does not answer or is not FHIR 4.0.x; warns
 * when it does not list an interaction the service uses (many servers under-declare, so the
 * later lines are the proof).
 */
export async function checkCapabilityStatement(baseUrl: string, deps: HttpDeps, needs: readonly OutboundNeed[] = OUTBOUND_NEEDS): Promise<{ line: CheckLine; reachable: boolean }> {
  const title = 'CapabilityStatement (GET [base]/metadata)';
  let answer;
  try {
    answer = await getJson(`${baseUrl}/metadata`, deps);
  } catch (err) {
    return {
      reachable: false,
      line: { id: 'capability-statement', title, status: 'failed', observed: `${baseUrl}/metadata: ${describeFailure(err)}`, fix: 'Check fhir.baseUrl in the network file (the FHIR R4 base, e.g. https://ehr.example/fhir/R4) and that this host can reach it (DNS, firewall, proxy, TLS).' },
    };
  }
  const cs = answer.json as CapabilityStatement | undefined;
  if (answer.status !== 200 || cs?.resourceType !== 'CapabilityStatement') {
    return {
      reachable: true,
      line: { id: 'capability-statement', title, status: 'failed', observed: `HTTP ${answer.status}, ${cs?.resourceType ? `a ${printable(String(cs.resourceType), 40)}` : 'no FHIR resource'} instead of a CapabilityStatement`, fix: 'fhir.baseUrl must be the FHIR base itself (the URL [base]/metadata answers under), not the server root or a resource URL.' },
    };
  }
  const version = typeof cs.fhirVersion === 'string' ? printable(cs.fhirVersion, 20) : 'none';
  if (!/^4\.0\.\d+$/.test(version)) {
    return { reachable: true, line: { id: 'capability-statement', title, status: 'failed', observed: `fhirVersion ${version}`, fix: 'The service speaks FHIR R4 (4.0.x): point fhir.baseUrl at the EHR\'s R4 endpoint.' } };
  }
  const resources = cs.rest?.find((r) => r.mode === 'server')?.resource ?? [];
  const missing: string[] = [];
  for (const need of needs) {
    const declared = resources.find((r) => r.type === need.type);
    for (const letter of need.interactions) {
      if (!declared?.interaction?.some((i) => i.code === INTERACTION_CODE[letter])) missing.push(`${need.type} ${INTERACTION_CODE[letter]}`);
    }
  }
  const observed = `fhirVersion ${version}`;
  if (missing.length === 0) return { reachable: true, line: { id: 'capability-statement', title, status: 'ok', observed: `${observed}; lists every interaction the service uses` } };
  return {
    reachable: true,
    line: { id: 'capability-statement', title, status: 'warning', observed: `${observed}; does not list: ${missing.join(', ')}`, fix: 'Ask the EHR\'s administrators whether these interactions are enabled for backend clients; the lines below try the ones that matter.' },
  };
}

/**
 * Line 2: `[base]/.well-known/smart-configuration`. Its token endpoint must be the network
 * file's `tokenUrl` (the client assertion's `aud` is that URL, exactly), and when it lists
 * grant types, authentication methods and algorithms, ours must be among them.
 */
export async function checkSmartConfiguration(baseUrl: string, tokenUrl: string | undefined, keyAlg: SmartAlg | undefined, deps: HttpDeps): Promise<CheckLine> {
  const title = 'SMART configuration (GET [base]/.well-known/smart-configuration)';
  let answer;
  try {
    answer = await getJson(`${baseUrl}/.well-known/smart-configuration`, deps);
  } catch (err) {
    answer = { status: 0, json: undefined, failure: describeFailure(err) };
  }
  const config = answer.status === 200 && typeof answer.json === 'object' && answer.json !== null ? (answer.json as Record<string, unknown>) : undefined;
  if (!config) {
    const seen = 'failure' in answer ? answer.failure : `HTTP ${answer.status}`;
    if (!tokenUrl) return { id: 'smart-configuration', title, status: 'skipped', observed: `none (${seen}); the network file has no fhir.tokenUrl: calls carry no token` };
    return { id: 'smart-configuration', title, status: 'warning', observed: `none (${seen}): fhir.tokenUrl cannot be compared with the EHR's own`, fix: 'SMART servers publish it; ask the EHR\'s administrators for the token endpoint and make sure fhir.tokenUrl is exactly it.' };
  }
  const endpoint = typeof config.token_endpoint === 'string' ? printable(config.token_endpoint, 300) : undefined;
  const list = (key: string): string[] | undefined => (Array.isArray(config[key]) ? (config[key] as unknown[]).filter((v): v is string => typeof v === 'string') : undefined);
  const problems: string[] = [];
  const fixes: string[] = [];
  if (!endpoint) {
    problems.push('no token_endpoint');
  } else if (!tokenUrl) {
    problems.push(`token_endpoint ${endpoint}, but the network file has no fhir.tokenUrl`);
    fixes.push(`Add fhir.tokenUrl "${endpoint}" with fhir.clientId and fhir.privateKeyFile: this EHR expects tokens.`);
  } else if (endpoint !== tokenUrl) {
    problems.push(`token_endpoint ${endpoint} is not fhir.tokenUrl ${tokenUrl}`);
    fixes.push(`Set fhir.tokenUrl to "${endpoint}": the client assertion's audience must be the EHR's token URL exactly.`);
  }
  const grants = list('grant_types_supported');
  if (grants && !grants.includes('client_credentials')) {
    problems.push('grant_types_supported lacks client_credentials');
    fixes.push('The EHR must offer SMART Backend Services (client_credentials); ask its administrators to enable it for this client.');
  }
  const methods = list('token_endpoint_auth_methods_supported');
  if (methods && !methods.includes('private_key_jwt')) {
    problems.push('token_endpoint_auth_methods_supported lacks private_key_jwt');
    fixes.push('The service authenticates with a signed client assertion (private_key_jwt); ask the EHR to accept it.');
  }
  const algs = list('token_endpoint_auth_signing_alg_values_supported');
  if (algs && keyAlg && !algs.includes(keyAlg)) {
    problems.push(`our key signs ${keyAlg}; the EHR lists ${algs.map((a) => printable(a, 20)).join(', ') || 'none'}`);
    fixes.push(`Use a key for an algorithm the EHR lists (RS384: RSA, ES384: EC P-384) in fhir.privateKeyFile, and register its public half at the EHR.`);
  }
  const accepted = `grant types ${grants?.join(', ') ?? 'not listed'}; auth methods ${methods?.join(', ') ?? 'not listed'}; algorithms ${algs?.join(', ') ?? 'not listed'}`;
  if (problems.length > 0) return { id: 'smart-configuration', title, status: 'failed', observed: printable(problems.join('; '), 600), ...(fixes.length ? { fix: fixes.join(' ') } : {}) };
  return { id: 'smart-configuration', title, status: 'ok', observed: printable(`token_endpoint ${endpoint ?? ''} matches fhir.tokenUrl; ${accepted}`, 600) };
}

export interface TokenCheck {
  line: CheckLine;
  /** The token source the data lines use (none without `tokenUrl`). */
  tokenSource?: TokenSource;
  /** The scopes granted: the response's `scope`, or the requested scope when it names none. */
  granted?: readonly string[];
  /** Whether the token response named its scope. */
  scopeInResponse?: boolean;
  /** The algorithm of our key, when it could be read. */
  alg?: SmartAlg;
}

/**
 * Line 3: a token from `tokenUrl` with our client assertion, through the same token source the
 * service uses. On a refusal the OAuth `error` and `error_description` are read from the
 * response here (printable, capped) and shown with what they usually mean.
 */
export async function obtainToken(participant: Participant, options: HttpDeps & { scope: string; keyBaseDir: string }): Promise<TokenCheck> {
  const title = 'Access token (POST fhir.tokenUrl, SMART Backend Services)';
  const fhir = participant.fhir!;
  if (!fhir.tokenUrl) return { line: { id: 'token', title, status: 'skipped', observed: 'the network file has no fhir.tokenUrl: calls carry no token (only sandboxes accept that)' } };
  if (!fhir.clientId || (!fhir.privateKeyFile && !fhir.keys?.length)) {
    return { line: { id: 'token', title, status: 'failed', observed: 'fhir.tokenUrl without fhir.clientId and a key (fhir.privateKeyFile or fhir.keys)', fix: 'Add fhir.clientId (our client id at the EHR) and fhir.privateKeyFile or fhir.keys (our private key) to the network file.' } };
  }
  let key;
  try {
    // The key the service itself would sign with now (rotation by date: outbound-keys.ts).
    const keys = await loadOutboundKeys({ participants: [participant] }, { keyBaseDir: options.keyBaseDir });
    key = signingKeyAt(keys.get(participant.id) ?? [], Date.now());
  } catch (err) {
    const why = err instanceof OutboundKeyError ? err.message : 'the key file cannot be used';
    return { line: { id: 'token', title, status: 'failed', observed: why, fix: 'Point fhir.privateKeyFile or fhir.keys[].file (relative to the network file) at our private key: a JWK or PKCS#8 PEM, RSA (RS384) or EC P-384 (ES384).' } };
  }
  if (!key) {
    return { line: { id: 'token', title, status: 'failed', observed: 'no key of fhir.keys may sign now', fix: 'Give fhir.keys a key whose signFrom has passed and whose retireAfter has not.' } };
  }
  let response: Record<string, unknown> | undefined;
  const capture: typeof globalThis.fetch = async (url, init) => {
    const res = await options.fetch(url, init);
    response = (await res.clone().json().catch(() => undefined)) as Record<string, unknown> | undefined;
    return res;
  };
  let granted: readonly string[] | undefined;
  const tokenSource = createSmartTokenSource({ tokenUrl: fhir.tokenUrl, clientId: fhir.clientId, scope: options.scope, privateKey: key.key, alg: key.alg, kid: key.kid, timeoutMs: options.timeoutMs, fetch: capture, onGranted: (scopes) => (granted = scopes) });
  try {
    await tokenSource.getToken();
  } catch (err) {
    const oauth = err instanceof OutboundAuthError && err.failure === 'http' ? oauthRefusal(response) : undefined;
    return {
      alg: key.alg,
      line: {
        id: 'token',
        title,
        status: 'failed',
        observed: `${describeFailure(err)}${oauth ? `: ${oauth.text}` : ''}`,
        fix: tokenAdvice(oauth?.error, err, { clientId: fhir.clientId, tokenUrl: fhir.tokenUrl, kid: key.kid, alg: key.alg }),
      },
    };
  }
  const expiresIn = typeof response?.expires_in === 'number' ? `, expires in ${Math.round(response.expires_in)} s` : '';
  return {
    line: { id: 'token', title, status: 'ok', observed: `token issued to client ${fhir.clientId} (key ${key.alg}, kid ${key.kid})${expiresIn}` },
    tokenSource,
    alg: key.alg,
    granted: (granted ?? []).map((s) => printable(s, 100)),
    scopeInResponse: typeof response?.scope === 'string',
  };
}

/** `error` and `error_description` of an RFC 6749 §5.2 error response, printable and capped. */
function oauthRefusal(body: Record<string, unknown> | undefined): { error?: string; text: string } | undefined {
  const error = typeof body?.error === 'string' ? printable(body.error, 64) : undefined;
  const description = typeof body?.error_description === 'string' ? printable(body.error_description) : undefined;
  if (!error && !description) return undefined;
  return { ...(error ? { error } : {}), text: [error, description ? `"${description}"` : undefined].filter(Boolean).join(' ') };
}

function tokenAdvice(error: string | undefined, err: unknown, reg: { clientId: string; tokenUrl: string; kid: string; alg: SmartAlg }): string {
  if (err instanceof OutboundAuthError && err.failure !== 'http') return `Check that this host can reach fhir.tokenUrl ${reg.tokenUrl}.`;
  switch (error) {
    case 'invalid_client':
      return `The EHR does not accept our client assertion: check that client ${reg.clientId} is registered there with our JWK Set URL ({PUBLIC_URL}/.well-known/client-jwks.json, which publishes kid ${reg.kid}, ${reg.alg}), and that fhir.tokenUrl is exactly the EHR's token URL (it is the assertion's audience).`;
    case 'invalid_scope':
      return 'The EHR refuses the scope requested: ask it to allow the scopes of line 4 for this client, or narrow fhir.scope to what it grants.';
    case 'unauthorized_client':
      return `Client ${reg.clientId} may not use the client_credentials grant at the EHR: ask its administrators to enable backend services for it.`;
    case 'unsupported_grant_type':
      return 'The token endpoint does not offer client_credentials: check that fhir.tokenUrl is the SMART Backend Services token endpoint.';
    default:
      return `Check fhir.tokenUrl (${reg.tokenUrl}) and our registration at the EHR (client ${reg.clientId}, kid ${reg.kid}).`;
  }
}

/** Line 4: the scopes granted against what the service needs (outbound-scope.ts). */
export function checkScopes(participant: Participant, requested: readonly string[], token: TokenCheck): CheckLine {
  const title = 'Scopes granted vs needed';
  const settings = { ...(participant.fhir?.profiles ? { profiles: participant.fhir.profiles } : {}) };
  const requestedMissing = missingOutboundScopes(requested, settings);
  if (!token.granted) {
    const observed = requestedMissing.length ? `no token to compare; the requested scope already lacks ${requestedMissing.join(' ')}` : 'no token to compare (line 3)';
    return { id: 'scopes', title, status: 'skipped', observed, ...(requestedMissing.length ? { fix: 'Add the missing scopes to fhir.scope, or remove fhir.scope to request the default.' } : {}) };
  }
  const missing = missingOutboundScopes(token.granted, settings);
  const source = token.scopeInResponse ? 'granted' : 'granted (the token response names no scope: taken as the requested one)';
  if (missing.length === 0) return { id: 'scopes', title, status: 'ok', observed: `${source}: ${token.granted.join(' ')}` };
  const notRequested = missing.filter((m) => requestedMissing.includes(m));
  const fix = notRequested.length
    ? `fhir.scope leaves out ${notRequested.join(' ')}: add them (or remove fhir.scope to request the default), and ask the EHR to grant them to client ${participant.fhir?.clientId ?? ''}.`
    : `Ask the EHR's administrators to grant ${missing.join(' ')} to client ${participant.fhir?.clientId ?? ''}.`;
  return { id: 'scopes', title, status: 'failed', observed: `${source}: ${token.granted.join(' ') || '(none)'}; missing: ${missing.join(' ')}`, fix };
}
