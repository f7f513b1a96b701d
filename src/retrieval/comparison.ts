/**
 * `GET /second-opinions/{id}/comparison` (issue 4 §4): the first opinion and every returned
 * opinion side by side on the same points (diagnosis, plan, agreement, options with the
 * preferred one, key risks, recovery, missing information), and, with two or more opinions,
 * where they agree and where they differ, and each opinion's concordance with the first one
 * (diagnosis and plan classes, kept on its consult note; concordance/classify.ts). JSON for
 * systems, HTML for a physician to read.
 */
import { createHash } from 'node:crypto';
import type { ClinicalImpression, DocumentReference, Task } from '@medplum/fhirtypes';
import { auditedRead, requestedEntity } from '../audit/audited-read.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { Caller } from '../access/caller.ts';
import { readOpinionExtension } from '../opinions/consult-note.ts';
import type { Concordance } from '../concordance/classify.ts';
import { readConcordance } from '../concordance/concordance-extension.ts';
import { DIAGNOSIS_CONCORDANCE, PLAN_CONCORDANCE } from '../fhir/constants.ts';
import { AGREEMENT_DISPLAY, type Agreement, type Answer } from '../opinions/opinion.ts';
import type { QuestionAsker } from '../intake/intake-request.ts';
import { clinicalQuestionOf, readReferralQuestions } from '../intake/referral-questions.ts';
import { escapeHtml } from '../opinions/render-note.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { findVisibleReferral } from '../intake/referral-access.ts';
import { type FollowUpEntry, readFollowUpThreads } from '../followups/threads.ts';

export interface ComparedOption {
  option: string;
  preferred: boolean;
  risks: string[];
  recovery?: string;
}

export interface ComparedOpinion {
  /** `first-opinion`, or the consultant's participant id. */
  source: string;
  name: string;
  date?: string;
  diagnosis: { system?: string; code?: string; display?: string }[];
  /** The first opinion's plan, or a consultant's summary. */
  plan?: string;
  diagnosisAgreement?: Agreement;
  planAgreement?: Agreement;
  options: ComparedOption[];
  preferredOption?: string;
  keyRisks: string[];
  recovery?: string;
  missingInformation: string[];
  followUp?: string;
  documentReference?: string;
  /** The follow-up questions the referrer asked this consultant after its opinion, with the answers (issue 14 §2). */
  followUps?: FollowUpEntry[];
  /** How this opinion compares with the first one; absent for the first opinion and when there is none. */
  concordance?: Concordance;
}

export interface PointComparison {
  point: 'diagnosis' | 'diagnosisAgreement' | 'planAgreement' | 'preferredOption' | 'keyRisks' | 'missingInformation';
  agree: boolean;
  /** What they share (agree) or how each differs. */
  detail: string;
}

/** One of the referral's questions with each consultant's answer, side by side (issue 14 §1). */
export interface ComparedQuestion {
  index: number;
  text: string;
  askedBy: QuestionAsker;
  /** One per returned opinion, in the order of `opinions`: the answer, or why it was not answered. */
  answers: { source: string; name: string; text?: string; notAnswerable?: string }[];
}

export interface Comparison {
  referral: { id: string; question?: string; kind?: string };
  /** The referral's questions, each with every returned opinion's answer. */
  questions: ComparedQuestion[];
  first?: ComparedOpinion;
  opinions: ComparedOpinion[];
  /** Consultants whose opinion is not in yet, with their Task status. */
  pending: { source: string; name: string; status: string }[];
  /** With two or more opinions: point by point, whether they agree. */
  agreement?: PointComparison[];
}

export interface ComparisonDeps {
  store: ResourceStore;
  participantByOrganization(reference: string): { id: string; name: string } | undefined;
  audit: AuditLog;
  now: () => Date;
}

export async function getComparison(id: string, caller: Caller, deps: ComparisonDeps): Promise<Comparison> {
  return auditedRead(
    deps.audit,
    caller,
    {
      action: 'read',
      // Clients poll the summary: a minute of polling by one client is one AuditEvent with a read count.
      coalesce: true,
      requested: requestedEntity('ServiceRequest', id),
      touched: (c) => ({
        entities: [{ reference: `ServiceRequest/${id}` }, ...c.opinions.flatMap((o) => (o.documentReference ? [{ reference: o.documentReference }] : []))],
      }),
    },
    // Role and scope: the route's guard (access/route-rules.ts); visibility: findVisibleReferral.
    async () => loadComparison(id, caller, deps),
  );
}

