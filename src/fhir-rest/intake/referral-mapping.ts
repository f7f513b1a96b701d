/**
 * The FHIR intake door's parser: a referral written as FHIR (a transaction
 * Bundle of ServiceRequest + Tasks + optional ClinicalImpression, or the ServiceRequest alone)
 * becomes the body the JSON door receives (`IntakeRequest`, src/intake/intake-request.ts), plus
 * where each of its fields came from, so a refusal by the shared schema or use case can name
 * the FHIR element (`Bundle.entry[2].resource.performer[0]`). Pure: no store, no network file
 * (organizations are recognised by the function passed in).
 */
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import { z } from 'zod';
import { EXTENSION, SYSTEM } from '../../fhir/constants.ts';
import { kindFromCodings } from '../../fhir/kind-codes.ts';
import { invalid, issue, unprocessable } from '../../fhir/outcomes.ts';
import { parseResourceReference, sameResourceReference } from '../../fhir/references.ts';
import { RECORD_TYPES } from '../../intake/intake-request.ts';

const Coding = z.looseObject({ system: z.string().optional(), code: z.string().optional(), display: z.string().optional() });
const CodeableConcept = z.looseObject({ coding: z.array(Coding).optional(), text: z.string().optional() });
const Identifier = z.looseObject({ system: z.string().optional(), value: z.string().optional(), type: CodeableConcept.optional() });
const Reference = z.looseObject({ reference: z.string().optional(), type: z.string().optional(), identifier: Identifier.optional(), display: z.string().optional() });
const Extension = z.looseObject({ url: z.string(), valueBoolean: z.boolean().optional(), valueCoding: Coding.optional() });
const modifierExtension = z.array(Extension).optional();

const ServiceRequestIn = z.looseObject({
  resourceType: z.literal('ServiceRequest'),
  status: z.string(),
  intent: z.string(),
  identifier: z.array(Identifier).optional(),
  subject: Reference,
  requester: Reference.optional(),
  performer: z.array(Reference).optional(),
  priority: z.string().optional(),
  code: CodeableConcept.optional(),
  category: z.array(CodeableConcept).optional(),
  reasonCode: z.array(CodeableConcept).optional(),
  reasonReference: z.array(Reference).optional(),
  note: z.array(z.looseObject({ text: z.string(), extension: z.array(Extension).optional() })).optional(),
  supportingInfo: z.array(Reference).optional(),
  occurrenceDateTime: z.string().optional(),
  occurrencePeriod: z.looseObject({ end: z.string().optional() }).optional(),
  extension: z.array(Extension).optional(),
  modifierExtension,
});
type ServiceRequestIn = z.output<typeof ServiceRequestIn>;

const TaskIn = z.looseObject({
  resourceType: z.literal('Task'),
  status: z.string(),
  intent: z.string(),
  focus: Reference,
  for: Reference.optional(),
  owner: Reference,
  restriction: z.looseObject({ period: z.looseObject({ end: z.string().optional() }).optional() }).optional(),
  modifierExtension,
});
type TaskIn = z.output<typeof TaskIn>;

const ClinicalImpressionIn = z.looseObject({
  resourceType: z.literal('ClinicalImpression'),
  status: z.string(),
  subject: Reference,
  summary: z.string().optional(),
  finding: z.array(z.looseObject({ itemCodeableConcept: CodeableConcept.optional(), itemReference: Reference.optional() })).optional(),
  supportingInfo: z.array(Reference).optional(),
  modifierExtension,
});
type ClinicalImpressionIn = z.output<typeof ClinicalImpressionIn>;

const BundleIn = z.looseObject({
  resourceType: z.literal('Bundle'),
  type: z.string(),
  entry: z
    .array(
      z.looseObject({
        fullUrl: z.string().optional(),
        resource: z.looseObject({ resourceType: z.string() }),
        request: z.looseObject({ method: z.string(), url: z.string(), ifNoneExist: z.string().optional() }),
      }),
    )
    .min(1, 'a referral Bundle holds at least the ServiceRequest'),
});

/** The resource types a referral Bundle may carry, and what each becomes. */
export const BUNDLE_TYPES = ['ServiceRequest', 'Task', 'ClinicalImpression'] as const;
export type BundleType = (typeof BUNDLE_TYPES)[number];

