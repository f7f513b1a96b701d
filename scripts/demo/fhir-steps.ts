/**
 * Steps 10-16 of the demo: a second referral over the service's FHIR doors only. St
 * Olaf's EHR posts a transaction Bundle; Northfield's system subscribes to its Tasks and hears
 * of the new one through an id-only notification, reads it, and works it with FHIR updates
 * (`PUT`/`PATCH /fhir/Task/{id}`), completing it with a contained consult note; the opinion is
 * posted back to the EHR exactly once; the referrer reads the comparison. Each step says what
 * happened, what the receiver got, and which FHIR resources changed.
 */
import type { Bundle, BundleEntry, Communication, DocumentReference, OperationOutcome, ServiceRequest, Subscription, Task } from '@medplum/fhirtypes';
import { OPINION_NOTIFICATION_SYSTEM } from '../../src/delivery/deliver-opinion.ts';
import { SYSTEM } from '../../src/fhir/constants.ts';
import type { Comparison } from '../../src/retrieval/comparison.ts';
import { completedTask, FHIR_CONSULTANT, FHIR_CONSULTANT_ORGANIZATION, FHIR_QUESTION, HISTOPATHOLOGY, OPINION_FHIR, referralTransaction, taskSubscription } from './fhir-scenario.ts';
import { DemoError, outcomeText, type Reply, waitFor } from './http.ts';
import { fact, printComparison, step } from './print.ts';
import { NOTIFICATION_PATH, type ReceivedNotification, type Receiver } from './receiver.ts';
import { REFERRER, SHORT_NAMES } from './scenario.ts';
import { type DemoContext, describeReferral, printBundle, taskState } from './steps.ts';

const FHIR_JSON = 'application/fhir+json';
const JSON_PATCH = 'application/json-patch+json';
const CLINIC = SHORT_NAMES[FHIR_CONSULTANT] as string;

export interface FhirDemoContext extends DemoContext {
  /** Northfield's own system, which its Subscription notifies. */
  receiver: Receiver;
}

/** What the FHIR walk learns as it goes (the referral id lets a failure say where things stand). */
export interface FhirReferral {
  id: string;
  taskId: string;
  subscriptionId: string;
  noteId: string;
}

/** The notifications already printed (by Bundle id). */
const printed = new Set<string>();

function describeNotification(n: ReceivedNotification, serviceUrl: string): string {
  const short = (url?: string) => (url ?? '').replace(`${serviceUrl}/fhir/`, '');
  if (n.type !== 'event-notification') return `${n.type}: Subscription ${n.status}, ${n.eventsSinceStart} event(s) since it started${n.authorization ? ` (with its channel header Authorization: ${n.authorization})` : ''}`;
  const events = n.events.map((e) => `#${e.number}`).join(', ');
  const foci = n.foci.map((f) => `${short(f.fullUrl)} at ${f.etag}${f.hasResource ? ' WITH A RESOURCE' : ''}`).join(', ');
  return `event ${events}: focus ${foci} (id-only: the URL and version, no resource)`;
}

/** Prints what the receiver got since the last call, in event order (events up to number `upTo` when given). */
function printReceived(ctx: FhirDemoContext, upTo = Number.POSITIVE_INFINITY): void {
  const fresh = ctx.receiver.notifications.filter((n) => !printed.has(n.bundleId) && (n.events[0]?.number ?? 0) <= upTo);
  fresh.sort((a, b) => (a.events[0]?.number ?? 0) - (b.events[0]?.number ?? 0));
  for (const n of fresh) {
    printed.add(n.bundleId);
    fact('received', describeNotification(n, ctx.api.url));
  }
}

const eventNumbers = (ctx: FhirDemoContext) => new Set(ctx.receiver.notifications.flatMap((n) => n.events.map((e) => e.number)));
const focusesTask = (n: ReceivedNotification, taskId: string, version?: string) => n.foci.some((f) => f.fullUrl?.endsWith(`/fhir/Task/${taskId}`) && (version === undefined || f.etag === `W/"${version}"`));

/**
 * Waits until the receiver holds the event for Task/`taskId` at `version` and every event
 * numbered before it (notifications are at least once and unordered), then prints them.
 */