async function loadComparison(id: string, caller: Caller, deps: ComparisonDeps): Promise<Comparison> {
  const { placed, serviceRequest, reader } = await findVisibleReferral(id, caller, deps.store);
  const tasks = await deps.store.readMany<Task>('Task', placed.taskIds, reader);
  const firstRef = serviceRequest.supportingInfo?.find((s) => s.reference?.startsWith('ClinicalImpression/'))?.reference;
  const first = firstRef ? await deps.store.read<ClinicalImpression>('ClinicalImpression', firstRef.slice('ClinicalImpression/'.length), reader) : undefined;

  const threads = await readFollowUpThreads(deps.store, placed.taskIds, reader, deps.now());
  const opinions: ComparedOpinion[] = [];
  const answers: Answer[][] = [];
  const pending: Comparison['pending'] = [];
  for (const task of tasks) {
    const participant = deps.participantByOrganization(task.owner?.reference ?? '');
    const source = participant?.id ?? task.owner?.reference ?? 'unknown';
    const name = participant?.name ?? task.owner?.display ?? source;
    const noteRef = task.output?.find((o) => o.valueReference?.reference?.startsWith('DocumentReference/'))?.valueReference?.reference;
    const note = noteRef ? await deps.store.read<DocumentReference>('DocumentReference', noteRef.slice('DocumentReference/'.length), reader) : undefined;
    const points = note ? readOpinionExtension(note) : undefined;
    if (!note || !points) {
      pending.push({ source, name, status: task.status });
      continue;
    }
    const preferred = points.recommendations.find((r) => r.preferred);
    answers.push(points.answers);
    const concordance = readConcordance(note);
    opinions.push({
      source,
      name,
      ...(note.date ? { date: note.date } : {}),
      diagnosis: points.diagnosis,
      plan: points.summary,
      diagnosisAgreement: points.diagnosisAgreement,
      planAgreement: points.planAgreement,
      options: points.recommendations.map((r) => ({ option: r.option, preferred: r.preferred, risks: r.risks, ...(r.recovery ? { recovery: r.recovery } : {}) })),
      ...(preferred ? { preferredOption: preferred.option } : {}),
      keyRisks: preferred?.risks ?? points.recommendations.flatMap((r) => r.risks),
      ...(preferred?.recovery ? { recovery: preferred.recovery } : {}),
      missingInformation: points.missingInformation,
      ...(points.followUp ? { followUp: points.followUp } : {}),
      documentReference: noteRef as string,
      followUps: threads.get(task.id as string) ?? [],
      ...(concordance ? { concordance } : {}),
    });
  }

  const question = clinicalQuestionOf(serviceRequest);
  return {
    referral: { id, ...(question ? { question } : {}), ...(serviceRequest.code?.coding?.[0]?.code ? { kind: serviceRequest.code.coding[0].code } : {}) },
    questions: readReferralQuestions(serviceRequest).map((q, index) => ({
      index,
      ...q,
      answers: opinions.map((o, i) => {
        const a = answers[i]?.find((x) => x.question === index);
        return { source: o.source, name: o.name, ...(a?.text !== undefined ? { text: a.text } : {}), ...(a?.notAnswerable !== undefined ? { notAnswerable: a.notAnswerable } : {}) };
      }),
    })),
    ...(first ? { first: firstOpinionOf(first) } : {}),
    opinions,
    pending,
    ...(opinions.length >= 2 ? { agreement: comparePoints(opinions) } : {}),
  };
}

function firstOpinionOf(ci: ClinicalImpression): ComparedOpinion {
  return {
    source: 'first-opinion',
    name: 'First opinion',
    ...(ci.date ? { date: ci.date } : {}),
    diagnosis: (ci.finding ?? []).flatMap((f) => f.itemCodeableConcept?.coding ?? []).map((c) => ({ ...(c.system ? { system: c.system } : {}), ...(c.code ? { code: c.code } : {}), ...(c.display ? { display: c.display } : {}) })),
    ...(ci.summary ? { plan: ci.summary } : {}),
    options: [],
    keyRisks: [],
    missingInformation: [],
  };
}

