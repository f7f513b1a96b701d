/**
 * The opinion as a FHIR consult note (docs/fhir.md, "FHIR model"): a DocumentReference
 * (LOINC 11488-4, profile `consult-note`) whose first attachment is the readable note, with
 * the structured points in the `second-opinion` extension, and a Provenance naming the
 * consultant. Pure: ids, clock and context come in.
 */
import { createHash } from 'node:crypto';
import type { CodeableConcept, DocumentReference, Extension, Organization, Provenance, Reference } from '@medplum/fhirtypes';
import { EXTENSION, LOINC_DOC, PROFILE, SYSTEM } from '../fhir/constants.ts';
import { AGREEMENT, AGREEMENT_DISPLAY, type Agreement, type Opinion, type OpinionPoints } from './opinion.ts';
import type { ReferralQuestion } from '../intake/intake-request.ts';
import { renderOpinionHtml } from './render-note.ts';
import type { Concordance } from '../concordance/classify.ts';
import { concordanceExtension } from '../concordance/concordance-extension.ts';

export interface ConsultNoteArgs {
  id: string;
  opinion: Opinion;
  /** The patient, absolute on the referrer's EHR (as in Task.for). */
  patient: Reference;
  serviceRequestId: string;
  taskId: string;
  consultant: Reference<Organization>;
  now: Date;
  requestId?: string;
  question?: string;
  /** The referral's questions, shown in the readable note with the opinion's answers. */
  questions?: readonly ReferralQuestion[];
  /** How the opinion compares with the first one (concordance/classify.ts); absent without a first opinion. */
  concordance?: Concordance;
}

function inline(bytes: Buffer, contentType: string, title: string, creation: string) {
  return { contentType, data: bytes.toString('base64'), size: bytes.length, hash: createHash('sha1').update(bytes).digest('base64'), title, creation };
}

const agreement = (code: Agreement) => ({ system: SYSTEM.opinionAgreement, code, display: AGREEMENT_DISPLAY[code] });

/** The structured points as the `second-opinion` extension and one `second-opinion-option` per option, in order. */
export function opinionExtensions(opinion: OpinionPoints): Extension[] {
  const points: Extension = {
    url: EXTENSION.secondOpinion,
    extension: [
      { url: 'diagnosisAgreement', valueCoding: agreement(opinion.diagnosisAgreement) },
      { url: 'planAgreement', valueCoding: agreement(opinion.planAgreement) },
      ...opinion.diagnosis.map((c): Extension => ({ url: 'diagnosis', valueCodeableConcept: { coding: [{ system: c.system, code: c.code, ...(c.display ? { display: c.display } : {}) }] } })),
      { url: 'summary', valueString: opinion.summary },
      ...opinion.missingInformation.map((m): Extension => ({ url: 'missingInformation', valueString: m })),
      ...(opinion.followUp ? [{ url: 'followUp', valueString: opinion.followUp }] : []),
    ],
  };
  const options = opinion.recommendations.map(
    (r): Extension => ({
      url: EXTENSION.secondOpinionOption,
      extension: [
        { url: 'option', valueString: r.option },
        ...(r.preferred ? [{ url: 'preferred', valueBoolean: true }] : []),
        ...(r.rationale ? [{ url: 'rationale', valueString: r.rationale }] : []),
        ...r.risks.map((risk) => ({ url: 'risk', valueString: risk })),
        ...(r.recovery ? [{ url: 'recovery', valueString: r.recovery }] : []),
      ],
    }),
  );
  // One second-opinion-answer per answer to a referral question, by its index.
  const answers = opinion.answers.map(
    (a): Extension => ({
      url: EXTENSION.secondOpinionAnswer,
      extension: [
        { url: 'question', valueInteger: a.question },
        ...(a.text !== undefined ? [{ url: 'text', valueString: a.text }] : []),
        ...(a.notAnswerable !== undefined ? [{ url: 'notAnswerable', valueString: a.notAnswerable }] : []),
      ],
    }),
  );
  return [points, ...options, ...answers];
}

