import type { OperationOutcome } from '@medplum/fhirtypes';
import { OutboundHttpError, OutboundUrlError, retryAtFrom, stripQuery, toTransportError } from './outbound-errors.ts';
import type { TokenSource } from './smart-token-source.ts';

/**
 * The HTTP layer under the FHIR client: bearer, timeout, one retry on 401, typed errors.
 * A 401 that survives the retry with a fresh token is a permanent failure (outbound-errors.ts
 * `classifyFailure`): the EHR does not accept this client, and retrying later will not change it.
 *
 * MedplumClient is given this as its `fetch`, so every call it makes (read, search, conditional
 * create) passes here. MedplumClient's own retries are switched off (`maxRetries: 0`): retrying
 * with backoff is the durable job's business, and its 401 handling would try a refresh-token
 * login we do not have.
 */

export interface FhirHttpOptions {
  /** The FHIR base URL; only URLs on its origin are called from here (and get the bearer). */
  baseUrl: string;
  tokenSource?: TokenSource;
  timeoutMs: number;
  fetch?: typeof globalThis.fetch;
  /** Told of every call's end: an answer (any status) or a failure (outage-notices.ts). */
  observer?: CallObserver;
}

export interface CallObserver {
  answered(): void;
  failed(err: unknown): void;
}

export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * Builds the fetch MedplumClient calls. Success bodies are read here, inside the timeout, and
 * handed back buffered, so a server that stalls mid-body fails as a typed timeout rather than a
 * raw AbortError inside MedplumClient. Non-2xx responses become {@link OutboundHttpError}.
 */
export function createFhirFetch(options: FhirHttpOptions): FetchLike {
  const origin = new URL(options.baseUrl).origin;
  const fetchFn: FetchLike = options.fetch ?? ((url, init) => globalThis.fetch(url, init));

  return async (url, init = {}) => {
    const method = (init.method ?? 'GET').toUpperCase();
    if (new URL(url).origin !== origin) {
      throw new OutboundUrlError(`Refusing to call ${stripQuery(url)}: not on the FHIR server's origin ${origin}`);
    }
    for (let attempt = 0; ; attempt++) {
      let token: string | undefined;
      try {
        token = await options.tokenSource?.getToken();
      } catch (err) {
        options.observer?.failed(err);
        throw err;
      }
      const headers = new Headers(init.headers);
      if (token) headers.set('authorization', `Bearer ${token}`);
      const signal = init.signal ? AbortSignal.any([init.signal, AbortSignal.timeout(options.timeoutMs)]) : AbortSignal.timeout(options.timeoutMs);
      let response: Response;
      let body: ArrayBuffer | null;
      try {
        try {
          response = await fetchFn(url, { ...init, method, headers, signal, redirect: 'manual' });
        } catch (err) {
          // A call the caller gave up on (its own signal) says nothing about the server.
          if (!init.signal?.aborted) options.observer?.failed(toTransportError(err, method, url));
          throw err;
        }
        options.observer?.answered();
        if (response.status === 401 && token && attempt === 0) {
          await response.body?.cancel().catch(() => undefined);
          options.tokenSource?.invalidate(token);
          continue;
        }
        if (response.status < 200 || response.status >= 300) throw await errorFromResponse(response, method, url);
        body = NULL_BODY_STATUSES.has(response.status) ? null : await response.arrayBuffer();
      } catch (err) {
        throw toTransportError(err, method, url);
      }
      return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
    }
  };
}

/**
 * Turns a non-2xx response into an {@link OutboundHttpError}, keeping an OperationOutcome body
 * when there is one (read at most 1 MB; anything else is discarded unread) and, on a 429 or 503,
 * the time its `Retry-After` names.
 */
export async function errorFromResponse(response: Response, method: string, url: string): Promise<OutboundHttpError> {
  let outcome: OperationOutcome | undefined;
  const type = response.headers.get('content-type') ?? '';
  const length = Number(response.headers.get('content-length') ?? '0');
  if (/json/i.test(type) && length <= 1_000_000) {
    try {
      const json = (await response.json()) as { resourceType?: unknown };
      if (json?.resourceType === 'OperationOutcome') outcome = json as OperationOutcome;
    } catch {
      // Not JSON after all: the status alone is the error.
    }
  } else {
    await response.body?.cancel().catch(() => undefined);
  }
  const retryAt = retryAtFrom(response.status, response.headers.get('retry-after'));
  return new OutboundHttpError({ status: response.status, failure: 'http', method, url, ...(outcome ? { outcome } : {}), ...(retryAt ? { retryAt } : {}) });
}