const norm = (s: string) => s.trim().toLowerCase().replace(/\s+/g, ' ');

/** Where two or more opinions agree, point by point. */
export function comparePoints(opinions: readonly ComparedOpinion[]): PointComparison[] {
  const sameValue = (point: PointComparison['point'], values: (string | undefined)[], label: (v: string) => string = (v) => v): PointComparison => {
    const distinct = [...new Set(values.map((v) => (v === undefined ? '(none)' : v)))];
    return distinct.length === 1
      ? { point, agree: true, detail: `All: ${label(distinct[0] as string)}` }
      : { point, agree: false, detail: opinions.map((o, i) => `${o.name}: ${values[i] === undefined ? '(none)' : label(values[i] as string)}`).join('; ') };
  };
  const codes = opinions.map((o) => o.diagnosis.map((d) => `${d.system}|${d.code}`).sort().join(','));
  const diagnosisNames = opinions.map((o) => o.diagnosis.map((d) => d.display ?? d.code).join(', ') || '(none)');
  const diagnosis: PointComparison = new Set(codes).size === 1
    ? { point: 'diagnosis', agree: true, detail: `All: ${diagnosisNames[0]}` }
    : { point: 'diagnosis', agree: false, detail: opinions.map((o, i) => `${o.name}: ${diagnosisNames[i]}`).join('; ') };
  const risks = opinions.map((o) => new Set(o.keyRisks.map(norm)));
  const sharedRisks = [...(risks[0] ?? [])].filter((r) => risks.every((set) => set.has(r)));
  const missing = opinions.map((o) => new Set(o.missingInformation.map(norm)));
  const sharedMissing = [...(missing[0] ?? [])].filter((r) => missing.every((set) => set.has(r)));
  return [
    diagnosis,
    sameValue('diagnosisAgreement', opinions.map((o) => o.diagnosisAgreement), (v) => AGREEMENT_DISPLAY[v as Agreement] ?? v),
    sameValue('planAgreement', opinions.map((o) => o.planAgreement), (v) => AGREEMENT_DISPLAY[v as Agreement] ?? v),
    sameValue('preferredOption', opinions.map((o) => (o.preferredOption ? norm(o.preferredOption) : undefined))),
    sharedRisks.length > 0 && risks.every((set) => set.size === sharedRisks.length)
      ? { point: 'keyRisks', agree: true, detail: `All: ${sharedRisks.join(', ')}` }
      : { point: 'keyRisks', agree: false, detail: sharedRisks.length ? `Shared: ${sharedRisks.join(', ')}; otherwise they differ` : 'No key risk in common' },
    missing.every((set) => set.size === sharedMissing.length)
      ? { point: 'missingInformation', agree: true, detail: sharedMissing.length ? `All: ${sharedMissing.join(', ')}` : 'None missing' }
      : { point: 'missingInformation', agree: false, detail: sharedMissing.length ? `Shared: ${sharedMissing.join(', ')}; otherwise they differ` : 'They name different gaps' },
  ];
}

/** The page's only style, inline; the CSP allows exactly this text by its hash. */
const COMPARISON_STYLE = 'body{font-family:system-ui,sans-serif;margin:2em;line-height:1.4}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.4em .6em;vertical-align:top;text-align:left}.agree{color:#060}.differ{color:#a00}';

/**
 * The Content-Security-Policy of the comparison page (issue 10 §1.5): nothing may load but its
 * own inline style, named by its SHA-256 (CSP Level 3 hash source); no script, no frame, no
 * form, no base URL. The page shows PHI that other organizations wrote: even if a text slipped
 * past escaping, it could run nothing.
 */
export const COMPARISON_PAGE_CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(COMPARISON_STYLE).digest('base64')}'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`;

