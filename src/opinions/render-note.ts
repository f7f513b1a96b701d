/**
 * The readable consult note: a self-contained HTML document rendered from the opinion (no
 * scripts, no external resources; every value escaped). It is the consult note's first
 * attachment, what a clinician opens in the EHR.
 */
import type { ReferralQuestion } from '../intake/intake-request.ts';
import { AGREEMENT_DISPLAY, type OpinionPoints } from './opinion.ts';

export interface NoteContext {
  consultant: string;
  date: Date;
  /** The referral, as the referrer knows it (its own request id), when known. */
  requestId?: string;
  question?: string;
  /** The referral's questions, each shown with the opinion's answer to it. */
  questions?: readonly ReferralQuestion[];
}

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

export function renderOpinionHtml(opinion: OpinionPoints, context: NoteContext): string {
  const e = escapeHtml;
  const para = (t: string) => t.split(/\n{2,}/).map((p) => `<p>${e(p).replace(/\n/g, '<br>')}</p>`).join('');
  const list = (items: readonly string[]) => (items.length ? `<ul>${items.map((i) => `<li>${e(i)}</li>`).join('')}</ul>` : '<p>None.</p>');
  const diagnosis = opinion.diagnosis.map((c) => `${c.display ?? c.code} (${c.system}|${c.code})`);
  const recommendations = opinion.recommendations.length
    ? `<table><thead><tr><th>Option</th><th>Preferred</th><th>Rationale</th><th>Risks</th><th>Recovery</th></tr></thead><tbody>${opinion.recommendations
        .map(
          (r) =>
            `<tr><td>${e(r.option)}</td><td>${r.preferred ? '<strong>Preferred</strong>' : ''}</td><td>${e(r.rationale ?? '')}</td><td>${r.risks.length ? `<ul>${r.risks.map((x) => `<li>${e(x)}</li>`).join('')}</ul>` : ''}</td><td>${e(r.recovery ?? '')}</td></tr>`,
        )
        .join('')}</tbody></table>`
    : '<p>None.</p>';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Second opinion</title>
<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;line-height:1.4}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .5em;vertical-align:top;text-align:left}</style>
</head><body>
<h1>Second opinion</h1>
<p>By ${e(context.consultant)}, ${e(context.date.toISOString().slice(0, 10))}${context.requestId ? `, for request ${e(context.requestId)}` : ''}.</p>
${context.question ? `<h2>Question</h2>${para(context.question)}` : ''}
<h2>Diagnosis</h2>
<p>Agreement with the first opinion: <strong>${e(AGREEMENT_DISPLAY[opinion.diagnosisAgreement])}</strong></p>
${list(diagnosis)}
<h2>Plan</h2>
<p>Agreement with the first plan: <strong>${e(AGREEMENT_DISPLAY[opinion.planAgreement])}</strong></p>
<h2>Summary</h2>
${para(opinion.summary)}
<h2>Options</h2>
${recommendations}
<h2>Missing information</h2>
${list(opinion.missingInformation)}
${opinion.followUp ? `<h2>Follow-up</h2>${para(opinion.followUp)}` : ''}
${answersSection(opinion, context.questions ?? [])}
</body></html>
`;
}

/** Each of the referral's questions with the opinion's answer (or why it could not be answered). */
function answersSection(opinion: OpinionPoints, questions: readonly ReferralQuestion[]): string {
  if (questions.length === 0) return '';
  const e = escapeHtml;
  const items = questions.map((q, index) => {
    const answer = opinion.answers.find((a) => a.question === index);
    const reply = answer?.text !== undefined ? `<p>${e(answer.text)}</p>` : answer?.notAnswerable !== undefined ? `<p><em>Not answered:</em> ${e(answer.notAnswerable)}</p>` : '<p><em>No answer.</em></p>';
    return `<li><p><strong>${e(q.text)}</strong> <small>(asked by the ${e(q.askedBy)})</small></p>${reply}</li>`;
  });
  return `<h2>Your questions</h2><ol start="0">${items.join('')}</ol>`;
}