/** Recognises a clinic's Organization (by reference or identifier): its participant id, or undefined. */
export type RecognizeOrganization = (reference: { reference?: string; identifier?: { system?: string; value?: string } }) => string | undefined;

export interface MappedReferral {
  /** The JSON intake body, to be parsed by `IntakeRequestSchema` like the JSON door's. */
  body: Record<string, unknown>;
  /** JSON intake field (`consultants[0]`) -> the FHIR element it came from. */
  origins: Map<string, string>;
  /** The FHIRPath of the ServiceRequest (`Bundle.entry[0].resource` or `ServiceRequest`). */
  root: string;
  /** The Bundle's entries in order (empty for a ServiceRequest alone); a Task's `consultant` is its index in `consultants`. */
  entries: { type: BundleType; consultant?: number }[];
  /** `If-None-Exist` on the ServiceRequest (entry or header), already checked to name its placer identifier. */
  ifNoneExist?: string;
}

const PLACER = { system: SYSTEM.v2IdentifierType, code: 'PLAC' };

/** `['performer', 0, 'reference']` -> `performer[0].reference`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('');
}

function parseAt<S extends z.ZodType>(schema: S, value: unknown, root: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw invalid(
    parsed.error.issues.map((i) => {
      const rest = fieldPath(i.path);
      const where = rest ? `${root}${rest.startsWith('[') ? '' : '.'}${rest}` : root;
      return issue(i.code === 'invalid_type' && i.input === undefined ? 'required' : 'value', `${where}: ${i.message}`, where);
    }),
  );
}

/** `POST /fhir/ServiceRequest`: the referral alone; the clinics are its `performer`s and the service makes their Tasks. */
export function mapServiceRequest(resource: unknown, recognize: RecognizeOrganization, ifNoneExist?: string): MappedReferral {
  const sr = parseAt(ServiceRequestIn, resource, 'ServiceRequest');
  const mapped = mapReferral(sr, 'ServiceRequest', [], undefined, recognize);
  return { ...mapped, ...(ifNoneExist !== undefined ? { ifNoneExist: checkIfNoneExist(ifNoneExist, mapped, 'If-None-Exist') } : {}) };
}

/**
 * `POST /fhir` with a transaction Bundle: exactly one ServiceRequest, one Task per clinic
 * (focus = the ServiceRequest, owner = the clinic), at most one ClinicalImpression (the first
 * opinion); every entry a POST of its type. Anything else is refused, naming the entry.
 */