/** The comparison as a page a physician reads: one column per opinion, one row per point. */
export function renderComparisonHtml(c: Comparison): string {
  const e = escapeHtml;
  const columns = [...(c.first ? [c.first] : []), ...c.opinions];
  const row = (label: string, cell: (o: ComparedOpinion) => string) => `<tr><th>${e(label)}</th>${columns.map((o) => `<td>${cell(o)}</td>`).join('')}</tr>`;
  const list = (items: readonly string[]) => (items.length ? `<ul>${items.map((i) => `<li>${e(i)}</li>`).join('')}</ul>` : '');
  const agreement = (a?: Agreement) => (a ? e(AGREEMENT_DISPLAY[a]) : '');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Second opinions compared</title>
<style>${COMPARISON_STYLE}</style>
</head><body>
<h1>Second opinions compared</h1>
${c.referral.question ? `<p><strong>Question:</strong> ${e(c.referral.question)}</p>` : ''}
<table>
<thead><tr><th></th>${columns.map((o) => `<th>${e(o.name)}${o.date ? `<br><small>${e(o.date.slice(0, 10))}</small>` : ''}</th>`).join('')}</tr></thead>
<tbody>
${row('Diagnosis', (o) => list(o.diagnosis.map((d) => d.display ?? d.code ?? '')))}
${row('Agrees with the first diagnosis', (o) => agreement(o.diagnosisAgreement))}
${row('Plan / summary', (o) => e(o.plan ?? ''))}
${row('Agrees with the first plan', (o) => agreement(o.planAgreement))}
${row('Options', (o) => list(o.options.map((x) => `${x.option}${x.preferred ? ' (preferred)' : ''}`)))}
${row('Key risks', (o) => list(o.keyRisks))}
${row('Recovery', (o) => e(o.recovery ?? ''))}
${row('Missing information', (o) => list(o.missingInformation))}
${columns.some((o) => o.followUps?.length) ? row('Follow-up questions', (o) => followUpThread(o.followUps ?? [])) : ''}
${columns.some((o) => o.concordance) ? row('Compared with the first opinion', (o) => (o.concordance ? `Diagnosis: ${e(DIAGNOSIS_CONCORDANCE[o.concordance.diagnosis])}<br>Plan: ${e(PLAN_CONCORDANCE[o.concordance.plan])}` : '')) : ''}
</tbody></table>
${questionsTable(c)}
${c.pending.length ? `<p>Not in yet: ${c.pending.map((p) => `${e(p.name)} (${e(p.status)})`).join(', ')}</p>` : ''}
${c.agreement ? `<h2>Where they agree and differ</h2><ul>${c.agreement.map((a) => `<li class="${a.agree ? 'agree' : 'differ'}"><strong>${e(a.point)}</strong>: ${a.agree ? 'agree' : 'differ'}. ${e(a.detail)}</li>`).join('')}</ul>` : ''}
</body></html>
`;
}

/** One consultant's follow-up thread in a cell: each question, its answer (or when it is due) and the answer's post-back. */
function followUpThread(entries: readonly FollowUpEntry[]): string {
  const e = escapeHtml;
  if (entries.length === 0) return '';
  return `<ol>${entries
    .map((f) => {
      const asked = `<strong>Q</strong> <small>${e(f.askedAt.slice(0, 10))}</small>: ${e(f.text ?? '')}`;
      const answer = f.answer
        ? `<br><strong>A</strong> <small>${e(f.answer.answeredAt.slice(0, 10))}</small>: ${e(f.answer.text ?? '')}${f.delivery ? ` <small>(to your EHR: ${e(f.delivery.status)})</small>` : ''}`
        : `<br><small>Answer due ${e(f.due.slice(0, 10))}${f.overdue ? ' (overdue)' : ''}</small>`;
      return `<li>${asked}${answer}</li>`;
    })
    .join('')}</ol>`;
}

/** The referral's questions, one row each, with every consultant's answer in its own column. */
function questionsTable(c: Comparison): string {
  if (c.questions.length === 0) return '';
  const e = escapeHtml;
  const cell = (a: ComparedQuestion['answers'][number]) => (a.text !== undefined ? e(a.text) : a.notAnswerable !== undefined ? `<em>Not answered:</em> ${e(a.notAnswerable)}` : '');
  return `<h2>Questions answered</h2>
<table>
<thead><tr><th>Question</th>${c.opinions.map((o) => `<th>${e(o.name)}</th>`).join('')}</tr></thead>
<tbody>
${c.questions.map((q) => `<tr><th>${q.index}. ${e(q.text)}<br><small>asked by the ${e(q.askedBy)}</small></th>${q.answers.map((a) => `<td>${cell(a)}</td>`).join('')}</tr>`).join('\n')}
</tbody></table>`;
}