async function receivedUpTo(ctx: FhirDemoContext, ref: Partial<FhirReferral>, taskId: string, version: string): Promise<void> {
  const upTo = await waitFor(
    `${CLINIC}'s receiver to be notified of Task/${taskId} version ${version}`,
    async () => {
      const event = ctx.receiver.notifications.find((n) => n.type === 'event-notification' && focusesTask(n, taskId, version));
      const number = event?.events[0]?.number;
      if (number === undefined) return undefined;
      const seen = eventNumbers(ctx);
      return Array.from({ length: number }, (_, i) => i + 1).every((k) => seen.has(k)) ? number : undefined;
    },
    { timeoutMs: ctx.waitMs, describeState: () => describeReferral(ctx, ref.id) },
  );
  printReceived(ctx, upTo);
}

/** A FHIR call that must answer `expected`; the OperationOutcome's text otherwise. */
async function fhir<T>(ctx: FhirDemoContext, expected: number, participant: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
  const contentType = method === 'PATCH' ? JSON_PATCH : FHIR_JSON;
  return ctx.api.expect<T>(expected, participant, method, path, body, { accept: FHIR_JSON, ...(body !== undefined ? { 'content-type': contentType } : {}), ...headers });
}

const idAt = (location: string | undefined, type: string): string => {
  const m = new RegExp(`/${type}/([^/]+)/_history/`).exec(location ?? '');
  if (!m?.[1]) throw new DemoError(`the transaction-response names no ${type} (location ${location})`);
  return m[1];
};

