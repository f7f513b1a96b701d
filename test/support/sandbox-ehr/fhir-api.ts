/**
 * The sandbox EHR's FHIR REST API: a plain request (method, path under the FHIR base, headers,
 * body) is turned into a fhir-router `FhirRequest` against a MemoryRepository, the way Medplum's
 * server does it (packages/server/src/fhir/routes.ts), plus what the router lacks: a real
 * `/metadata`, `patient=<bare id>` searches, paging links, raw Binary downloads, and storage
 * links signed afresh on every read (storage.ts).
 */
import { getStatus, normalizeOperationOutcome, notFound } from '@medplum/core';
import { FhirRouter, type FhirRepository, type HttpMethod } from '@medplum/fhir-router';
import type { Binary, Bundle, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { IncomingHttpHeaders } from 'node:http';
import { capabilityStatement, smartConfiguration } from './capability.ts';
import type { Blob } from './seed.ts';

/** The HTTP reply the server writes. `attachment` marks raw bytes (byte faults apply to them). */
export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  body: Buffer | string;
  attachment?: boolean;
}

/** A request as the FHIR API sees it: `path` is below the FHIR base, with its query. */
export interface ApiRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
}

export interface FhirApiOptions {
  repo: FhirRepository;
  blobs: Map<string, Blob>;
  baseUrl: () => string;
  tokenUrl: () => string;
  /** Page size of searches that give no `_count` (real EHRs page by default); default 50. */
  defaultPageSize?: number;
  /** Signs the storage links of a reply (in place), see storage.ts; default: none. */
  presign?: <T>(value: T) => T;
}

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

/** A FHIR JSON reply. */
export function fhirJson(status: number, resource: Resource | Record<string, unknown>, headers: Record<string, string> = {}): HttpReply {
  return { status, headers: { 'content-type': FHIR_JSON, ...headers }, body: JSON.stringify(resource) };
}

/** An OperationOutcome reply with the status the outcome implies (or `status`). */
export function outcomeReply(outcome: OperationOutcome, status = getStatus(outcome)): HttpReply {
  return fhirJson(status, outcome);
}

/** `patient=<id>` → `patient=Patient/<id>`: fhir-router matches only the typed form. */
export function rewritePatientParam(query: URLSearchParams): void {
  const values = query.getAll('patient');
  if (!values.some((v) => /^[A-Za-z0-9\-.]{1,64}$/.test(v))) return;
  query.delete('patient');
  for (const v of values) query.append('patient', /^[A-Za-z0-9\-.]{1,64}$/.test(v) ? `Patient/${v}` : v);
}

const TYPED_PATIENTS = /^Patient\/[A-Za-z0-9\-.]{1,64}(,Patient\/[A-Za-z0-9\-.]{1,64})*$/;

/**
 * `DocumentReference?patient=Patient/<id>` → `subject=Patient/<id>`, for the router only (the
 * paging links keep the client's parameters). Same matches: R4 defines this `patient` as
 * `DocumentReference.subject.where(resolve() is Patient)` and the value is a Patient reference.
 * fhir-router evaluates that `resolve()` for every stored document (~1.5 ms each), so 1,000
 * bulk documents made every page take ~1.5 s; `subject` takes ~0.06 s.
 */
export function patientAsSubject(type: string, query: URLSearchParams): URLSearchParams {
  const values = query.getAll('patient');
  if (type !== 'DocumentReference' || values.length === 0 || query.has('subject') || !values.every((v) => TYPED_PATIENTS.test(v))) return query;
  const rewritten = new URLSearchParams(query);
  rewritten.delete('patient');
  for (const v of values) rewritten.append('subject', v);
  return rewritten;
}

function wantsFhirJson(accept: string | undefined): boolean {
  return !!accept && /application\/(fhir\+)?json/.test(accept);
}

/** Creates the handler of every request under `/fhir/R4`. */
export function createFhirApi(opts: FhirApiOptions): (req: ApiRequest) => Promise<HttpReply> {
  const router = new FhirRouter();
  const pageSize = opts.defaultPageSize ?? 50;

  async function binary(id: string, accept: string | undefined): Promise<HttpReply> {
    const blob = opts.blobs.get(id);
    let resource: Binary;
    try {
      resource = await opts.repo.readResource<Binary>('Binary', id);
    } catch (err) {
      return outcomeReply(normalizeOperationOutcome(err));
    }
    const bytes = blob?.bytes ?? Buffer.from(resource.data ?? '', 'base64');
    const contentType = blob?.contentType ?? resource.contentType ?? 'application/octet-stream';
    if (wantsFhirJson(accept)) return fhirJson(200, { ...resource, contentType, data: bytes.toString('base64') });
    return { status: 200, headers: { 'content-type': contentType, etag: `W/"${resource.meta?.versionId ?? '1'}"` }, body: bytes, attachment: true };
  }

  /** Adds `self` and `next` links (offset paging) that fhir-router's search bundles lack. */
  function addPagingLinks(bundle: Bundle, type: string, query: URLSearchParams): void {
    const count = Number(query.get('_count') ?? pageSize);
    const offset = Number(query.get('_offset') ?? 0);
    const link = (o: number): string => {
      const q = new URLSearchParams(query);
      q.set('_count', String(count));
      q.set('_offset', String(o));
      return `${opts.baseUrl()}/${type}?${q.toString()}`;
    };
    bundle.link = [{ relation: 'self', url: link(offset) }];
    if (count > 0 && bundle.total !== undefined && offset + count < bundle.total) bundle.link.push({ relation: 'next', url: link(offset + count) });
  }

  return async function handle(req: ApiRequest): Promise<HttpReply> {
    const url = new URL(req.path, 'http://sandbox.invalid');
    const segments = url.pathname.split('/').filter(Boolean);
    const [first, second] = segments;
    if (req.method === 'GET' && first === 'metadata' && segments.length === 1) return fhirJson(200, capabilityStatement(opts.baseUrl(), opts.tokenUrl()));
    if (req.method === 'GET' && first === '.well-known' && second === 'smart-configuration') {
      return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(smartConfiguration(opts.tokenUrl())) };
    }
    if (req.method === 'GET' && first === 'Binary' && second && segments.length === 2) return binary(second, req.headers.accept);

    const isSearch = req.method === 'GET' && segments.length === 1 && /^[A-Z][A-Za-z]+$/.test(first ?? '');
    if (isSearch) {
      rewritePatientParam(url.searchParams);
      if (!url.searchParams.has('_count')) url.searchParams.set('_count', String(pageSize));
    }
    const search = (isSearch ? patientAsSubject(first!, url.searchParams) : url.searchParams).toString();
    const [outcome, resource] = await router.handleRequest(
      {
        method: req.method as HttpMethod,
        url: `${url.pathname}${search ? `?${search}` : ''}`,
        pathname: '',
        params: {},
        query: {},
        body: req.body,
        headers: req.headers,
      },
      opts.repo,
    );
    const status = getStatus(outcome);
    if (!resource) return outcomeReply(outcome.issue?.length ? outcome : notFound, status);
    if (isSearch && resource.resourceType === 'Bundle') addPagingLinks(resource, first!, url.searchParams);
    const headers: Record<string, string> = {};
    if (resource.meta?.versionId) headers.etag = `W/"${resource.meta.versionId}"`;
    if (resource.meta?.lastUpdated) headers['last-modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201 && resource.id) headers.location = `${opts.baseUrl()}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId ?? '1'}`;
    return fhirJson(status, req.method === 'GET' && opts.presign ? opts.presign(structuredClone(resource)) : resource, headers);
  };
}