export function mapTransactionBundle(input: unknown, recognize: RecognizeOrganization): MappedReferral {
  const bundle = parseAt(BundleIn, input, 'Bundle');
  if (bundle.type !== 'transaction') {
    throw invalid([issue('not-supported', `Bundle.type must be transaction (a referral is written all or nothing); got '${bundle.type}'`, 'Bundle.type')]);
  }
  const problems: OperationOutcomeIssue[] = [];
  const at = (i: number) => `Bundle.entry[${i}]`;
  for (const [i, entry] of bundle.entry.entries()) {
    const type = entry.resource.resourceType;
    if (!(BUNDLE_TYPES as readonly string[]).includes(type)) {
      problems.push(issue('not-supported', `${type} is not part of a referral here: a referral Bundle holds a ServiceRequest, its Tasks and optionally a ClinicalImpression (the first opinion); records stay on your EHR and are named in ServiceRequest.supportingInfo`, `${at(i)}.resource`));
    } else if (entry.request.method !== 'POST' || entry.request.url !== type) {
      problems.push(issue('not-supported', `Only the create interaction (request.method POST, request.url ${type}) is supported in a referral Bundle`, `${at(i)}.request`));
    }
    if (entry.request.ifNoneExist !== undefined && type !== 'ServiceRequest') {
      problems.push(issue('not-supported', 'ifNoneExist is honoured on the ServiceRequest only (its placer identifier is the referral\'s key)', `${at(i)}.request.ifNoneExist`));
    }
  }
  const indexes = (type: BundleType) => bundle.entry.flatMap((e, i) => (e.resource.resourceType === type ? [i] : []));
  const srIndexes = indexes('ServiceRequest');
  const ciIndexes = indexes('ClinicalImpression');
  if (srIndexes.length !== 1) problems.push(issue('invalid', `A referral Bundle holds exactly one ServiceRequest; this one holds ${srIndexes.length}`, srIndexes.length ? `${at(srIndexes[1] as number)}.resource` : 'Bundle.entry'));
  if (ciIndexes.length > 1) problems.push(issue('invalid', 'A referral carries at most one first opinion (ClinicalImpression)', `${at(ciIndexes[1] as number)}.resource`));
  if (problems.length) throw invalid(problems);

  const srIndex = srIndexes[0] as number;
  const root = `${at(srIndex)}.resource`;
  const sr = parseAt(ServiceRequestIn, bundle.entry[srIndex]?.resource, root);
  const srUrl = bundle.entry[srIndex]?.fullUrl;
  const tasks = indexes('Task').map((i) => ({ root: `${at(i)}.resource`, task: parseAt(TaskIn, bundle.entry[i]?.resource, `${at(i)}.resource`) }));
  const ciIndex = ciIndexes[0];
  const ci =
    ciIndex === undefined
      ? undefined
      : { root: `${at(ciIndex)}.resource`, fullUrl: bundle.entry[ciIndex]?.fullUrl, resource: parseAt(ClinicalImpressionIn, bundle.entry[ciIndex]?.resource, `${at(ciIndex)}.resource`) };
  for (const { root: taskRoot, task } of tasks) {
    if (!srUrl || task.focus.reference !== srUrl) {
      problems.push(issue('invalid', `Task.focus must reference the Bundle's ServiceRequest by its fullUrl${srUrl ? ` (${srUrl})` : ' (give the ServiceRequest entry a urn:uuid: fullUrl)'}`, `${taskRoot}.focus`));
    }
  }
  if (problems.length) throw invalid(problems);

  const mapped = mapReferral(sr, root, tasks, ci, recognize);
  const taskEntries = new Map(tasks.map((t, n) => [t.root, n]));
  const entries = bundle.entry.map((e, i) => {
    const type = e.resource.resourceType as BundleType;
    const n = taskEntries.get(`${at(i)}.resource`);
    return n === undefined ? { type } : { type, consultant: n };
  });
  const ifNoneExist = bundle.entry[srIndex]?.request.ifNoneExist;
  return { ...mapped, entries, ...(ifNoneExist !== undefined ? { ifNoneExist: checkIfNoneExist(ifNoneExist, mapped, `${at(srIndex)}.request.ifNoneExist`) } : {}) };
}

/** `identifier=[system|]value` naming the ServiceRequest's placer identifier: the only condition intake can honour. */
function checkIfNoneExist(query: string, mapped: Omit<MappedReferral, 'ifNoneExist'>, where: string): string {
  const params = new URLSearchParams(query);
  const keys = [...params.keys()];
  const value = params.get('identifier') ?? '';
  const requestId = mapped.body.requestId;
  const named = value.includes('|') ? value.slice(value.indexOf('|') + 1) : value;
  if (keys.length !== 1 || keys[0] !== 'identifier' || named !== requestId) {
    throw invalid([issue('not-supported', `${where} must be identifier=[system|]value naming the ServiceRequest's placer identifier (the referral's key)`, where)]);
  }
  return query;
}

interface TaskAt {
  root: string;
  task: TaskIn;
}

