/**
 * Step 19 of the demo: after the JSON referral's opinions are in St Olaf's EHR, St Olaf asks
 * Lakeside a follow-up question, Lakeside sees it in its worklist and answers, and the answer
 * reaches St Olaf's EHR exactly once (the question with it).
 */
import type { Bundle, Communication } from '@medplum/fhirtypes';
import type { Worklist } from '../../src/consults/worklist.ts';
import { SYSTEM } from '../../src/fhir/constants.ts';
import type { ReferralSummary } from '../../src/intake/get-referral-summary.ts';
import { DemoError, waitFor } from './http.ts';
import { fact, step } from './print.ts';
import { CONSULTANT_A, REFERRER } from './scenario.ts';
import { describeReferral, type DemoContext, type Referral } from './steps.ts';

export const FOLLOW_UP_QUESTION = 'Would an MRI of the knee change your view, or is the bone scan enough?';
export const FOLLOW_UP_ANSWER = 'The bone scan is enough; an MRI adds little around the implant. Aspirate first.';

export async function runFollowUp(ctx: DemoContext, ref: Partial<Referral>): Promise<void> {
  const { id, taskA } = ref;
  if (!id || !taskA) throw new DemoError('the follow-up step needs the JSON referral of steps 2-9');
  step(19, 'Follow-up: St Olaf asks Lakeside a question about its opinion; Lakeside answers; the answer reaches the EHR once');
  const asked = await ctx.api.expect<{ id: string; due: string; asked: number; limit: number }>(201, REFERRER, 'POST', `/second-opinions/${id}/consultants/${CONSULTANT_A}/questions`, { text: FOLLOW_UP_QUESTION });
  const question = asked.body.id;
  fact('question', `POST /second-opinions/${id}/consultants/${CONSULTANT_A}/questions -> 201, Communication/${question} (question ${asked.body.asked} of ${asked.body.limit}), answer due ${asked.body.due.slice(0, 10)}`);
  fact('', `"${FOLLOW_UP_QUESTION}"`);

  const list = (await ctx.api.expect<Worklist>(200, CONSULTANT_A, 'GET', '/consults')).body;
  const item = list.items.find((i) => i.task.id === taskA);
  const open = item?.followUps.find((f) => f.question === question);
  if (!item || !open) throw new DemoError(`Lakeside's worklist (GET /consults) does not show the open question Communication/${question} on Task/${taskA}`);
  fact('worklist', `GET /consults as Lakeside: Task/${taskA} ${item.task.status}, ${item.followUps.length} open follow-up question(s), this one due ${open.due.slice(0, 10)}; actions [${item.actions.join(', ')}]`);

  const answered = await ctx.api.expect<{ id: string }>(201, CONSULTANT_A, 'POST', `/consults/${taskA}/answers`, { question, text: FOLLOW_UP_ANSWER });
  const answer = answered.body.id;
  fact('answer', `POST /consults/${taskA}/answers -> 201, Communication/${answer} inResponseTo Communication/${question}`);
  fact('', `"${FOLLOW_UP_ANSWER}"`);
  const again = await ctx.api.call(CONSULTANT_A, 'POST', `/consults/${taskA}/answers`, { question, text: 'Again' });
  if (again.status !== 409) throw new DemoError(`answering the same question twice should be refused with 409, got ${again.status}`);
  fact('guard', 'answering the same question again -> 409 (nothing changes)');

  const summary = await waitFor(
    'the follow-up answer to be delivered',
    async () => {
      const s = (await ctx.api.expect<ReferralSummary>(200, REFERRER, 'GET', `/second-opinions/${id}`)).body;
      const entry = s.consultants.find((c) => c.task.id === taskA)?.followUps.find((f) => f.question === question);
      return entry?.delivery?.status === 'delivered' ? entry : undefined;
    },
    { timeoutMs: ctx.waitMs, describeState: () => describeReferral(ctx, id) },
  );
  const onEhr = async (ours: string) => {
    const found = await ctx.ehrClient.get<Bundle<Communication>>(`Communication?identifier=${encodeURIComponent(`${SYSTEM.followUpId}|${ours}`)}`);
    return found.entry?.map((e) => e.resource).filter((r): r is Communication => r?.resourceType === 'Communication') ?? [];
  };
  const [remoteQuestions, remoteAnswers] = [await onEhr(question), await onEhr(answer)];
  if (remoteQuestions.length !== 1 || remoteAnswers.length !== 1) throw new DemoError(`St Olaf's EHR holds ${remoteQuestions.length} question(s) and ${remoteAnswers.length} answer(s) for this follow-up; expected exactly one of each`);
  const remoteAnswer = remoteAnswers[0] as Communication;
  fact('post-back', `delivered after ${summary.delivery?.attempts} attempt(s): on the EHR Communication/${remoteQuestions[0]?.id} (the question) and Communication/${remoteAnswer.id} (inResponseTo ${remoteAnswer.inResponseTo?.[0]?.reference}, about ${remoteAnswer.about?.[0]?.reference})`);
  fact('check', 'read back from the EHR over FHIR by identifier: exactly one question and one answer');
  fact('thread', `GET /second-opinions/${id}: Lakeside asked ${summary.askedAt.slice(0, 10)}, answered ${summary.answer?.answeredAt.slice(0, 10)}, post-back ${summary.delivery?.status}`);
  await ctx.tracker.report();
}
