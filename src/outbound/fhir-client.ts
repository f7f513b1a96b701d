import { MedplumClient } from '@medplum/core';
import type { Bundle, Resource, ResourceType } from '@medplum/fhirtypes';
import { fetchAttachment, type AttachmentResponse, type FetchAttachmentOptions } from './attachment-fetch.ts';
import { type CallObserver, createFhirFetch } from './fhir-http.ts';
import { OutboundUrlError, stripQuery } from './outbound-errors.ts';
import type { TokenSource } from './smart-token-source.ts';

/** One participant's FHIR server as the service calls it. */
export interface FhirEndpoint {
  /** FHIR base URL, e.g. `https://ehr.example/fhir/R4`. */
  baseUrl: string;
  /** No token source: calls go without Authorization (sandboxes). */
  tokenSource?: TokenSource;
  /** Per call: the whole JSON call; for attachments, until headers and between body chunks. */
  timeoutMs: number;
  /** Told whether each call got an answer (outage-notices.ts). */
  observer?: CallObserver;
}

export type SearchParams = Record<string, string | number | string[]> | URLSearchParams;

/** The calls the record-assembly and delivery jobs make to a participant's FHIR server. */
export interface FhirClient {
  readonly baseUrl: string;
  read<T extends Resource = Resource>(type: ResourceType, id: string): Promise<T>;
  /** `Type/id`, a URL relative to the base, or an absolute URL on the SAME origin as the base. */
  readReference<T extends Resource = Resource>(reference: string): Promise<T>;
  /** Every match, following `next` links (at most `maxPages` pages, default 100). */
  search<T extends Resource = Resource>(type: ResourceType, params?: SearchParams, options?: { maxPages?: number }): Promise<T[]>;
  /** The matches page by page, as each page arrives (the next page is read when the caller asks for it). */
  searchPages<T extends Resource = Resource>(type: ResourceType, params?: SearchParams, options?: { maxPages?: number }): AsyncGenerator<T[]>;
  /** The first match, or undefined. */
  searchOne<T extends Resource = Resource>(type: ResourceType, params?: SearchParams): Promise<T | undefined>;
  /** Conditional create (`If-None-Exist: query`): the existing match, or the new resource. */
  createIfNoneExist<T extends Resource>(resource: T, query: string): Promise<T>;
  /**
   * POSTs a `transaction` Bundle to the server's base and returns its `transaction-response`
   * (FHIR R4 http.html#transaction): all entries succeed or none does.
   */
  transaction(bundle: Bundle): Promise<Bundle>;
  /** Streams an attachment; see {@link fetchAttachment}. */
  fetchAttachment(url: string, options: FetchAttachmentOptions): Promise<AttachmentResponse>;
}

/** Default page cap for {@link FhirClient.search}: 100 pages is 100 × the server's page size. */
export const DEFAULT_MAX_PAGES = 100;

/**
 * Builds the outbound FHIR client for one endpoint: MedplumClient (URL building, JSON, conditional
 * create) over {@link createFhirFetch} (bearer from the token source on every call, one retry on
 * 401 with a fresh token, a timeout on every call, {@link OutboundHttpError} on failure).
 *
 * Paging is done here rather than with MedplumClient's `searchResourcePages`, which rebuilds each
 * page URL from the resource type and forces `_count=1000`; servers (HAPI's `_getpages`) need
 * their `next` link followed verbatim. `deps.fetch` replaces global fetch for the FHIR calls
 * (tests); by default global fetch is looked up on each call so msw can intercept it.
 * Attachments are downloaded over `node:http` (attachment-http.ts), which msw intercepts too.
 */
export function createFhirClient(endpoint: FhirEndpoint, deps: { fetch?: typeof globalThis.fetch } = {}): FhirClient {
  const baseUrl = endpoint.baseUrl.replace(/\/+$/, '');
  const base = new URL(`${baseUrl}/`);
  const fhirFetch = createFhirFetch({ ...endpoint, baseUrl, ...(deps.fetch ? { fetch: deps.fetch } : {}) });
  const medplum = new MedplumClient({
    baseUrl: base.origin + '/',
    fhirUrlPath: base.pathname.replace(/^\/+|\/+$/g, ''),
    fetch: (url: string, init: RequestInit) => fhirFetch(url, init),
    maxRetries: 0,
    cacheTime: 0,
    extendedMode: false,
    logLevel: 'none',
  });

  /** Resolves a reference or next link and checks it stays on the FHIR server's origin. */
  const resolveOnBase = (ref: string): string => {
    const url = new URL(ref, base);
    if (url.origin !== base.origin) {
      throw new OutboundUrlError(`Refusing to read ${stripQuery(url.toString())}: not on the FHIR server's origin ${base.origin}`);
    }
    return url.toString();
  };

  const client: FhirClient = {
    baseUrl,
    async read<T extends Resource>(type: ResourceType, id: string) {
      return (await medplum.readResource(type, id)) as unknown as T;
    },
    async readReference<T extends Resource>(reference: string) {
      if (reference.startsWith('#')) throw new OutboundUrlError('Contained references are resolved inside the resource, not fetched');
      return (await medplum.get(resolveOnBase(reference))) as T;
    },
    async search<T extends Resource>(type: ResourceType, params: SearchParams = {}, options: { maxPages?: number } = {}) {
      const out: T[] = [];
      for await (const page of client.searchPages<T>(type, params, options)) out.push(...page);
      return out;
    },
    async *searchPages<T extends Resource>(type: ResourceType, params: SearchParams = {}, options: { maxPages?: number } = {}) {
      const maxPages = options.maxPages ?? DEFAULT_MAX_PAGES;
      let bundle: Bundle = await medplum.search(type, toQuery(params));
      for (let page = 1; ; page++) {
        // Skip `_include`d resources and OperationOutcome warnings: only matches are results.
        yield (bundle.entry ?? []).filter((e) => e.resource && e.search?.mode !== 'include' && e.search?.mode !== 'outcome').map((e) => e.resource as T);
        const next = bundle.link?.find((l) => l.relation === 'next')?.url;
        if (!next) return;
        if (page >= maxPages) throw new OutboundUrlError(`Search ${type} has more than ${maxPages} pages; narrow it or raise maxPages`);
        bundle = (await medplum.get(resolveOnBase(next))) as Bundle;
      }
    },
    async searchOne<T extends Resource>(type: ResourceType, params: SearchParams = {}) {
      const query = toQuery(params);
      if (!query.has('_count')) query.set('_count', '1');
      const bundle: Bundle = await medplum.search(type, query);
      const match = bundle.entry?.find((e) => e.resource && e.search?.mode !== 'include' && e.search?.mode !== 'outcome');
      return match?.resource as T | undefined;
    },
    async createIfNoneExist<T extends Resource>(resource: T, query: string) {
      return (await medplum.createResourceIfNoneExist(resource, query)) as T;
    },
    async transaction(bundle: Bundle) {
      return (await medplum.executeBatch(bundle)) as Bundle;
    },
    fetchAttachment(url, options) {
      return fetchAttachment(url, { ...options, baseUrl, timeoutMs: options.timeoutMs ?? endpoint.timeoutMs, ...(endpoint.tokenSource ? { tokenSource: endpoint.tokenSource } : {}) });
    },
  };
  return client;
}

function toQuery(params: SearchParams): URLSearchParams {
  if (params instanceof URLSearchParams) return new URLSearchParams(params);
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) query.append(key, String(v));
  }
  return query;
}
