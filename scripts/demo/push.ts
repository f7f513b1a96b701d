/**
 * The record-set push in the demo: Lakeside's network entry says `recordSet: push`,
 * so each version of its record set goes to its own FHIR server (a second sandbox instance) as one
 * transaction. The demo shows the Bundle the service posted (from that server's request log),
 * what the server holds afterwards (read over FHIR by the service's identifiers, as the clinic's
 * staff would), and that the retry after a lost answer created nothing twice.
 */
import type { Bundle, DocumentReference, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import { SYSTEM } from '../../src/fhir/constants.ts';
import type { PushView } from '../../src/record-push/push-admin.ts';
import type { RecordedRequest } from '../../test/support/sandbox-ehr/server.ts';
import { plural } from './changes.ts';
import type { ClinicServer } from './environment.ts';
import { DemoError, type ServiceClient, waitFor } from './http.ts';
import { fact, out } from './print.ts';
import { AUDITOR, SHORT_NAMES } from './scenario.ts';

export interface PushContext {
  api: ServiceClient;
  clinic: ClinicServer;
  waitMs: number;
}

const INDENT = ' '.repeat(20);
const TRANSACTION_PATH = /^\/fhir\/R4\/?$/;

/** The push of record set `bundleId` to the clinic, once it has gone out (the operator's view: `GET /admin/record-pushes`). */
async function pushed(ctx: PushContext, taskId: string, bundleId: string): Promise<PushView> {
  const find = async () => {
    const list = (await ctx.api.expect<{ items: PushView[] }>(200, AUDITOR, 'GET', '/admin/record-pushes?_count=100')).body;
    return list.items.find((p) => p.taskId === taskId && p.bundleId === bundleId);
  };
  const push = await waitFor(`the push of Bundle/${bundleId} to ${SHORT_NAMES[ctx.clinic.participant]}'s FHIR server`, async () => {
    const p = await find();
    return p && p.status !== 'pending' ? p : undefined;
  }, { timeoutMs: ctx.waitMs, describeState: async () => JSON.stringify(await find()) });
  if (push.status !== 'pushed' || !push.remote) throw new DemoError(`the push of Bundle/${bundleId} ended ${push.status} after ${push.attempts} attempt(s): ${push.lastError ?? ''}`);
  return push;
}

/** The transaction POSTs the clinic's server received from the service (its request log). */
function transactionsPosted(ctx: PushContext): (RecordedRequest & { bundle: Bundle })[] {
  return ctx.clinic.sandbox.requests
    .filter((r) => r.method === 'POST' && TRANSACTION_PATH.test(r.path) && r.body !== undefined)
    .map((r) => ({ ...r, bundle: JSON.parse(r.body as string) as Bundle }));
}

/** `identifier=<system>|<value>` with the system shortened to its last segment, for reading. */
function shortCondition(condition: string | undefined): string {
  if (!condition) return '';
  const [system, value] = decodeURIComponent(condition.replace(/^identifier=/, '')).split('|');
  return `identifier=…/${system?.split('/').at(-1)}|${value}`;
}

/** The one resource of `type` on the clinic's server carrying our identifier `system|value`; more or none fails the demo. */
async function onClinic<T extends Resource>(ctx: PushContext, type: T['resourceType'], system: string, value: string): Promise<T> {
  const bundle = await ctx.clinic.client.get<Bundle<T>>(`${type}?identifier=${encodeURIComponent(`${system}|${value}`)}`);
  const found = (bundle.entry ?? []).map((e) => e.resource).filter((r): r is T => r?.resourceType === type);
  if (found.length !== 1) throw new DemoError(`the clinic's server holds ${found.length} ${type}(s) with identifier ${system}|${value}; expected exactly one`);
  return found[0] as T;
}

const docTitle = (d: DocumentReference) => d.type?.coding?.[0]?.display ?? d.type?.text ?? 'document';

/**
 * Step 4's push: waits for it, prints the transaction Bundle as posted, the lost answer and the
 * retry, and what the clinic's server holds; checks every copy is there exactly once, the Task
 * points at the copies there, and every attachment is a link to this service's Binary URL.
 */
export async function showFirstPush(ctx: PushContext, taskId: string, serviceRequestId: string, bundleId: string, records: readonly Resource[]): Promise<PushView> {
  const clinicName = SHORT_NAMES[ctx.clinic.participant];
  const push = await pushed(ctx, taskId, bundleId);
  fact('push', `${clinicName} takes its record sets on its own FHIR server (network file: recordSet push, fhir ${ctx.clinic.sandbox.baseUrl})`);
  fact('', `the service's outbound client is registered there with "${ctx.clinic.scope}" only`);
  const posts = transactionsPosted(ctx);
  const first = posts[0];
  if (!first) throw new DemoError(`the clinic's server received no transaction for Bundle/${bundleId}`);
  const entries = first.bundle.entry ?? [];
  fact('posted', `POST ${ctx.clinic.sandbox.baseUrl} by the service's push job: Bundle ${first.bundle.type}, ${plural(entries.length, 'entry', 'entries')}, all or nothing:`);
  for (const e of entries) {
    const r = e.resource as Resource;
    let what = '';
    if (r.resourceType === 'DocumentReference') {
      what = docTitle(r as DocumentReference);
    } else if (r.resourceType === 'ServiceRequest') {
      what = `the referral, subject by identifier ${(r as ServiceRequest).subject?.identifier?.value} (no id of ours)`;
    } else if (r.resourceType === 'Task') {
      const t = r as Task;
      what = `focus ${t.focus?.reference?.slice(0, 17)}…, input ${plural(t.input?.length ?? 0, 'record', 'records')} (urn:uuid), owner ${t.owner?.identifier?.value}`;
    }
    out(`${INDENT}${`${e.request?.method} ${e.request?.url}`.padEnd(22)} If-None-Exist ${shortCondition(e.request?.ifNoneExist)}  ${what}`);
  }
  if (ctx.clinic.lostAnswer.hits === 1 && posts.length >= 2) {
    fact('lost answer', "attempt 1: the clinic's server stored the transaction, then the connection dropped before its answer (the demo's fault switch, once)");
    const same = posts[1]?.body === first.body;
    fact('retry', `attempt ${push.attempts}: the job ran again with ${same ? 'the same Bundle, byte for byte' : 'the same entries'} -> HTTP ${posts[1]?.status}; every conditional create found its resource by identifier`);
  }
  fact('operator', `GET /admin/record-pushes as the audit office: ${push.status} after ${push.attempts} attempt(s); there ${push.remote?.serviceRequest}, ${push.remote?.task}, ${plural(Object.keys(push.remote?.records ?? {}).length, 'record', 'records')}`);

  // What the clinic's server holds now, read over FHIR by the identifiers the service owns.
  const sr = await onClinic<ServiceRequest>(ctx, 'ServiceRequest', SYSTEM.serviceRequestId, serviceRequestId);
  const task = await onClinic<Task>(ctx, 'Task', SYSTEM.taskId, taskId);
  const docs = await Promise.all(records.map((r) => onClinic<DocumentReference>(ctx, 'DocumentReference', SYSTEM.recordCopyId, r.id as string)));
  fact('clinic holds', `read over FHIR on ${clinicName}'s server by the service's identifiers (the server's own ids):`);
  out(`${INDENT}ServiceRequest/${sr.id}  ${sr.status}; copy of our ServiceRequest/${serviceRequestId}, ${sr.code?.coding?.[0]?.display ?? ''}`);
  out(`${INDENT}Task/${task.id}  ${task.status}; copy of our Task/${taskId}, focus ${task.focus?.reference}, owner ${task.owner?.display}, input ${plural(task.input?.length ?? 0, 'record', 'records')}`);
  const binaryBase = `${ctx.api.url}/fhir/Binary/`;
  for (const d of docs) {
    const a = d.content[0]?.attachment;
    out(`${INDENT}DocumentReference/${d.id}  ${docTitle(d)} -> ${a?.url} (${a?.contentType}, ${a?.size} bytes, SHA-1 ${a?.hash})`);
  }
  if (task.focus?.reference !== `ServiceRequest/${sr.id}`) throw new DemoError(`the Task on the clinic's server should focus on ServiceRequest/${sr.id}, it names ${task.focus?.reference}`);
  const inputs = (task.input ?? []).map((i) => i.valueReference?.reference);
  if (JSON.stringify(inputs) !== JSON.stringify(docs.map((d) => `DocumentReference/${d.id}`))) throw new DemoError(`the Task on the clinic's server should list its record copies as input, it lists ${inputs.join(', ')}`);
  const elsewhere = docs.flatMap((d) => d.content.map((c) => c.attachment.url)).filter((u) => !u?.startsWith(binaryBase));
  if (elsewhere.length) throw new DemoError(`every attachment should link to ${binaryBase}…, these do not: ${elsewhere.join(', ')}`);
  fact('links', `every attachment links to this service's ${binaryBase}…: the clinic fetches the bytes with its own token (each read audited here) and checks size and hash`);
  fact('counted', `on ${clinicName}'s server: 1 ServiceRequest, 1 Task, ${plural(docs.length, 'DocumentReference', 'DocumentReferences')} carrying our identifiers, each exactly once: the retry created nothing twice`);
  return push;
}

/**
 * Step 5's push of a later version: new copies created (each DocumentReference names the copy it
 * replaces), the Task already there updated with If-Match, its earlier version kept.
 */
export async function showNextPush(ctx: PushContext, taskId: string, bundleId: string, revision: number, previous: PushView): Promise<void> {
  const push = await pushed(ctx, taskId, bundleId);
  const posted = transactionsPosted(ctx).at(-1)?.bundle;
  const taskEntry = posted?.entry?.find((e) => e.resource?.resourceType === 'Task');
  const remoteTask = push.remote?.task as string;
  if (remoteTask !== previous.remote?.task) throw new DemoError(`the new version should update ${previous.remote?.task} on the clinic's server, the push names ${remoteTask}`);
  const history = await ctx.clinic.client.get<Bundle<Task>>(`${remoteTask}/_history`);
  const replacing = (posted?.entry ?? []).filter((e) => (e.resource as DocumentReference | undefined)?.relatesTo?.some((r) => r.code === 'replaces')).length;
  const records = Object.keys(push.remote?.records ?? {}).length;
  if (taskEntry?.request?.method !== 'PUT' || !taskEntry.request.ifMatch) throw new DemoError(`the new version should update ${remoteTask} with PUT and If-Match, the Bundle has ${taskEntry?.request?.method} ${taskEntry?.request?.url}`);
  fact('push', `records revision ${revision} pushed to ${SHORT_NAMES[ctx.clinic.participant]}'s server as one more transaction (attempt ${push.attempts}): ${plural(records, 'new record copy', 'new record copies')}, ${replacing} naming the copy it replaces (relatesTo replaces)`);
  fact('', `PUT ${taskEntry.request.url} with If-Match on the version the server had: ${plural(history.entry?.length ?? 0, 'version', 'versions')} in its history now (the earlier input kept)`);
}
