/**
 * `GET /second-opinions/{id}/comparison`: the first opinion and every returned
 * opinion side by side on the same points (diagnosis, plan, agreement, options with the
 * preferred one, key risks, recovery, missing information), and, with two or more opinions,
 * where they agree and where they differ, and each opinion's concordance with the first one
 * (diagnosis and plan classes, kept on its consult note; concordance/classify.ts). JSON for
 * systems, HTML for a physician to read.
 */
import { createHash } from 'node:crypto';
import type { ClinicalImpression, DocumentReference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { auditedRead, patientOf, requestedEntity } from '../audit/audited-read.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { Caller } from '../access/caller.ts';
import { readOpinionExtension } from '../opinions/consult-note.ts';
import type { Concordance } from '../concordance/classify.ts';
import { readConcordance } from '../concordance/concordance-extension.ts';
import { DIAGNOSIS_CONCORDANCE, KIND_DISPLAY, type Kind, PLAN_CONCORDANCE } from '../fhir/constants.ts';
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
  /** Why the consultant offers this option, as the consult note has it. */
  rationale?: string;
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
  /** The follow-up questions the referrer asked this consultant after its opinion, with the answers. */
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

/** One of the referral's questions with each consultant's answer, side by side. */
export interface ComparedQuestion {
  index: number;
  text: string;
  askedBy: QuestionAsker;
  /** One per returned opinion, in the order of `opinions`: the answer, or why it was not answered. */
  answers: { source: string; name: string; text?: string; notAnswerable?: string }[];
}

/** Who the referral is about, as the ServiceRequest names the patient (reference on the referrer's EHR, identifier, name). */
export interface ComparedPatient {
  reference?: string;
  identifier?: { system?: string; value?: string };
  display?: string;
}

export interface Comparison {
  /** The referral: this service's id, the referrer's own request id, the patient, the kind, when it was placed, the clinical question. */
  referral: { id: string; requestId?: string; patient?: ComparedPatient; kind?: string; authoredOn?: string; question?: string };
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
      touched: (c) => {
        // The comparison names the patient: the read is audited against them, as the referral summary is.
        const patientReference = patientOf({ resourceType: 'ServiceRequest', subject: c.referral.patient } as ServiceRequest);
        return {
          entities: [{ reference: `ServiceRequest/${id}` }, ...c.opinions.flatMap((o) => (o.documentReference ? [{ reference: o.documentReference }] : []))],
          ...(patientReference ? { patientReference } : {}),
        };
      },
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
      options: points.recommendations.map((r) => ({ option: r.option, preferred: r.preferred, ...(r.rationale ? { rationale: r.rationale } : {}), risks: r.risks, ...(r.recovery ? { recovery: r.recovery } : {}) })),
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
  const requestId = serviceRequest.identifier?.find((i) => i.type?.coding?.some((c) => c.code === 'PLAC'))?.value;
  const subject = serviceRequest.subject;
  const patient: ComparedPatient | undefined = subject
    ? {
        ...(subject.reference ? { reference: subject.reference } : {}),
        ...(subject.identifier ? { identifier: { ...(subject.identifier.system ? { system: subject.identifier.system } : {}), ...(subject.identifier.value ? { value: subject.identifier.value } : {}) } } : {}),
        ...(subject.display ? { display: subject.display } : {}),
      }
    : undefined;
  return {
    referral: {
      id,
      ...(requestId ? { requestId } : {}),
      ...(patient ? { patient } : {}),
      ...(serviceRequest.code?.coding?.[0]?.code ? { kind: serviceRequest.code.coding[0].code } : {}),
      ...(serviceRequest.authoredOn ? { authoredOn: serviceRequest.authoredOn } : {}),
      ...(question ? { question } : {}),
    },
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

/**
 * The page's only style, inline; the CSP allows exactly this text by its hash. On paper each
 * returned opinion gets an A4 page of its own, headed by the patient and the referral; the
 * side-by-side table and the agreement summary are for the screen.
 */
const COMPARISON_STYLE = [
  'body{font-family:system-ui,sans-serif;margin:2em;line-height:1.4;color:#111;background:#fff}',
  'table{border-collapse:collapse}td,th{border:1px solid #767676;padding:.4em .6em;vertical-align:top;text-align:left}',
  '.agree{color:#060}.differ{color:#a00}',
  'dt{font-weight:bold}dd{margin:0 0 .4em 1.5em}dd ul,dd ol{margin:0;padding-left:1.2em}',
  '.opinion{border-top:2px solid #666;margin-top:1.5em}.print-only{display:none}',
  '@media print{@page{size:A4;margin:14mm}body{margin:0;font-size:10pt;line-height:1.3}.screen-only{display:none}.print-only{display:block}',
  '.opinion{border:0;margin:0;break-inside:avoid}.opinion+.opinion{break-before:page}.print-only{border-bottom:1px solid #666;margin-bottom:.6em}}',
].join('');

/**
 * The Content-Security-Policy of the comparison page: nothing may load but its
 * own inline style, named by its SHA-256 (CSP Level 3 hash source); no script, no frame, no
 * form, no base URL. The page shows PHI that other organizations wrote: even if a text slipped
 * past escaping, it could run nothing.
 */
export const COMPARISON_PAGE_CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(COMPARISON_STYLE).digest('base64')}'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`;

const e = escapeHtml;
const day = (iso: string) => e(iso.slice(0, 10));
const kindName = (kind: string) => KIND_DISPLAY[kind as Kind] ?? kind;
const diagnosisName = (d: ComparedOpinion['diagnosis'][number]) => d.display ?? d.code ?? '';

/** The patient as the referral names them: name, identifier (its system in brackets), reference on the referrer's EHR. */
function patientText(p: ComparedPatient | undefined): string {
  if (!p) return '';
  const identifier = p.identifier?.value ? `${e(p.identifier.value)}${p.identifier.system ? ` <small>(${e(p.identifier.system)})</small>` : ''}` : '';
  return [p.display ? e(p.display) : '', identifier, p.reference ? `<small>${e(p.reference)}</small>` : ''].filter(Boolean).join(', ');
}

/** The referral as the referrer knows it: its own request id, then this service's id, the kind and the date placed. */
function referralText(r: Comparison['referral']): string {
  return [r.requestId ? `${e(r.requestId)}` : '', `<small>${e(r.id)}</small>`, r.kind ? e(kindName(r.kind)) : '', r.authoredOn ? `placed ${day(r.authoredOn)}` : ''].filter(Boolean).join(', ');
}

/** The comparison as a page a physician reads: one column per opinion, one row per point, then each opinion in full. */
export function renderComparisonHtml(c: Comparison): string {
  const columns = [...(c.first ? [c.first] : []), ...c.opinions];
  const row = (label: string, cell: (o: ComparedOpinion) => string) => `<tr><th>${e(label)}</th>${columns.map((o) => `<td>${cell(o)}</td>`).join('')}</tr>`;
  const list = (items: readonly string[]) => (items.length ? `<ul>${items.map((i) => `<li>${e(i)}</li>`).join('')}</ul>` : '');
  const agreement = (a?: Agreement) => (a ? e(AGREEMENT_DISPLAY[a]) : '');
  const option = (x: ComparedOption) => `${e(x.option)}${x.preferred ? ' (preferred)' : ''}${x.rationale ? `<br><small>Rationale: ${e(x.rationale)}</small>` : ''}`;
  // With opinions to print, the overview is for the screen only; without, it is all there is to print.
  const screenOnly = c.opinions.length ? ' class="screen-only"' : '';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Second opinions compared</title>
<style>${COMPARISON_STYLE}</style>
</head><body><main>
<div${screenOnly}>
<h1>Second opinions compared</h1>
<dl>
${c.referral.patient ? `<dt>Patient</dt><dd>${patientText(c.referral.patient)}</dd>` : ''}
<dt>Referral</dt><dd>${referralText(c.referral)}</dd>
${c.referral.question ? `<dt>Question</dt><dd>${e(c.referral.question)}</dd>` : ''}
</dl>
<h2>Side by side</h2>
<table>
<thead><tr><th>Point</th>${columns.map((o) => `<th>${e(o.name)}${o.date ? `<br><small>${day(o.date)}</small>` : ''}</th>`).join('')}</tr></thead>
<tbody>
${row('Diagnosis', (o) => list(o.diagnosis.map(diagnosisName)))}
${row('Agrees with the first diagnosis', (o) => agreement(o.diagnosisAgreement))}
${row('Plan / summary', (o) => e(o.plan ?? ''))}
${row('Agrees with the first plan', (o) => agreement(o.planAgreement))}
${row('Options', (o) => (o.options.length ? `<ul>${o.options.map((x) => `<li>${option(x)}</li>`).join('')}</ul>` : ''))}
${row('Key risks', (o) => list(o.keyRisks))}
${row('Recovery', (o) => e(o.recovery ?? ''))}
${row('Missing information', (o) => list(o.missingInformation))}
${columns.some((o) => o.followUp) ? row('Follow-up', (o) => e(o.followUp ?? '')) : ''}
${columns.some((o) => o.followUps?.length) ? row('Follow-up questions', (o) => followUpThread(o.followUps ?? [])) : ''}
${columns.some((o) => o.concordance) ? row('Compared with the first opinion', (o) => (o.concordance ? concordanceText(o.concordance) : '')) : ''}
</tbody></table>
${questionsTable(c)}
${c.pending.length ? `<p>Not in yet: ${c.pending.map((p) => `${e(p.name)} (${e(p.status)})`).join(', ')}</p>` : ''}
${c.agreement ? `<h2>Where they agree and differ</h2><ul>${c.agreement.map((a) => `<li class="${a.agree ? 'agree' : 'differ'}"><strong>${e(a.point)}</strong>: ${a.agree ? 'agree' : 'differ'}. ${e(a.detail)}</li>`).join('')}</ul>` : ''}
${c.opinions.length ? '<h2>Each opinion in full</h2>' : ''}
</div>
${c.opinions.map((o, i) => opinionSection(c, o, i)).join('\n')}
</main></body></html>
`;
}

const concordanceText = (k: Concordance) => `Diagnosis: ${e(DIAGNOSIS_CONCORDANCE[k.diagnosis])}<br>Plan: ${e(PLAN_CONCORDANCE[k.plan])}`;

/**
 * One returned opinion in full: on screen under the table, on paper a page of its own headed by
 * the patient, the referral and the first opinion it is compared with.
 */
function opinionSection(c: Comparison, o: ComparedOpinion, index: number): string {
  const item = (label: string, value: string) => (value ? `<dt>${e(label)}</dt><dd>${value}</dd>` : '');
  const list = (items: readonly string[]) => (items.length ? `<ul>${items.map((i) => `<li>${e(i)}</li>`).join('')}</ul>` : '');
  const options = o.options.length
    ? `<ol>${o.options
        .map(
          (x) =>
            `<li>${e(x.option)}${x.preferred ? ' <strong>(preferred)</strong>' : ''}${x.rationale ? `<br>Rationale: ${e(x.rationale)}` : ''}${x.risks.length ? `<br>Risks: ${e(x.risks.join('; '))}` : ''}${x.recovery ? `<br>Recovery: ${e(x.recovery)}` : ''}</li>`,
        )
        .join('')}</ol>`
    : '';
  const answers = c.questions
    .map((q) => ({ q, a: q.answers.find((a) => a.source === o.source) }))
    .filter(({ a }) => a && (a.text !== undefined || a.notAnswerable !== undefined))
    .map(({ q, a }) => `<li>${e(q.text)}<br>${a?.text !== undefined ? e(a.text) : `<em>Not answered:</em> ${e(a?.notAnswerable ?? '')}`}</li>`);
  const first = c.first;
  const id = `opinion-${index + 1}`;
  return `<section class="opinion" aria-labelledby="${id}">
<div class="print-only">
<p><strong>Second opinion ${index + 1} of ${c.opinions.length}</strong>${c.referral.patient ? ` &middot; Patient: ${patientText(c.referral.patient)}` : ''} &middot; Referral: ${referralText(c.referral)}</p>
${c.referral.question ? `<p>Question: ${e(c.referral.question)}</p>` : ''}
${first ? `<p>First opinion: ${e(first.diagnosis.map(diagnosisName).join(', ') || '(no diagnosis)')}${first.plan ? `; plan: ${e(first.plan)}` : ''}</p>` : ''}
${c.pending.length ? `<p>Not in yet: ${c.pending.map((p) => `${e(p.name)} (${e(p.status)})`).join(', ')}</p>` : ''}
</div>
<h3 id="${id}">${e(o.name)}${o.date ? ` <small>${day(o.date)}</small>` : ''}</h3>
<dl>
${item('Diagnosis', list(o.diagnosis.map(diagnosisName)))}
${item('Agrees with the first diagnosis', o.diagnosisAgreement ? e(AGREEMENT_DISPLAY[o.diagnosisAgreement]) : '')}
${item('Plan / summary', e(o.plan ?? ''))}
${item('Agrees with the first plan', o.planAgreement ? e(AGREEMENT_DISPLAY[o.planAgreement]) : '')}
${item('Options', options)}
${item('Missing information', list(o.missingInformation))}
${item('Follow-up', e(o.followUp ?? ''))}
${item('Answers to the referral\'s questions', answers.length ? `<ol>${answers.join('')}</ol>` : '')}
${item('Follow-up questions', followUpThread(o.followUps ?? []))}
${item('Compared with the first opinion', o.concordance ? concordanceText(o.concordance) : '')}
</dl>
</section>`;
}

/** One consultant's follow-up thread in a cell: each question, its answer (or when it is due) and the answer's post-back. */
function followUpThread(entries: readonly FollowUpEntry[]): string {
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
  const cell = (a: ComparedQuestion['answers'][number]) => (a.text !== undefined ? e(a.text) : a.notAnswerable !== undefined ? `<em>Not answered:</em> ${e(a.notAnswerable)}` : '');
  return `<h2>Questions answered</h2>
<table>
<thead><tr><th>Question</th>${c.opinions.map((o) => `<th>${e(o.name)}</th>`).join('')}</tr></thead>
<tbody>
${c.questions.map((q) => `<tr><th>${q.index}. ${e(q.text)}<br><small>asked by the ${e(q.askedBy)}</small></th>${q.answers.map((a) => `<td>${cell(a)}</td>`).join('')}</tr>`).join('\n')}
</tbody></table>`;
}
