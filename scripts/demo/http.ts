/**
 * The demo's HTTP side: it is a client of the service's public API (SMART Backend Services
 * tokens signed with the EXAMPLE keys in examples/keys/, then plain REST calls), and reads the
 * sandbox EHR over FHIR with a token of its own. Every call has a timeout, so a hung server
 * fails the demo with a message instead of hanging it.
 */
import type { OperationOutcome } from '@medplum/fhirtypes';
import type { JWK } from 'jose';
import { getAccessToken, postTokenRequest, signClientAssertion, CLIENT_ASSERTION_TYPE } from '../../test/support/tokens.ts';

/** Marks the demo's own requests to the sandbox EHR, so the EHR call log can leave them out. */
export const DEMO_USER_AGENT = 'second-opinion-demo';

const CALL_TIMEOUT_MS = 30_000;

/** A failure the demo explains: what went wrong, and optionally the state things were left in. */
export class DemoError extends Error {
  readonly state?: string;
  constructor(message: string, state?: string) {
    super(message);
    this.name = 'DemoError';
    if (state !== undefined) this.state = state;
  }
}

export interface Reply<T> {
  status: number;
  body: T;
  headers: Headers;
}

/** The text of an OperationOutcome (or whatever JSON came back), for error messages. */
export function outcomeText(body: unknown): string {
  const oo = body as OperationOutcome | undefined;
  if (oo?.resourceType === 'OperationOutcome') {
    return (oo.issue ?? []).map((i) => `${i.code}: ${i.diagnostics ?? i.details?.text ?? ''}${i.expression?.length ? ` (${i.expression.join(', ')})` : ''}`).join('; ');
  }
  const text = JSON.stringify(body);
  return text === undefined ? '(no body)' : text.slice(0, 300);
}

async function request<T>(url: string, init: RequestInit): Promise<Reply<T>> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  } catch (err) {
    throw new DemoError(`${init.method ?? 'GET'} ${url} failed: ${(err as Error).message}`);
  }
  const text = await res.text();
  let body: unknown = text;
  if (text && /json/.test(res.headers.get('content-type') ?? '')) body = JSON.parse(text);
  else if (!text) body = undefined;
  return { status: res.status, body: body as T, headers: res.headers };
}

/**
 * The service as its participants call it: one access token per participant (obtained once;
 * tokens live 300 s, longer than the demo), then `call(participant, method, path, body)`.
 */
export class ServiceClient {
  readonly url: string;
  private readonly tokens = new Map<string, string>();
  private readonly clientIds: Record<string, string>;

  constructor(url: string, clientIds: Record<string, string>) {
    this.url = url;
    this.clientIds = clientIds;
  }

  /** Gets a token for each participant (client assertion -> POST /auth/token). */
  async authenticate(): Promise<void> {
    for (const [participant, clientId] of Object.entries(this.clientIds)) {
      try {
        this.tokens.set(participant, await getAccessToken(this.url, clientId));
      } catch (err) {
        throw new DemoError(`could not get a token for ${clientId}: ${(err as Error).message}`);
      }
    }
  }

  call<T>(participant: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
    const token = this.tokens.get(participant);
    if (!token) throw new DemoError(`no token for ${participant}`);
    return request<T>(`${this.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  }

  /** Like `call`, but any status other than `expected` fails the demo with the OperationOutcome's text. */
  async expect<T>(expected: number, participant: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
    const reply = await this.call<T>(participant, method, path, body, headers);
    if (reply.status !== expected) throw new DemoError(`${method} ${path} as ${participant}: expected HTTP ${expected}, got ${reply.status}: ${outcomeText(reply.body)}`);
    return reply;
  }
}

/**
 * Reads the sandbox EHR over FHIR as a client of its own (`demo-viewer`, registered with the
 * sandbox at start-up), the way anyone at the referring hospital would look.
 */
export class EhrClient {
  readonly baseUrl: string;
  private readonly tokenUrl: string;
  private readonly clientId: string;
  private readonly privateJwk: JWK;
  private token?: string;

  constructor(opts: { baseUrl: string; tokenUrl: string; clientId: string; privateJwk: JWK }) {
    this.baseUrl = opts.baseUrl;
    this.tokenUrl = opts.tokenUrl;
    this.clientId = opts.clientId;
    this.privateJwk = opts.privateJwk;
  }

  private async accessToken(): Promise<string> {
    if (this.token) return this.token;
    const assertion = await signClientAssertion({ clientId: this.clientId, privateJwk: this.privateJwk, tokenUrl: this.tokenUrl });
    const origin = this.tokenUrl.replace(/\/auth\/token$/, '');
    const { status, body } = await postTokenRequest(origin, { grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion });
    if (status !== 200 || typeof body.access_token !== 'string') throw new DemoError(`the sandbox EHR refused the demo's token request: HTTP ${status} ${String(body.error)}`);
    this.token = body.access_token;
    return this.token;
  }

  /** GET `{baseUrl}/{path}`; anything but 200 fails the demo. */
  async get<T>(path: string): Promise<T> {
    const reply = await request<T>(`${this.baseUrl}/${path}`, {
      headers: { authorization: `Bearer ${await this.accessToken()}`, accept: 'application/fhir+json', 'user-agent': DEMO_USER_AGENT },
    });
    if (reply.status !== 200) throw new DemoError(`GET ${this.baseUrl}/${path} on the sandbox EHR: HTTP ${reply.status}: ${outcomeText(reply.body)}`);
    return reply.body;
  }
}

/**
 * Polls `probe` until it returns a value, at most `timeoutMs`. On timeout the demo fails with
 * `what` and the state `describeState` reports (so the reader sees where things got stuck).
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, opts: { timeoutMs: number; describeState: () => Promise<string> }): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      let state: string;
      try {
        state = await opts.describeState();
      } catch (err) {
        state = `(could not read the state: ${(err as Error).message})`;
      }
      throw new DemoError(`timed out after ${Math.round(opts.timeoutMs / 100) / 10} s waiting for ${what}`, state);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