/** Runs steps 10-16. */
export async function runFhirReferral(ctx: FhirDemoContext, ref: Partial<FhirReferral>): Promise<void> {
  const clinicIs = `${CLINIC} (${FHIR_CONSULTANT})`;

  // 10. The clinic subscribes
  step(10, `FHIR only: ${CLINIC}'s system subscribes to its Tasks (POST /fhir/Subscription, id-only)`);
  const endpoint = `${ctx.receiver.url}/${FHIR_CONSULTANT}${NOTIFICATION_PATH}`;
  fact('receiver', `${endpoint}: ${CLINIC}'s own system, run by the demo; its origin is ${CLINIC}'s notify URL in the network file (a Subscription may notify only the caller's own systems)`);
  const created = await fhir<Subscription>(ctx, 201, FHIR_CONSULTANT, 'POST', '/fhir/Subscription', taskSubscription(endpoint));
  const subscriptionId = (ref.subscriptionId = created.body.id as string);
  fact('response', `201 Created, Location: ${created.headers.get('location')}; status ${created.body.status}`);
  fact('', `topic ${created.body.criteria}, filter Task?owner=${FHIR_CONSULTANT_ORGANIZATION}, payload id-only`);
  ctx.tracker.watchSubscription(FHIR_CONSULTANT, subscriptionId);
  await waitFor(
    'the Subscription handshake',
    async () => (ctx.receiver.notifications.some((n) => n.type === 'handshake') ? true : undefined),
    { timeoutMs: ctx.waitMs, describeState: async () => 'the receiver got no handshake' },
  );
  printReceived(ctx);
  const active = await waitFor(
    'the Subscription to become active',
    async () => {
      const s = (await fhir<Bundle>(ctx, 200, FHIR_CONSULTANT, 'GET', `/fhir/Subscription/${subscriptionId}/$status`)).body;
      const status = (s.entry?.[0]?.resource as { parameter?: { name: string; valueCode?: string }[] } | undefined)?.parameter?.find((p) => p.name === 'status')?.valueCode;
      return status === 'active' ? status : undefined;
    },
    { timeoutMs: ctx.waitMs, describeState: async () => `Subscription/${subscriptionId} did not become active` },
  );
  fact('$status', `GET /fhir/Subscription/${subscriptionId}/$status -> ${active}: the handshake was answered 200`);
  await ctx.tracker.report();

  // 11. Intake by transaction Bundle
  step(11, "St Olaf's EHR refers with a FHIR transaction Bundle (POST /fhir)");
  const tx = referralTransaction(ctx.chart, ctx.ehrBaseUrl, ctx.consentId);
  fact('request', `transaction Bundle, 3 entries with urn:uuid fullUrls: ServiceRequest, Task (focus ${tx.urls.serviceRequest.slice(0, 17)}…, the ServiceRequest's fullUrl), ClinicalImpression (the first read)`);
  fact('', `kind from SNOMED CT ${HISTOPATHOLOGY.code} "${HISTOPATHOLOGY.display}" (pathology second read); clinic by its registry identifier ORG-2002; placer identifier ${tx.requestId} (ifNoneExist)`);
  fact('', `records on the EHR: pathology report and progress note (absolute references); consent Consent/${ctx.consentId}; question: "${FHIR_QUESTION}"`);
  const answered = await fhir<Bundle>(ctx, 200, REFERRER, 'POST', '/fhir', tx.bundle);
  if (answered.body.type !== 'transaction-response') throw new DemoError(`POST /fhir answered a ${answered.body.type} Bundle, not a transaction-response`);
  const entries = answered.body.entry ?? [];
  fact('response', `200 transaction-response, one entry per request entry:`);
  for (const e of entries as BundleEntry[]) fact('', `${e.response?.status}  ${e.response?.location}  ETag ${e.response?.etag}`);
  const id = (ref.id = idAt(entries[0]?.response?.location, 'ServiceRequest'));
  const taskId = (ref.taskId = idAt(entries[1]?.response?.location, 'Task'));
  const task1 = (await fhir<Task>(ctx, 200, REFERRER, 'GET', `/fhir/Task/${taskId}`)).body;
  if (task1.owner?.reference !== FHIR_CONSULTANT_ORGANIZATION || task1.focus?.reference !== `ServiceRequest/${id}`) {
    throw new DemoError(`Task/${taskId} should be owned by ${FHIR_CONSULTANT_ORGANIZATION} with focus ServiceRequest/${id}, got owner ${task1.owner?.reference}, focus ${task1.focus?.reference}`);
  }
  fact('referral', `ServiceRequest/${id}; Task/${taskId} for ${task1.owner?.display} (urn:uuid references resolved to the service's ids)`);
  fact('same intake', "the door turned the Bundle into the JSON intake's request and called the same use case: same checks, idempotency, Provenance, record assembly queued");
  const replay = await fhir<Bundle>(ctx, 200, REFERRER, 'POST', '/fhir', tx.bundle);
  const replayed = (replay.body.entry ?? []).map((e) => `${e.response?.status} ${e.response?.location?.split('/fhir/')[1]?.split('/_history')[0]}`);
  const sameIds = replay.body.entry?.every((e, i) => e.response?.status === '200 OK' && e.response?.location === entries[i]?.response?.location);
  if (!sameIds) throw new DemoError(`the same Bundle again should answer 200 OK with the same locations, got ${replayed.join(', ')}`);
  fact('replay', `the same Bundle again (an EHR retrying) -> 200, entries ${replay.body.entry?.map((e) => e.response?.status).join(', ')}, the same ids: nothing created`);
  ctx.tracker.label(`ServiceRequest/${id}`, 'the FHIR referral');
  ctx.tracker.label(`Task/${taskId}`, `${CLINIC}, over FHIR`);
  await ctx.tracker.report();

  // 12. The clinic hears of its Task
  step(12, `Record assembly; ${CLINIC} is notified of its Task and reads it at the notification's focus`);
  const first = await waitFor(
    `${CLINIC}'s receiver to be notified of Task/${taskId}`,
    async () => ctx.receiver.notifications.find((n) => n.type === 'event-notification' && focusesTask(n, taskId)),
    { timeoutMs: ctx.waitMs, describeState: () => describeReferral(ctx, id) },
  );
  const focus = first.foci[0]?.fullUrl as string;
  const ready = (await fhir<Task>(ctx, 200, FHIR_CONSULTANT, 'GET', focus.slice(ctx.api.url.length))).body;
  await receivedUpTo(ctx, ref, taskId, ready.meta?.versionId as string);
  if (ready.status !== 'requested' || ready.businessStatus?.coding?.[0]?.code !== 'records-ready') throw new DemoError(`${CLINIC} should read its Task requested / records-ready, got ${taskState(ready)}`);
  fact('GET focus', `${focus} as ${CLINIC} -> 200, Task ${taskState(ready)}, due ${ready.restriction?.period?.end?.slice(0, 10)}`);
  const recordSet = ready.input?.find((i) => i.valueReference?.reference?.startsWith('Bundle/'))?.valueReference?.reference?.split('/')[1];
  if (!recordSet) throw new DemoError(`Task/${taskId} names no record set in Task.input`);
  ctx.tracker.label(`Bundle/${recordSet}`, 'FHIR referral record set');
  await printBundle(ctx, FHIR_CONSULTANT, recordSet, 'Task.input');
  await ctx.tracker.report();

  // 13. Accept by PUT, start by PATCH
  step(13, `${CLINIC} accepts (PUT /fhir/Task/{id}) and starts (PATCH, JSON Patch) its Task`);
  const accepted = await fhir<Task>(ctx, 200, FHIR_CONSULTANT, 'PUT', `/fhir/Task/${taskId}`, { ...ready, status: 'accepted' }, { 'if-match': `W/"${ready.meta?.versionId}"` });
  fact('accept', `PUT /fhir/Task/${taskId} (the Task as read, status accepted, If-Match W/"${ready.meta?.versionId}") -> 200, Task ${taskState(accepted.body)}, ETag ${accepted.headers.get('etag')}`);
  const refused = await fhir<OperationOutcome>(ctx, 422, FHIR_CONSULTANT, 'PATCH', `/fhir/Task/${taskId}`, [{ op: 'replace', path: '/owner/reference', value: 'Organization/lakeside' }]);
  const where = refused.body.issue?.map((i) => i.expression?.[0]).join(', ');
  if (where !== 'Task.owner') throw new DemoError(`the refused PATCH should name Task.owner, got ${where}: ${outcomeText(refused.body)}`);
  fact('guard', `PATCH replace /owner/reference -> 422 OperationOutcome naming ${where}: a Task changes only by the actions of its status (nothing changes)`);
  const started = await fhir<Task>(ctx, 200, FHIR_CONSULTANT, 'PATCH', `/fhir/Task/${taskId}`, [{ op: 'test', path: '/status', value: 'accepted' }, { op: 'replace', path: '/status', value: 'in-progress' }], { 'if-match': accepted.headers.get('etag') as string });
  fact('start', `PATCH [test /status accepted, replace /status in-progress] (If-Match ${accepted.headers.get('etag')}) -> 200, Task ${taskState(started.body)}`);
  await receivedUpTo(ctx, ref, taskId, started.body.meta?.versionId as string);
  await ctx.tracker.report();

  // 14. Complete with a contained consult note
  step(14, `${CLINIC} completes its Task with a contained consult note (PUT /fhir/Task/{id})`);
  const done = await fhir<Task>(ctx, 200, FHIR_CONSULTANT, 'PUT', `/fhir/Task/${taskId}`, completedTask(started.body), { 'if-match': `W/"${started.body.meta?.versionId}"` });
  const note = done.body.output?.find((o) => o.valueReference?.reference?.startsWith('DocumentReference/'))?.valueReference?.reference;
  if (done.body.status !== 'completed' || !note || done.body.contained) throw new DemoError(`the completed Task should name the stored consult note in output and contain nothing, got ${taskState(done.body)}, output ${note}, contained ${done.body.contained?.length ?? 0}`);
  const noteId = (ref.noteId = note.split('/')[1] as string);
  ctx.tracker.label(note, `${CLINIC}'s opinion over FHIR`);
  fact('complete', `PUT status completed, output #opinion, contained DocumentReference (LOINC 11488-4, the points in our extensions, a plain-text worksheet) -> 200, Task ${taskState(done.body)}`);
  fact('', `output ${note}: the service built and stored its own consult note from the contained one, as POST /consults/{id}/opinion does`);
  fact('', `diagnosis: ${OPINION_FHIR.diagnosisAgreement}, plan: ${OPINION_FHIR.planAgreement}, preferred: ${OPINION_FHIR.recommendations.find((r) => r.preferred)?.option}`);
  const sr = (await fhir<ServiceRequest>(ctx, 200, REFERRER, 'GET', `/fhir/ServiceRequest/${id}`)).body;
  if (sr.status !== 'completed') throw new DemoError(`with its only Task completed, ServiceRequest/${id} should be completed, got ${sr.status}`);
  fact('referral', `GET /fhir/ServiceRequest/${id} as St Olaf -> ${sr.status} (v${sr.meta?.versionId})`);
  fact('post-back', "queued as a durable job in the same transaction (step 15 waits for it)");
  await receivedUpTo(ctx, ref, taskId, done.body.meta?.versionId as string);
  await ctx.tracker.report();

  // 15. Post-back, exactly once
  step(15, `Post-back: ${CLINIC}'s opinion arrives in St Olaf's EHR, exactly once`);
  const delivered = await waitFor(
    'the post-back of the FHIR opinion',
    async () => {
      const t = (await fhir<Task>(ctx, 200, REFERRER, 'GET', `/fhir/Task/${taskId}`)).body;
      return t.businessStatus?.coding?.[0]?.code === 'opinion-delivered' ? t : undefined;
    },
    { timeoutMs: ctx.waitMs, describeState: () => describeReferral(ctx, id) },
  );
  fact('Task', `GET /fhir/Task/${taskId} as St Olaf -> ${taskState(delivered)}`);
  await receivedUpTo(ctx, ref, taskId, delivered.meta?.versionId as string);
  const docs = await ctx.ehrClient.get<Bundle<DocumentReference>>(`DocumentReference?identifier=${encodeURIComponent(`${SYSTEM.consultNoteId}|${noteId}`)}`);
  const comms = await ctx.ehrClient.get<Bundle<Communication>>(`Communication?identifier=${encodeURIComponent(`${OPINION_NOTIFICATION_SYSTEM}|${noteId}`)}`);
  const doc = docs.entry?.map((e) => e.resource).filter((r) => r?.resourceType === 'DocumentReference') ?? [];
  const comm = comms.entry?.map((e) => e.resource).filter((r) => r?.resourceType === 'Communication') ?? [];
  if (doc.length !== 1 || comm.length !== 1) throw new DemoError(`St Olaf's EHR holds ${doc.length} DocumentReference(s) and ${comm.length} Communication(s) for the opinion DocumentReference/${noteId}; expected exactly one of each`);
  fact(CLINIC, `opinion DocumentReference/${noteId} delivered: on the EHR DocumentReference/${doc[0]?.id} and Communication/${comm[0]?.id} (to ${(comm[0] as Communication).recipient?.[0]?.reference})`);
  fact('check', 'read back from the EHR over FHIR by identifier: exactly one DocumentReference and one Communication');
  const all = ctx.receiver.notifications;
  const leaked = all.filter((n) => n.foci.some((f) => f.hasResource) || ['Alex', '999-00-1234', 'Nilsen', 'synovi'].some((phi) => n.raw.includes(phi)));
  if (leaked.length) throw new DemoError(`${leaked.length} notification(s) carried a resource or patient data`);
  const events = [...eventNumbers(ctx)].sort((a, b) => a - b);
  fact('notifications', `${all.length} received (handshake + events ${events.map((n) => `#${n}`).join(', ')}), each id-only: no resource, no patient data`);
  await ctx.tracker.report();

  // 16. The comparison
  step(16, 'The referrer reads the comparison of the FHIR referral (GET /second-opinions/{id}/comparison)');
  const comparison = (await ctx.api.expect<Comparison>(200, REFERRER, 'GET', `/second-opinions/${id}/comparison`)).body;
  if (comparison.opinions.length !== 1 || !comparison.first) throw new DemoError(`the comparison should hold the first read and ${CLINIC}'s opinion, got ${comparison.opinions.length} opinion(s)${comparison.first ? '' : ' and no first opinion'}`);
  printComparison(comparison, (o) => (o.source === 'first-opinion' ? 'First read (St Olaf)' : (SHORT_NAMES[o.source] ?? o.name)));
  const stored = (await fhir<DocumentReference>(ctx, 200, REFERRER, 'GET', `/fhir/DocumentReference/${noteId}`)).body;
  fact('consult note', `GET /fhir/DocumentReference/${noteId} as St Olaf -> 200, ${stored.type?.coding?.[0]?.display}, attachments ${stored.content.map((c) => c.attachment.contentType).join(', ')} (the readable note first)`);
  fact('doors', `${clinicIs} used FHIR only (POST /fhir/Subscription, GET /fhir/Task, PUT and PATCH /fhir/Task); St Olaf's EHR referred with POST /fhir and followed with FHIR reads (the comparison, which no FHIR resource carries, is the one JSON read)`);
}
