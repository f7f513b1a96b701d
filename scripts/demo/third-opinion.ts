/**
 * Steps 17-18 of the demo: the two opinions of the first referral both question
 * the plan, so St Olaf asks a third clinic. Riverside Imaging is added to the completed referral
 * (POST /second-opinions/{id}/consultants), receives the very record set the others had, sees
 * neither the first opinion nor the other two until its own is in, and its opinion is posted
 * back and compared with the rest.
 */
import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import type { ReferralSummary } from '../../src/intake/get-referral-summary.ts';
import type { Comparison } from '../../src/retrieval/comparison.ts';
import { DemoError, waitFor } from './http.ts';
import { fact, printComparison, step } from './print.ts';
import { CONSULTANT_A, CONSULTANT_C, OPINION_C, REFERRER, SHORT_NAMES } from './scenario.ts';
import { type DemoContext, describeReferral, type Referral, taskState } from './steps.ts';

const summaryOf = async (ctx: DemoContext, id: string) => (await ctx.api.expect<ReferralSummary>(200, REFERRER, 'GET', `/second-opinions/${id}`)).body;

/** Runs steps 17-18 on the referral of steps 2-9; `consentId` names Riverside (recorded in the EHR beforehand). */
export async function runThirdOpinion(ctx: DemoContext, ref: Partial<Referral>, consentId: string): Promise<void> {
  const id = ref.id;
  if (!id) throw new DemoError('the first referral was not created');
  const before = await summaryOf(ctx, id);

  step(17, 'A third opinion: St Olaf adds Riverside Imaging to the completed referral (POST /second-opinions/{id}/consultants)');
  fact('why', 'both opinions disagree with the planned revision; the patient wants a third view before deciding');
  fact('consent', `St Olaf's EHR records the patient's consent to disclose to Riverside: Consent/${consentId}`);
  const added = await ctx.api.expect<{ serviceRequest: ServiceRequest; tasks: Task[] }>(201, REFERRER, 'POST', `/second-opinions/${id}/consultants`, {
    consultants: [CONSULTANT_C],
    consent: { reference: `Consent/${consentId}` },
  });
  const sr = added.body.serviceRequest;
  const task = added.body.tasks[0];
  if (!task?.id) throw new DemoError('adding a consultant returned no Task');
  fact('response', `201 Created: ServiceRequest/${id} ${before.status} -> ${sr.status} (v${sr.meta?.versionId}), performers ${(sr.performer ?? []).map((p) => p.display).join(', ')}`);
  fact('work item', `Task/${task.id} for ${task.owner?.display}: ${taskState(task)}, due ${task.restriction?.period?.end?.slice(0, 10)} (routine priority, as the first two)`);
  const again = await ctx.api.call(REFERRER, 'POST', `/second-opinions/${id}/consultants`, { consultants: [CONSULTANT_C] });
  fact('guard', `the same post again -> ${again.status}: Riverside is already on the referral (nothing added)`);
  const ready = await waitFor(
    "Riverside's admission to the record set",
    async () => {
      const s = await summaryOf(ctx, id);
      return s.consultants.find((c) => c.task.id === task.id)?.task.businessStatus === 'records-ready' ? s : undefined;
    },
    { timeoutMs: ctx.waitMs, describeState: () => describeReferral(ctx, id) },
  );
  const own = (await ctx.api.expect<Task>(200, CONSULTANT_C, 'GET', `/fhir/Task/${task.id}`)).body;
  const input = own.input?.[0]?.valueReference?.reference;
  if (input !== `Bundle/${before.recordSet.bundleId}` || ready.recordSet.bundleId !== before.recordSet.bundleId) throw new DemoError(`Riverside should receive the current record set Bundle/${before.recordSet.bundleId}, got ${input}`);
  fact('record set', `Task input ${input}: the very record set Lakeside and Northfield had (records revision ${ready.recordSet.recordsRevision}, nothing assembled again); only the Consent was read from the EHR`);
  const noteA = ref.notes?.[CONSULTANT_A];
  const hidden = [noteA ? `DocumentReference/${noteA}` : undefined, ref.withheldBundleId ? `Bundle/${ref.withheldBundleId}` : undefined].filter((r): r is string => r !== undefined);
  for (const reference of hidden) {
    const status = (await ctx.api.call(CONSULTANT_C, 'GET', `/fhir/${reference}`)).status;
    if (status !== 404) throw new DemoError(`blinding: Riverside has not answered yet and must not read ${reference}, got HTTP ${status}`);
  }
  fact('blinding', `before its own opinion Riverside reads neither Lakeside's opinion nor the first opinion: ${hidden.map((r) => `GET ${r} -> 404`).join(', ')}`);
  await ctx.tracker.report();

  step(18, "Riverside returns its opinion: the other opinions are released to it, the referral completes again, the opinion reaches St Olaf's EHR");
  for (const action of ['accept', 'start'] as const) {
    const t = (await ctx.api.expect<Task>(200, CONSULTANT_C, 'POST', `/consults/${task.id}/${action}`)).body;
    fact(action, `POST /consults/${task.id}/${action} -> 200, Task ${taskState(t)}`);
  }
  const done = (await ctx.api.expect<Task>(200, CONSULTANT_C, 'POST', `/consults/${task.id}/opinion`, OPINION_C)).body;
  const note = done.output?.[0]?.valueReference?.reference;
  fact('opinion', `POST /consults/${task.id}/opinion -> 200, Task ${taskState(done)}, output ${note}`);
  if (note) ctx.tracker.label(note, "Riverside's opinion");
  for (const reference of hidden) {
    const status = (await ctx.api.call(CONSULTANT_C, 'GET', `/fhir/${reference}`)).status;
    if (status !== 200) throw new DemoError(`after its own opinion Riverside should read ${reference}, got HTTP ${status}`);
  }
  fact('released', `${hidden.map((r) => `GET ${r} -> 200`).join(', ')} (one disclosure AuditEvent)`);
  const referral = (await ctx.api.expect<ServiceRequest>(200, REFERRER, 'GET', `/fhir/ServiceRequest/${id}`)).body;
  if (referral.status !== 'completed') throw new DemoError(`with every Task ended the referral should be completed again, got ${referral.status}`);
  fact('referral', `ServiceRequest/${id} ${referral.status} again (v${referral.meta?.versionId})`);
  const delivered = await waitFor(
    "Riverside's post-back",
    async () => {
      const s = await summaryOf(ctx, id);
      const c = s.consultants.find((x) => x.task.id === task.id);
      return c?.delivery?.status === 'delivered' ? c : undefined;
    },
    { timeoutMs: ctx.waitMs, describeState: () => describeReferral(ctx, id) },
  );
  fact('post-back', `delivered after ${delivered.delivery?.attempts} attempt(s): on the EHR ${delivered.delivery?.remoteDocument?.replace(`${ctx.ehrBaseUrl}/`, '')}`);
  const comparison = (await ctx.api.expect<Comparison>(200, REFERRER, 'GET', `/second-opinions/${id}/comparison`)).body;
  if (comparison.opinions.length !== 3) throw new DemoError(`the comparison should hold three opinions, got ${comparison.opinions.length}`);
  printComparison(comparison, (o) => (o.source === 'first-opinion' ? 'First opinion (St Olaf)' : (SHORT_NAMES[o.source] ?? o.name)));
  await ctx.tracker.report();
}