function mapReferral(sr: ServiceRequestIn, root: string, tasks: readonly TaskAt[], ci: { root: string; fullUrl?: string; resource: ClinicalImpressionIn } | undefined, recognize: RecognizeOrganization): Omit<MappedReferral, 'entries'> & { entries: [] } {
  const origins = new Map<string, string>();
  const problems: OperationOutcomeIssue[] = [];
  const body: Record<string, unknown> = {};

  if (sr.status !== 'active') problems.push(issue('value', `${root}.status must be active: a referral is placed active`, `${root}.status`));
  if (sr.intent !== 'order') problems.push(issue('value', `${root}.intent must be order`, `${root}.intent`));
  refuseModifiers(sr.modifierExtension, root, problems);

  // The placer identifier: the one typed PLAC, or the only one.
  const identifiers = sr.identifier ?? [];
  const placer = identifiers.findIndex((id) => id.type?.coding?.some((c) => c.system === PLACER.system && c.code === PLACER.code));
  const key = placer >= 0 ? placer : identifiers.length === 1 ? 0 : -1;
  if (key < 0) {
    problems.push(issue(identifiers.length ? 'invalid' : 'required', `${root}.identifier must hold your request id: type it PLAC (${PLACER.system}) when there are several`, `${root}.identifier`));
  } else {
    body.requestId = identifiers[key]?.value;
    origins.set('requestId', `${root}.identifier[${key}].value`);
  }

  body.patient = { reference: sr.subject.reference, identifier: sr.subject.identifier ? [sr.subject.identifier] : [], ...(sr.subject.display !== undefined ? { display: sr.subject.display } : {}) };
  origins.set('patient', `${root}.subject`).set('patient.identifier[0]', `${root}.subject.identifier`);
  if (sr.requester) body.requester = { reference: sr.requester.reference, display: sr.requester.display };
  origins.set('requester', `${root}.requester`);

  const kind = kindFromCodings([...(sr.code?.coding ?? []), ...(sr.category ?? []).flatMap((c) => c.coding ?? [])]);
  if (kind === 'conflict') problems.push(issue('value', `${root}.code names two second-opinion kinds`, `${root}.code`));
  else if (!kind) {
    problems.push(issue(sr.code ? 'value' : 'required', `${root}.code must name the kind of second opinion: a code of ${SYSTEM.kind}, or one of the SNOMED CT / LOINC codes taken for imaging-review, pathology-review and diagnosis-confirmation (docs/workflow.md)`, `${root}.code`));
  } else body.kind = kind;
  origins.set('kind', `${root}.code`);

  body.priority = sr.priority ?? 'routine';
  origins.set('priority', `${root}.priority`);

  const extensions = sr.extension ?? [];
  const reviewAt = extensions.findIndex((e) => e.url === EXTENSION.reviewType);
  const blindedAt = extensions.findIndex((e) => e.url === EXTENSION.blinded);
  const reviewType = extensions[reviewAt]?.valueCoding;
  if (reviewType && reviewType.system !== SYSTEM.reviewType) {
    problems.push(issue('value', `The review type must be a code of ${SYSTEM.reviewType}`, `${root}.extension[${reviewAt}].valueCoding.system`));
  }
  if (reviewType) body.reviewType = reviewType.code;
  origins.set('reviewType', reviewAt >= 0 ? `${root}.extension[${reviewAt}].valueCoding.code` : `${root}.extension('${EXTENSION.reviewType}')`);
  if (blindedAt >= 0) {
    body.blinded = extensions[blindedAt]?.valueBoolean;
    origins.set('blinded', `${root}.extension[${blindedAt}].valueBoolean`);
  }

  const reason: unknown[] = [];
  for (const [j, concept] of (sr.reasonCode ?? []).entries()) {
    if (!concept.coding?.length) problems.push(issue('value', `${root}.reasonCode[${j}] must carry a coding (system and code)`, `${root}.reasonCode[${j}]`));
    for (const [k, coding] of (concept.coding ?? []).entries()) {
      origins.set(`reason[${reason.length}]`, `${root}.reasonCode[${j}].coding[${k}]`);
      reason.push(coding);
    }
  }
  body.reason = reason;
  // The reason is carried as codes (ServiceRequest.reasonCode, what the consultant sees). A Condition
  // on the EHR would have to be read and its code copied; the service does not read Conditions, so
  // a reference is refused rather than dropped: the referrer sends the Condition's code instead.
  for (const [j] of (sr.reasonReference ?? []).entries()) {
    problems.push(
      issue('business-rule', 'reasonReference is not taken: this service does not read Conditions from your EHR. Send the condition as ServiceRequest.reasonCode (the Condition\'s code codings)', `${root}.reasonReference[${j}]`),
    );
  }

  // Notes marked as referral questions (referral-question extension: who asked) are the patient's and
  // the physician's own questions, by their order; the other notes are the clinical question.
  const notes: string[] = [];
  const noteAt: number[] = [];
  const questions: unknown[] = [];
  for (const [k, n] of (sr.note ?? []).entries()) {
    const marker = n.extension?.find((e) => e.url === EXTENSION.referralQuestion);
    if (!marker) {
      notes.push(n.text);
      noteAt.push(k);
      continue;
    }
    if (marker.valueCoding?.system !== SYSTEM.questionAsker) {
      problems.push(issue('value', `Who asked the question must be a code of ${SYSTEM.questionAsker} (patient or physician)`, `${root}.note[${k}].extension('${EXTENSION.referralQuestion}').valueCoding`));
    }
    origins.set(`questions[${questions.length}].text`, `${root}.note[${k}].text`).set(`questions[${questions.length}].askedBy`, `${root}.note[${k}].extension('${EXTENSION.referralQuestion}').valueCoding.code`);
    questions.push({ text: n.text, askedBy: marker.valueCoding?.code });
  }
  if (notes.length) body.question = notes.join('\n\n');
  origins.set('question', notes.length === 1 ? `${root}.note[${noteAt[0]}].text` : `${root}.note`);
  if (questions.length) body.questions = questions;
  origins.set('questions', `${root}.note`);

  // supportingInfo: records on the EHR (documents, reports, imaging studies), the Consent, the first opinion in the Bundle.
  const documents: unknown[] = [];
  for (const [k, ref] of (sr.supportingInfo ?? []).entries()) {
    const where = `${root}.supportingInfo[${k}]`;
    const literal = ref.reference ?? '';
    if (literal.startsWith('urn:uuid:')) {
      if (!ci || ci.fullUrl !== literal) problems.push(issue('invalid', `${literal} names no ClinicalImpression entry of this Bundle`, `${where}.reference`));
      continue;
    }
    const type = parseResourceReference(literal)?.typeAndId.split('/')[0] ?? ref.type;
    if (type !== undefined && (RECORD_TYPES as readonly string[]).includes(type)) {
      origins.set(`records.documents[${documents.length}]`, where);
      documents.push({ reference: literal, ...(ref.display !== undefined ? { display: ref.display } : {}) });
    } else if (type === 'Consent' && body.consent === undefined) {
      origins.set('consent', where);
      body.consent = { reference: literal };
    } else {
      problems.push(
        issue('not-supported', `supportingInfo may name records on your EHR (${RECORD_TYPES.join(', ')}), one Consent there, and the Bundle's ClinicalImpression; ${type ?? 'this reference'} is not taken`, where),
      );
    }
  }
  body.records = documents.length ? { documents } : {};
  origins.set('records', `${root}.supportingInfo`);

  if (ci) body.firstOpinion = mapFirstOpinion(ci.root, ci.resource, sr, origins, problems);

  // Due date: occurrence, or the Tasks' restriction.period.end (one date for all).
  const dues: [string, string][] = [];
  if (sr.occurrenceDateTime !== undefined) dues.push([sr.occurrenceDateTime, `${root}.occurrenceDateTime`]);
  if (sr.occurrencePeriod?.end !== undefined) dues.push([sr.occurrencePeriod.end, `${root}.occurrencePeriod.end`]);
  for (const t of tasks) if (t.task.restriction?.period?.end !== undefined) dues.push([t.task.restriction.period.end, `${t.root}.restriction.period.end`]);
  const [due] = dues;
  const otherDue = dues.find(([d]) => d !== due?.[0]);
  if (otherDue) problems.push(issue('invalid', `A referral has one due date; ${otherDue[1]} differs from ${due?.[1]}`, otherDue[1]));
  if (due) {
    body.dueDate = due[0];
    origins.set('dueDate', due[1]);
  }

  // The clinics: the Tasks' owners, or the performers when the Bundle carries no Task.
  const consultants: (string | undefined)[] = [];
  const clinic = (ref: z.output<typeof Reference>, where: string): string | undefined => {
    const id = recognize(ref);
    if (!id) problems.push(issue('business-rule', 'No participant of the network is known by this Organization: name the clinic by one of its identifiers (GET /participants) or by your EHR\'s reference to it', where));
    return id;
  };
  for (const t of tasks) {
    if (t.task.status !== 'requested') problems.push(issue('value', `${t.root}.status must be requested`, `${t.root}.status`));
    if (t.task.intent !== 'order') problems.push(issue('value', `${t.root}.intent must be order`, `${t.root}.intent`));
    refuseModifiers(t.task.modifierExtension, t.root, problems);
    if (t.task.for?.reference && sr.subject.reference && !sameResourceReference(t.task.for.reference, sr.subject.reference)) {
      problems.push(issue('invalid', 'Task.for must be the ServiceRequest\'s subject', `${t.root}.for`));
    }
    origins.set(`consultants[${consultants.length}]`, `${t.root}.owner`);
    consultants.push(clinic(t.task.owner, `${t.root}.owner`));
  }
  const performers = sr.performer ?? [];
  for (const [k, performer] of performers.entries()) {
    const where = `${root}.performer[${k}]`;
    if (tasks.length === 0) {
      origins.set(`consultants[${consultants.length}]`, where);
      consultants.push(clinic(performer, where));
    } else {
      const id = clinic(performer, where);
      if (id && !consultants.includes(id)) problems.push(issue('invalid', 'Every performer must own one of the Bundle\'s Tasks', where));
    }
  }
  if (tasks.length && performers.length) {
    const named = new Set(performers.map((p) => recognize(p)));
    for (const [n, id] of consultants.entries()) if (id && !named.has(id)) problems.push(issue('invalid', 'This Task\'s owner is not among the ServiceRequest\'s performers', origins.get(`consultants[${n}]`)));
  }
  body.consultants = consultants.filter((c) => c !== undefined);
  origins.set('consultants', tasks.length ? `${root}` : `${root}.performer`);

  if (problems.length) {
    throw problems.some((p) => p.code === 'business-rule') && problems.every((p) => p.code === 'business-rule') ? unprocessable(problems) : invalid(problems);
  }
  return { body, origins, root, entries: [] };
}

