/**
 * Steps 2-9 of the demo: one referral end to end over the service's public API, each step
 * saying what happened and which FHIR resources changed.
 */
import type { Bundle, Communication, DocumentReference, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import type { Worklist } from '../../src/consults/worklist.ts';
import { OPINION_NOTIFICATION_SYSTEM } from '../../src/delivery/deliver-opinion.ts';
import { SYSTEM } from '../../src/fhir/constants.ts';
import type { ReferralSummary } from '../../src/intake/get-referral-summary.ts';
import { CHECKLIST } from '../../src/records/checklist.ts';
import type { Comparison } from '../../src/retrieval/comparison.ts';
import { type ChangeTracker, plural } from './changes.ts';
import { DemoError, type EhrClient, outcomeText, type ServiceClient, waitFor } from './http.ts';
import type { ClinicServer } from './environment.ts';
import { fact, out, printComparison, step } from './print.ts';
import { showFirstPush, showNextPush } from './push.ts';
import type { PushView } from '../../src/record-push/push-admin.ts';
import type { SeededIds } from '../../test/support/sandbox-ehr/seed.ts';
import { CONSULTANT_A, CONSULTANT_B, infoAnswer, INFO_QUESTION, initialDocuments, missingDocument, OPINION_A, OPINION_B, REFERRER, SHORT_NAMES, secondOpinionRequest } from './scenario.ts';

export interface DemoContext {
  api: ServiceClient;
  ehrClient: EhrClient;
  ehrBaseUrl: string;
  tracker: ChangeTracker;
  /** The sandbox EHR's seeded ids (patient, practitioner, documents). */
  chart: SeededIds;
  consentId: string;
  /** Longest wait for any one background outcome (assembly, delivery). */
  waitMs: number;
  /** Lakeside's own FHIR server, where its record sets are pushed. */
  clinic: ClinicServer;
}

/** What the steps learn as they go. */
export interface Referral {
  id: string;
  taskA: string;
  taskB: string;
  withheldBundleId?: string;
  notes: Record<string, string>;
  /** The first push of consultant A's record set to its own FHIR server. */
  push?: PushView;
}

const summaryOf = async (ctx: DemoContext, id: string) => (await ctx.api.expect<ReferralSummary>(200, REFERRER, 'GET', `/second-opinions/${id}`)).body;
const taskOf = async (ctx: DemoContext, participant: string, id: string) => (await ctx.api.expect<Task>(200, participant, 'GET', `/fhir/Task/${id}`)).body;
export const taskState = (t: Task) => `${t.status}${t.businessStatus?.coding?.[0]?.code ? ` / ${t.businessStatus.coding[0].code}` : ''} (v${t.meta?.versionId})`;

/** The state of the referral, for a failure or time-out message. */
export async function describeReferral(ctx: DemoContext, id: string | undefined): Promise<string> {
  if (!id) return 'no referral was created';
  const s = await summaryOf(ctx, id);
  const lines = [
    `ServiceRequest/${s.id}: ${s.status}`,
    `record set: ${s.recordSet.status} (records revision ${s.recordSet.recordsRevision}, assembled ${s.recordSet.assembledRevision ?? 'never'}${s.recordSet.failureReason ? `, ${s.recordSet.failureReason}` : ''}${s.recordSet.attempts ? `, ${s.recordSet.attempts} attempts` : ''})`,
    ...s.consultants.map(
      (c) =>
        `Task/${c.task.id} (${c.name}): ${c.task.status}${c.task.businessStatus ? ` / ${c.task.businessStatus}` : ''}${c.task.businessStatusText ? ` "${c.task.businessStatusText}"` : ''}${c.delivery ? `; post-back ${c.delivery.status} after ${c.delivery.attempts} attempt(s)${c.delivery.lastError ? `: ${c.delivery.lastError}` : ''}` : ''}`,
    ),
  ];
  return lines.map((l) => `  ${l}`).join('\n');
}

/** Waits for the record set of `revision` to be assembled; returns the summary. */
async function assembled(ctx: DemoContext, id: string, revision: number): Promise<ReferralSummary> {
  return waitFor(
    `record set assembly of records revision ${revision}`,
    async () => {
      const s = await summaryOf(ctx, id);
      return s.recordSet.status !== 'records-pending' && s.recordSet.assembledRevision === revision ? s : undefined;
    },
    { timeoutMs: ctx.waitMs, describeState: () => describeReferral(ctx, id) },
  );
}

/** Prints the entries of a record-set Bundle: each copy and the EHR record it was read from. Returns the Bundle. */
export async function printBundle(ctx: DemoContext, participant: string, bundleId: string, label: string): Promise<Bundle> {
  const bundle = (await ctx.api.expect<Bundle>(200, participant, 'GET', `/fhir/Bundle/${bundleId}`)).body;
  fact(label, `Bundle/${bundleId} v${bundle.meta?.versionId} (${bundle.type}, ${plural(bundle.entry?.length ?? 0, 'entry', 'entries')}):`);
  for (const e of bundle.entry ?? []) {
    const r = e.resource as Resource & { type?: { coding?: { display?: string }[] }; code?: { coding?: { display?: string }[]; text?: string }; description?: string };
    const source = (r.meta?.source ?? '').replace(`${ctx.ehrBaseUrl}/`, '');
    const what = r.type?.coding?.[0]?.display ?? r.code?.coding?.[0]?.display ?? r.code?.text ?? r.description;
    out(`                    ${`${r.resourceType}/${r.id}`.padEnd(56)} copy of EHR ${source}${what ? ` (${what})` : ''}`);
  }
  return bundle;
}

/** Each assembly of a blinded referral also makes a new referrer-only Bundle of the withheld first opinion; the newest is released. */
function noteWithheld(ctx: DemoContext, ref: Partial<Referral>, summary: ReferralSummary): void {
  ref.withheldBundleId = summary.recordSet.withheldBundleId;
  if (ref.withheldBundleId) ctx.tracker.label(`Bundle/${ref.withheldBundleId}`, `withheld first opinion, revision ${summary.recordSet.assembledRevision}`);
}

async function act(ctx: DemoContext, participant: string, taskId: string, action: string, body?: unknown): Promise<Task> {
  const task = (await ctx.api.expect<Task>(200, participant, 'POST', `/consults/${taskId}/${action}`, body)).body;
  fact(`${action}`, `POST /consults/${taskId}/${action} -> 200, Task ${taskState(task)}`);
  return task;
}

async function worklistItem(ctx: DemoContext, participant: string, taskId: string): Promise<void> {
  const list = (await ctx.api.expect<Worklist>(200, participant, 'GET', '/consults')).body;
  const item = list.items.find((i) => i.task.id === taskId);
  if (!item) throw new DemoError(`${participant}'s worklist (GET /consults) does not list Task/${taskId}`);
  fact('worklist', `GET /consults as ${SHORT_NAMES[participant]}: Task/${taskId} "${item.referral.kindDisplay ?? item.referral.kind}", ${item.task.status}/${item.task.businessStatus}, due ${item.task.due?.slice(0, 10)}, actions [${item.actions.join(', ')}]`);
}

async function submitOpinion(ctx: DemoContext, ref: Partial<Referral>, participant: string, taskId: string, opinion: unknown): Promise<void> {
  const task = (await ctx.api.expect<Task>(200, participant, 'POST', `/consults/${taskId}/opinion`, opinion)).body;
  const note = task.output?.find((o) => o.valueReference?.reference?.startsWith('DocumentReference/'))?.valueReference?.reference;
  if (!note) throw new DemoError(`the completed Task/${taskId} names no consult note in Task.output`);
  (ref.notes ??= {})[participant] = note.split('/')[1] as string;
  ctx.tracker.label(note, `${SHORT_NAMES[participant]}'s opinion`);
  fact('opinion', `POST /consults/${taskId}/opinion -> 200, Task ${taskState(task)}, output ${note}`);
  const points = opinion as { diagnosisAgreement: string; planAgreement: string; recommendations: { option: string; preferred: boolean }[] };
  fact('', `diagnosis: ${points.diagnosisAgreement}, plan: ${points.planAgreement}, preferred: ${points.recommendations.find((r) => r.preferred)?.option}`);
  fact('post-back', "queued as a durable job: the consult note goes to St Olaf's EHR in the background (step 8 waits for it)");
  if (ref.withheldBundleId) {
    const status = (await ctx.api.call(participant, 'GET', `/fhir/Bundle/${ref.withheldBundleId}`)).status;
    if (status !== 200) throw new DemoError(`blinding: after answering, ${participant} should read the withheld first opinion (Bundle/${ref.withheldBundleId}), got HTTP ${status}`);
    fact('blinding', `the first opinion (Bundle/${ref.withheldBundleId}) is now released to ${SHORT_NAMES[participant]}: GET -> 200`);
  }
}

/**
 * Runs steps 2-9. `ref` is filled in as the referral takes shape, so that a failure can say
 * what state the referral was left in.
 */
export async function runReferral(ctx: DemoContext, ref: Partial<Referral>): Promise<void> {
  ref.notes = {};
  // 2. Intake
  step(2, 'Intake: St Olaf\'s EHR asks for a second opinion (POST /second-opinions)');
  const request = secondOpinionRequest(ctx.chart, ctx.consentId);
  fact('request', `kind revision, routine, records-only, blinded; patient Patient/${ctx.chart.patientId} (synthetic); consultants ${CONSULTANT_A} and ${CONSULTANT_B}`);
  fact('', `question: "${request.question as string}"`);
  fact('', `records named: ${initialDocuments(ctx.chart).map((d) => `${d.reference} (${d.display})`).join(', ')}; not the operative note`);
  fact('', `first opinion: Osteoarthritis of knee, plan revision arthroplasty, note DocumentReference/${ctx.chart.firstOpinionNoteId}`);
  const created = await ctx.api.expect<{ id: string; serviceRequest: ServiceRequest; tasks: Task[] }>(201, REFERRER, 'POST', '/second-opinions', request);
  const { id, serviceRequest, tasks } = created.body;
  ref.id = id;
  const taskFor = (organization: string) => {
    const task = tasks.find((t) => t.owner?.reference === organization);
    if (!task?.id) throw new DemoError(`intake returned no Task owned by ${organization}`);
    return task.id;
  };
  const taskA = (ref.taskA = taskFor('Organization/lakeside'));
  const taskB = (ref.taskB = taskFor('Organization/northfield-pathology'));
  fact('response', `201 Created, Location: ${created.headers.get('location')}`);
  fact('referral', `ServiceRequest/${id} ${serviceRequest.status}`);
  for (const t of tasks) fact('work item', `Task/${t.id} for ${t.owner?.display}: ${taskState(t)}, due ${t.restriction?.period?.end?.slice(0, 10)}`);
  const impression = serviceRequest.supportingInfo?.find((s) => s.reference?.startsWith('ClinicalImpression/'))?.reference;
  if (impression) fact('first opinion', `${impression} (kept by the service; withheld from the consultants while blinded)`);
  ctx.tracker.label(`ServiceRequest/${id}`, 'the referral');
  ctx.tracker.label(`Task/${taskA}`, 'consultant A');
  ctx.tracker.label(`Task/${taskB}`, 'consultant B');
  fact('next', 'record assembly was queued in the same transaction; it runs in the background');
  await ctx.tracker.report();

  // 3. Record assembly, one required record missing
  step(3, "Record assembly: the service reads the records from St Olaf's EHR (one required record is missing)");
  const first = await assembled(ctx, id, 0);
  if (first.recordSet.status !== 'awaiting-records') throw new DemoError(`expected the record set to wait for the missing operative note (awaiting-records), got ${first.recordSet.status}`, await describeReferral(ctx, id));
  fact('result', `record set ${first.recordSet.status}`);
  const firstBundle = first.recordSet.bundleId as string;
  ctx.tracker.label(`Bundle/${firstBundle}`, 'record set, revision 0');
  await printBundle(ctx, REFERRER, firstBundle, 'record set');
  noteWithheld(ctx, ref, first);
  if (ref.withheldBundleId) {
    await printBundle(ctx, REFERRER, ref.withheldBundleId, 'withheld');
    fact('', 'blinded: the first opinion is withheld from the consultants until each has given its own');
  }
  fact('', 'an incomplete record set is not disclosed: only St Olaf can read it, and the Tasks wait');
  const missing = first.recordSet.missing.required as { code: string; display: string }[];
  fact('missing', missing.map((m) => `${m.display} (LOINC ${m.code})`).join('; '));
  fact('why', `a "revision" opinion requires: ${CHECKLIST.revision.required.map((i) => i.display).join('; ')} (the operative note says what was implanted)`);
  const recommended = first.recordSet.missing.recommended as { display: string }[];
  if (recommended.length) fact('', `recommended but not blocking: ${recommended.map((m) => m.display).join(', ')}`);
  for (const t of [taskA, taskB]) {
    const task = await taskOf(ctx, REFERRER, t);
    fact('Task', `Task/${t} (${task.owner?.display}): ${taskState(task)}, businessStatus.text "${task.businessStatus?.text ?? ''}"`);
  }
  const early = await ctx.api.call(CONSULTANT_A, 'POST', `/consults/${taskA}/accept`);
  if (early.status !== 404) throw new DemoError(`accepting before the record set is disclosed should be refused with 404, got ${early.status}: ${outcomeText(early.body)}`);
  fact('guard', `Lakeside tries to accept now: 404 "${outcomeText(early.body)}": a clinic sees nothing of the case until its record set is complete and the consent covers it (nothing changes)`);
  await ctx.tracker.report();

  // 4. The referrer supplies the missing record
  step(4, 'The referrer supplies the missing record (POST /second-opinions/{id}/records); assembly runs again');
  const added = await ctx.api.expect<{ recordsRevision: number }>(202, REFERRER, 'POST', `/second-opinions/${id}/records`, { documents: [missingDocument(ctx.chart)] });
  fact('response', `202 Accepted: records revision ${added.body.recordsRevision}, added ${missingDocument(ctx.chart).reference} (operative note)`);
  const second = await assembled(ctx, id, added.body.recordsRevision);
  if (second.recordSet.status !== 'records-ready') throw new DemoError(`expected the record set to be complete (records-ready), got ${second.recordSet.status}`, await describeReferral(ctx, id));
  const secondBundle = second.recordSet.bundleId as string;
  noteWithheld(ctx, ref, second);
  ctx.tracker.label(`Bundle/${secondBundle}`, 'record set, revision 1');
  fact('result', `record set ${second.recordSet.status}: nothing required is missing`);
  const ready = await printBundle(ctx, REFERRER, secondBundle, 'record set');
  fact('versions', `${second.recordSet.versions.map((v) => `Bundle/${v}`).join(', ')} (newest first; a record set never changes, each assembly makes a new one)`);
  for (const c of second.recordSet.consent as { participant: string; permitted: boolean; basis?: string }[]) {
    fact('consent', `${c.participant}: ${c.permitted ? `disclosure permitted (basis: ${c.basis ?? 'consent'}, Consent/${ctx.consentId} read from the EHR)` : 'not permitted'}`);
  }
  for (const c of second.consultants) fact('Task', `Task/${c.task.id} (${c.name}): ${c.task.status} / ${c.task.businessStatus}`);
  ref.push = await showFirstPush(ctx, taskA, id, secondBundle, (ready.entry ?? []).map((e) => e.resource as Resource));
  await ctx.tracker.report();

  // 5. Consultant A asks for information; the referrer answers
  step(5, 'Consultant A (Lakeside) accepts, starts, and asks for information; the referrer answers');
  await worklistItem(ctx, CONSULTANT_A, taskA);
  await act(ctx, CONSULTANT_A, taskA, 'accept');
  await act(ctx, CONSULTANT_A, taskA, 'start');
  const asked = await act(ctx, CONSULTANT_A, taskA, 'request-info', INFO_QUESTION);
  if (asked.status !== 'on-hold') throw new DemoError(`request-info should put the Task on hold, got ${asked.status}`);
  fact('question', `"${asked.businessStatus?.text}"`);
  const waiting = (await summaryOf(ctx, id)).consultants.find((c) => c.task.id === taskA);
  fact('referrer sees', `GET /second-opinions/${id}: Lakeside ${waiting?.task.status} / ${waiting?.task.businessStatus}, asking "${waiting?.task.informationRequested}"`);
  const answer = await ctx.api.expect<{ recordsRevision: number; tasks: { id: string; status: string; businessStatus?: string }[] }>(200, REFERRER, 'POST', `/second-opinions/${id}/info`, infoAnswer(ctx.chart));
  fact('answer', `POST /second-opinions/${id}/info -> 200: "${infoAnswer(ctx.chart).text}" + ${infoAnswer(ctx.chart).documents[0]?.reference}`);
  for (const t of answer.body.tasks) fact('', `Task/${t.id}: ${t.status} / ${t.businessStatus}`);
  const third = await assembled(ctx, id, answer.body.recordsRevision);
  ctx.tracker.label(`Bundle/${third.recordSet.bundleId}`, `record set, revision ${answer.body.recordsRevision}`);
  noteWithheld(ctx, ref, third);
  const resumed = await taskOf(ctx, CONSULTANT_A, taskA);
  if (resumed.status !== 'in-progress') throw new DemoError(`after the answer Lakeside's Task should be in-progress, got ${resumed.status}`);
  fact('resumed', `Task/${taskA} ${taskState(resumed)}; its input is now Bundle/${third.recordSet.bundleId} (with the H&P); note: "${resumed.note?.at(-1)?.text}"`);
  if (ref.push) await showNextPush(ctx, taskA, third.recordSet.bundleId as string, answer.body.recordsRevision, ref.push);
  await ctx.tracker.report();

  // 6. Consultant B answers
  step(6, 'Consultant B (Northfield) accepts, starts and returns its opinion');
  await worklistItem(ctx, CONSULTANT_B, taskB);
  await act(ctx, CONSULTANT_B, taskB, 'accept');
  await act(ctx, CONSULTANT_B, taskB, 'start');
  await submitOpinion(ctx, ref, CONSULTANT_B, taskB, OPINION_B);
  if (ref.withheldBundleId) {
    const stillHidden = (await ctx.api.call(CONSULTANT_A, 'GET', `/fhir/Bundle/${ref.withheldBundleId}`)).status;
    if (stillHidden !== 404) throw new DemoError(`blinding: Lakeside has not answered yet and must not read the first opinion, got HTTP ${stillHidden}`);
    fact('', `Lakeside has not answered yet: GET Bundle/${ref.withheldBundleId} -> 404`);
  }
  await ctx.tracker.report();

  // 7. Consultant A answers
  step(7, 'Consultant A (Lakeside) returns its opinion');
  await submitOpinion(ctx, ref, CONSULTANT_A, taskA, OPINION_A);
  const sr = (await ctx.api.expect<ServiceRequest>(200, REFERRER, 'GET', `/fhir/ServiceRequest/${id}`)).body;
  fact('referral', `ServiceRequest/${id} ${sr.status} (v${sr.meta?.versionId}): every Task has ended`);
  if (sr.status !== 'completed') throw new DemoError(`with both opinions in, the ServiceRequest should be completed, got ${sr.status}`);
  await ctx.tracker.report();

  // 8. Post-back to the EHR
  step(8, "Post-back: both opinions arrive in St Olaf's EHR, exactly once each");
  const delivered = await waitFor(
    'both post-backs to be delivered',
    async () => {
      const s = await summaryOf(ctx, id);
      return s.consultants.every((c) => c.delivery?.status === 'delivered') ? s : undefined;
    },
    { timeoutMs: ctx.waitMs, describeState: () => describeReferral(ctx, id) },
  );
  for (const c of delivered.consultants) {
    const noteId = ref.notes?.[c.participant ?? ''] as string;
    const docs = await ctx.ehrClient.get<Bundle<DocumentReference>>(`DocumentReference?identifier=${encodeURIComponent(`${SYSTEM.consultNoteId}|${noteId}`)}`);
    const comms = await ctx.ehrClient.get<Bundle<Communication>>(`Communication?identifier=${encodeURIComponent(`${OPINION_NOTIFICATION_SYSTEM}|${noteId}`)}`);
    const doc = docs.entry?.map((e) => e.resource).filter((r) => r?.resourceType === 'DocumentReference') ?? [];
    const comm = comms.entry?.map((e) => e.resource).filter((r) => r?.resourceType === 'Communication') ?? [];
    if (doc.length !== 1 || comm.length !== 1) throw new DemoError(`St Olaf's EHR holds ${doc.length} DocumentReference(s) and ${comm.length} Communication(s) for the opinion DocumentReference/${noteId}; expected exactly one of each`);
    const remote = doc[0] as DocumentReference;
    if (c.delivery?.remoteDocument !== `${ctx.ehrBaseUrl}/DocumentReference/${remote.id}`) throw new DemoError(`the service recorded ${c.delivery?.remoteDocument} for the post-back, but the EHR holds DocumentReference/${remote.id}`);
    fact(SHORT_NAMES[c.participant ?? ''] ?? '', `opinion DocumentReference/${noteId} delivered after ${c.delivery?.attempts} attempt(s): on the EHR DocumentReference/${remote.id} and Communication/${comm[0]?.id} (to ${(comm[0] as Communication).recipient?.[0]?.reference})`);
    fact('', `Task/${c.task.id}: ${c.task.status} / ${c.task.businessStatus}`);
  }
  fact('check', 'read back from the EHR over FHIR by identifier: exactly one DocumentReference and one Communication per opinion');
  fact('referral', `ServiceRequest/${id} ${delivered.status}`);
  await ctx.tracker.report();

  // 9. The comparison
  step(9, 'The comparison the referring physician reads (GET /second-opinions/{id}/comparison)');
  const comparison = (await ctx.api.expect<Comparison>(200, REFERRER, 'GET', `/second-opinions/${id}/comparison`)).body;
  if (comparison.opinions.length !== 2 || !comparison.agreement) throw new DemoError(`the comparison should hold both opinions and the agreement, got ${comparison.opinions.length} opinion(s)`);
  printComparison(comparison, (o) => (o.source === 'first-opinion' ? 'First opinion (St Olaf)' : (SHORT_NAMES[o.source] ?? o.name)));
  const html = await ctx.api.expect<string>(200, REFERRER, 'GET', `/second-opinions/${id}/comparison`, undefined, { accept: 'text/html' });
  fact('as HTML', `the same with Accept: text/html -> ${html.headers.get('content-type')}, ${html.body.length} characters (a table for the physician)`);
}
