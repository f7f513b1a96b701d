/**
 * The transaction Bundle that pushes one record-set version to a consulting clinic's own FHIR
 * server, and what its `transaction-response` says was created. Pure: the
 * resources, the clinic's server and what an earlier push created there come in.
 *
 * What is pushed: a copy of every record of the set (DocumentReference, DiagnosticReport,
 * ImagingStudy), a copy of the referral (ServiceRequest) and of the clinic's Task, whose
 * `focus` is that ServiceRequest and whose `input` lists the records. Attachments stay links to
 * this service's Binary URLs with their `size` and SHA-1 `hash`: the clinic fetches them with
 * its own token (each read audited here), the bytes are never base64-inflated into one JSON
 * body held in memory, and the clinic can verify what it fetched.
 *
 * Idempotency: each entry is a conditional create (`ifNoneExist`) on an identifier this
 * service owns (the copy's, the referral's and the Task's id here), so a retry after a lost
 * response creates nothing twice. A later version of the record set has copies with new ids:
 * its records are created as new resources (a DocumentReference naming the one it `replaces`
 * when the same source record was pushed before), and the Task pushed earlier is updated with
 * `If-Match` on the version the clinic's server has now, so its history keeps the earlier
 * `input` and nothing is overwritten silently.
 *
 * References: only what exists on the clinic's server or logical ones (outbound/ehr-references.ts):
 * the patient and the referrer's clinicians by identifier and name, participants by identifier.
 */
import type { Bundle, BundleEntry, DocumentReference, Identifier, Reference, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import { SYSTEM } from '../fhir/constants.ts';
import { referencesForEhr, type EhrReferenceContext } from '../outbound/ehr-references.ts';
import type { RecordResource } from '../records/record-set-bundle.ts';
import type { PushedResources } from '../store/schema.ts';

export interface PushTarget extends EhrReferenceContext {
  /** Network file `fhir.profiles`: `meta.profile` is kept only with `keep`. */
  profiles: 'keep' | 'omit';
}

export interface PushBundleInput {
  /** The copies in the record-set Bundle, as this service serves them. */
  records: readonly RecordResource[];
  serviceRequest: ServiceRequest;
  task: Task;
  /**
   * References that name the referral's patient (relative as stored here, absolute on the
   * referring EHR): they become a logical reference carrying `patientIdentifier`.
   */
  patientReferences: ReadonlySet<string>;
  patientIdentifier?: Identifier;
  /** What the previous push of this Task created on the clinic's server, and its Task as the server has it now. */
  previous?: { remote: PushedResources; task: Task };
}

const conditional = (system: string, value: string) => `identifier=${encodeURIComponent(system)}|${encodeURIComponent(value)}`;

/** The transaction Bundle (see the module comment). Entry order: records, ServiceRequest, Task. */
export function buildPushBundle(input: PushBundleInput, target: PushTarget): Bundle {
  const fit = <T extends Resource>(resource: T): T => referencesForEhr(withPatientIdentifier(resource, input), target);
  const serviceRequestUrl = `urn:uuid:${input.serviceRequest.id}`;

  const recordEntries: BundleEntry[] = input.records.map((record) => {
    const copy = fit(stripOurs(record, target)) as RecordResource;
    copy.identifier = [...(copy.identifier ?? []), { system: SYSTEM.recordCopyId, value: record.id as string }] as never;
    const replaced = record.meta?.source ? input.previous?.remote.records[record.meta.source] : undefined;
    if (copy.resourceType === 'DocumentReference' && replaced?.startsWith('DocumentReference/')) {
      (copy as DocumentReference).relatesTo = [...((copy as DocumentReference).relatesTo ?? []), { code: 'replaces', target: { reference: replaced } }];
    }
    return {
      fullUrl: `urn:uuid:${record.id}`,
      resource: copy,
      request: { method: 'POST', url: record.resourceType, ifNoneExist: conditional(SYSTEM.recordCopyId, record.id as string) },
    };
  });

  const { supportingInfo: _records, ...serviceRequest } = fit(stripOurs(input.serviceRequest, target));
  serviceRequest.identifier = [...(serviceRequest.identifier ?? []), { system: SYSTEM.serviceRequestId, value: input.serviceRequest.id as string }];
  const serviceRequestEntry: BundleEntry = {
    fullUrl: serviceRequestUrl,
    resource: serviceRequest,
    request: { method: 'POST', url: 'ServiceRequest', ifNoneExist: conditional(SYSTEM.serviceRequestId, input.serviceRequest.id as string) },
  };

  const taskInput = input.records.map((r) => ({ type: { text: 'record' }, valueReference: { reference: `urn:uuid:${r.id}`, type: r.resourceType } as Reference }));
  let taskEntry: BundleEntry;
  if (input.previous) {
    // The clinic's Task as it is now (the clinic may have worked on it), with the new records as its input.
    const current = input.previous.task;
    const [type, id] = input.previous.remote.task.split('/');
    taskEntry = {
      fullUrl: `${target.ehrBaseUrl}/${type}/${id}`,
      resource: { ...current, input: taskInput },
      request: { method: 'PUT', url: input.previous.remote.task, ifMatch: `W/"${current.meta?.versionId ?? ''}"` },
    };
  } else {
    const copy = fit(stripOurs(input.task, target));
    copy.identifier = [...(copy.identifier ?? []), { system: SYSTEM.taskId, value: input.task.id as string }];
    copy.focus = { reference: serviceRequestUrl, type: 'ServiceRequest' } as Reference;
    copy.input = taskInput;
    taskEntry = {
      fullUrl: `urn:uuid:${input.task.id}`,
      resource: copy,
      request: { method: 'POST', url: 'Task', ifNoneExist: conditional(SYSTEM.taskId, input.task.id as string) },
    };
  }
  return { resourceType: 'Bundle', type: 'transaction', entry: [...recordEntries, serviceRequestEntry, taskEntry] };
}

/** No id, version or timestamps of ours; `meta.profile` only with `profiles: keep`; `meta.source` (where a copy came from) kept. */
function stripOurs<T extends Resource>(resource: T, target: PushTarget): T {
  const { id: _id, meta, ...rest } = structuredClone(resource);
  const kept = { ...(meta?.source ? { source: meta.source } : {}), ...(target.profiles === 'keep' && meta?.profile ? { profile: meta.profile } : {}) };
  return (Object.keys(kept).length > 0 ? { ...rest, meta: kept } : rest) as T;
}

/** Every reference naming the referral's patient gets the patient's identifier, so it stays meaningful once logical. */
function withPatientIdentifier<T extends Resource>(resource: T, input: PushBundleInput): T {
  if (!input.patientIdentifier) return resource;
  const walk = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(walk);
    if (typeof value !== 'object' || value === null) return value;
    const record = value as Record<string, unknown>;
    if (typeof record.reference === 'string' && input.patientReferences.has(record.reference) && record.identifier === undefined) {
      return { ...record, identifier: { ...input.patientIdentifier } };
    }
    return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, k === 'contained' ? v : walk(v)]));
  };
  return walk(resource) as T;
}