function mapFirstOpinion(root: string, ci: ClinicalImpressionIn, sr: ServiceRequestIn, origins: Map<string, string>, problems: OperationOutcomeIssue[]): Record<string, unknown> {
  refuseModifiers(ci.modifierExtension, root, problems);
  if (ci.subject.reference && sr.subject.reference && !sameResourceReference(ci.subject.reference, sr.subject.reference)) {
    problems.push(issue('invalid', 'ClinicalImpression.subject must be the ServiceRequest\'s subject', `${root}.subject`));
  }
  origins.set('firstOpinion', root);
  const diagnosis: unknown[] = [];
  for (const [j, finding] of (ci.finding ?? []).entries()) {
    if (finding.itemReference) problems.push(issue('not-supported', 'finding.itemReference is not taken: send the diagnosis as itemCodeableConcept codings', `${root}.finding[${j}].itemReference`));
    for (const [k, coding] of (finding.itemCodeableConcept?.coding ?? []).entries()) {
      origins.set(`firstOpinion.diagnosis[${diagnosis.length}]`, `${root}.finding[${j}].itemCodeableConcept.coding[${k}]`);
      diagnosis.push(coding);
    }
  }
  const documents: unknown[] = [];
  for (const [k, ref] of (ci.supportingInfo ?? []).entries()) {
    const where = `${root}.supportingInfo[${k}]`;
    const literal = ref.reference ?? '';
    const type = parseResourceReference(literal)?.typeAndId.split('/')[0] ?? ref.type;
    if (type !== 'DocumentReference') {
      problems.push(issue('not-supported', 'The first opinion\'s supportingInfo may name DocumentReferences on your EHR only', where));
      continue;
    }
    origins.set(`firstOpinion.documents[${documents.length}]`, where);
    documents.push({ reference: literal, ...(ref.display !== undefined ? { display: ref.display } : {}) });
  }
  origins.set('firstOpinion.plan', `${root}.summary`);
  return { diagnosis, documents, ...(ci.summary !== undefined ? { plan: ci.summary } : {}) };
}

/** A modifier extension changes the meaning of its resource: one we do not know must not be ignored (R4 §2.4.1). */
function refuseModifiers(modifiers: readonly { url: string }[] | undefined, root: string, problems: OperationOutcomeIssue[]): void {
  for (const [k, m] of (modifiers ?? []).entries()) {
    problems.push(issue('not-supported', `Modifier extension ${m.url} is not understood here`, `${root}.modifierExtension[${k}]`));
  }
}

/**
 * The FHIR element a JSON intake field came from: the longest recorded field that is the
 * expression or a prefix of it, with the rest appended (`records.documents[1].reference` ->
 * `Bundle.entry[0].resource.supportingInfo[3].reference`); the ServiceRequest for the rest.
 */
export function fhirExpression(jsonField: string, origins: ReadonlyMap<string, string>, root: string): string {
  let best = '';
  for (const key of origins.keys()) {
    const fits = jsonField === key || jsonField.startsWith(`${key}.`) || jsonField.startsWith(`${key}[`);
    if (fits && key.length > best.length) best = key;
  }
  if (!best) return root;
  return `${origins.get(best)}${jsonField.slice(best.length)}`;
}