/** Reads the structured points back from a consult note (for the comparison); undefined when it has none. */
export function readOpinionExtension(doc: DocumentReference): OpinionPoints | undefined {
  const root = doc.extension?.find((e) => e.url === EXTENSION.secondOpinion);
  if (!root) return undefined;
  const all = (url: string) => (root.extension ?? []).filter((e) => e.url === url);
  const code = (url: string): Agreement => {
    const c = all(url)[0]?.valueCoding?.code;
    return (AGREEMENT as readonly string[]).includes(c ?? '') ? (c as Agreement) : 'agree';
  };
  const followUp = all('followUp')[0]?.valueString;
  return {
    diagnosisAgreement: code('diagnosisAgreement'),
    planAgreement: code('planAgreement'),
    diagnosis: all('diagnosis').flatMap((e) => (e.valueCodeableConcept as CodeableConcept | undefined)?.coding ?? []).map((c) => ({ system: c.system ?? '', code: c.code ?? '', ...(c.display ? { display: c.display } : {}) })),
    summary: all('summary')[0]?.valueString ?? '',
    recommendations: (doc.extension ?? [])
      .filter((e) => e.url === EXTENSION.secondOpinionOption)
      .map((r) => {
        const sub = (url: string) => (r.extension ?? []).filter((x) => x.url === url);
        const rationale = sub('rationale')[0]?.valueString;
        const recovery = sub('recovery')[0]?.valueString;
        return {
          option: sub('option')[0]?.valueString ?? '',
          preferred: sub('preferred')[0]?.valueBoolean === true,
          ...(rationale ? { rationale } : {}),
          risks: sub('risk').map((x) => x.valueString ?? ''),
          ...(recovery ? { recovery } : {}),
        };
      }),
    missingInformation: all('missingInformation').map((e) => e.valueString ?? ''),
    ...(followUp ? { followUp } : {}),
    answers: (doc.extension ?? [])
      .filter((e) => e.url === EXTENSION.secondOpinionAnswer)
      .map((a) => {
        const sub = (url: string) => (a.extension ?? []).find((x) => x.url === url);
        const text = sub('text')?.valueString;
        const notAnswerable = sub('notAnswerable')?.valueString;
        // A missing or non-integer index reads as -1: the opinion's schema refuses it, naming the answer.
        const question = sub('question')?.valueInteger;
        return { question: Number.isInteger(question) ? (question as number) : -1, ...(text !== undefined ? { text } : {}), ...(notAnswerable !== undefined ? { notAnswerable } : {}) };
      }),
  };
}

export function buildConsultNote(args: ConsultNoteArgs): DocumentReference {
  const created = args.now.toISOString();
  const { attachments, ...points } = args.opinion;
  const html = Buffer.from(
    renderOpinionHtml(points, {
      consultant: args.consultant.display ?? args.consultant.reference ?? 'Consultant',
      date: args.now,
      ...(args.requestId ? { requestId: args.requestId } : {}),
      ...(args.question ? { question: args.question } : {}),
      ...(args.questions?.length ? { questions: args.questions } : {}),
    }),
    'utf8',
  );
  return {
    resourceType: 'DocumentReference',
    id: args.id,
    meta: { profile: [PROFILE.consultNote] },
    extension: [...opinionExtensions(points), ...(args.concordance ? [concordanceExtension(args.concordance)] : [])],
    identifier: [{ system: SYSTEM.consultNoteId, value: args.id }],
    status: 'current',
    docStatus: 'final',
    type: { coding: [{ system: SYSTEM.loinc, code: LOINC_DOC.consultNote.code, display: LOINC_DOC.consultNote.display }] },
    category: [{ coding: [{ system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category', code: 'clinical-note', display: 'Clinical Note' }] }],
    subject: args.patient as Reference<never>,
    date: created,
    author: [args.consultant],
    description: 'Second opinion',
    content: [
      { attachment: inline(html, 'text/html', 'Second opinion', created) },
      ...attachments.map((a, i) => ({ attachment: inline(Buffer.from(a.data, 'base64'), a.contentType, a.title ?? `Attachment ${i + 1}`, created) })),
    ],
    context: { related: [{ reference: `ServiceRequest/${args.serviceRequestId}`, display: 'Second-opinion request' }] },
  };
}

/** Who wrote the consult note: the consultant organization, completing its Task. */
export function buildOpinionProvenance(args: { id: string; documentId: string; taskId: string; consultant: Reference<Organization>; now: Date }): Provenance {
  return {
    resourceType: 'Provenance',
    id: args.id,
    target: [{ reference: `DocumentReference/${args.documentId}` }],
    recorded: args.now.toISOString(),
    activity: { coding: [{ system: SYSTEM.dataOperation, code: 'CREATE', display: 'create' }] },
    reason: [{ text: `Opinion completing Task/${args.taskId}` }],
    agent: [{ type: { coding: [{ system: SYSTEM.provenanceParticipantType, code: 'author', display: 'Author' }] }, who: args.consultant }],
  };
}