/**
 * What the clinic's server created (or found), from its `transaction-response`: entries answer
 * in the order of the request (FHIR R4 http.html#transaction-response), as `Type/id` with the
 * version where the server says it.
 */
export function readPushResponse(request: Bundle, response: Bundle, records: readonly RecordResource[]): PushedResources {
  const created = (response.entry ?? []).map((e) => {
    const fromLocation = e.response?.location ? /([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?\/?$/.exec(e.response.location) : null;
    const type = fromLocation?.[1] ?? e.resource?.resourceType;
    const id = fromLocation?.[2] ?? e.resource?.id;
    const version = fromLocation?.[3] ?? e.resource?.meta?.versionId;
    return type && id ? { reference: `${type}/${id}`, ...(version ? { version } : {}) } : undefined;
  });
  const count = request.entry?.length ?? 0;
  const named = created.filter((c): c is { reference: string; version?: string } => c !== undefined);
  if (created.length !== count || named.length !== count || count !== records.length + 2) {
    throw new Error(`The transaction-response names ${named.length} of the ${count} resources pushed`);
  }
  const bySource: Record<string, string> = {};
  records.forEach((record, i) => {
    if (record.meta?.source) bySource[record.meta.source] = (named[i] as { reference: string }).reference;
  });
  const task = named[count - 1] as { reference: string; version?: string };
  return { serviceRequest: (named[count - 2] as { reference: string }).reference, task: task.reference, ...(task.version ? { taskVersion: task.version } : {}), records: bySource };
}
