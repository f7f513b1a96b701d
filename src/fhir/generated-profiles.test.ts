/**
 * Differential test of the service's validator (createValidator): the generated engine (the
 * default: our profiles' and R4's generated code) against the Medplum engine (Medplum's
 * validator plus validator.ts's checks of our bindings, extensions and absolute references),
 * over the resources the service emits or accepts WITH their profiles, and systematic
 * mutations of each. Both must agree on valid/invalid and on the paths of the errors, except
 * the cases listed in DELIBERATE with their reason. The R4-base-only differential test is
 * generated-validator.test.ts.
 */
import type { AuditEvent, Communication, ElementDefinition, OperationOutcomeIssue, Provenance, Resource, StructureDefinition, Subscription } from '@medplum/fhirtypes';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  makeConsultNote,
  makeFirstOpinion,
  makeRecordDocument,
  makeRecordSetBundle,
  makeReferralServiceRequest,
  makeSecondOpinionTask,
} from '../../test/fixtures/fhir/second-opinion-resources.ts';
import { EXAMPLE_OPINION } from '../../test/support/opinions.ts';
import { buildAuditEvent } from '../audit/audit-event.ts';
import { buildConsultNote } from '../opinions/consult-note.ts';
import { buildAnswer, buildQuestion } from '../followups/follow-up-resources.ts';
import { buildRecordSetBundle, buildRecordSetProvenance } from '../records/record-set-bundle.ts';
import { OpinionSchema } from '../opinions/opinion.ts';
import { parseMeasureParameters } from '../concordance/measure-parameters.ts';
import { buildConcordanceReport } from '../concordance/measure-report.ts';
import { questionNotes, readReferralQuestions } from '../intake/referral-questions.ts';
import { EXTENSION } from './constants.ts';
import { GENERATED_PROFILES_PATH } from './profile-registry.ts';
import { createValidator, ResourceValidationError } from './validator.ts';

const generated = createValidator();
const medplum = createValidator({ engine: 'medplum' });

const definitions = (JSON.parse(readFileSync(GENERATED_PROFILES_PATH, 'utf8')) as { entry: { resource: StructureDefinition }[] }).entry
  .map((e) => e.resource)
  .filter((r) => r.resourceType === 'StructureDefinition');
const byUrl = new Map(definitions.map((d) => [d.url, d]));

const provenance: Provenance = {
  resourceType: 'Provenance',
  target: [{ reference: 'Task/7b1c0e4e-0d7a-4f43-9a55-0c6f1d0e2b11' }],
  recorded: '2026-11-02T10:00:00Z',
  agent: [{ who: { reference: 'Organization/org-1' } }],
  entity: [{ role: 'source', what: { reference: 'https://ehr.example/fhir/R4/DocumentReference/d1' } }],
};
const auditEvent: AuditEvent = {
  resourceType: 'AuditEvent',
  type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
  action: 'R',
  recorded: '2026-11-02T10:00:00Z',
  outcome: '0',
  agent: [{ who: { identifier: { system: 'urn:ietf:rfc:3986', value: 'client-1' } }, requestor: true }],
  source: { observer: { display: 'second-opinion service' } },
  entity: [{ what: { reference: 'Task/t1' } }],
};
const communication: Communication = {
  resourceType: 'Communication',
  status: 'completed',
  subject: { reference: 'Patient/7c1e' },
  recipient: [{ reference: 'Practitioner/9f3a' }],
  about: [{ reference: 'DocumentReference/a1b2' }],
  sent: '2026-12-01T10:05:00Z',
  payload: [{ contentString: 'The second opinion is available.' }],
};
const subscription: Subscription = {
  resourceType: 'Subscription',
  status: 'requested',
  reason: 'our Tasks',
  criteria: 'Task?owner=Organization/lakeside',
  channel: { type: 'rest-hook', endpoint: 'https://ehr.example/hook', payload: 'application/fhir+json' },
};
const consultNote = buildConsultNote({
  id: 'note-1',
  opinion: OpinionSchema.parse(EXAMPLE_OPINION),
  patient: { reference: 'https://ehr.example/fhir/R4/Patient/7c1e', display: 'A patient' },
  serviceRequestId: 'sr-1',
  taskId: 'task-1',
  consultant: { reference: 'Organization/lakeside', display: 'Lakeside Clinic' },
  now: new Date('2026-12-01T10:00:00Z'),
  requestId: 'REQ-1',
});

const followUpQuestion = buildQuestion({
  id: 'q-1',
  taskId: 'task-1',
  patient: { reference: 'https://ehr.example/fhir/R4/Patient/7c1e' },
  text: 'Would an MRI change your view?',
  sender: { reference: 'https://ehr.example/fhir/R4/Practitioner/dr-nilsen' },
  consultant: { reference: 'Organization/lakeside', display: 'Lakeside Clinic' },
  now: new Date('2026-12-01T10:00:00Z'),
  due: new Date('2026-12-06T10:00:00Z'),
});
const followUpAnswer = buildAnswer({
  id: 'a-1',
  questionId: 'q-1',
  taskId: 'task-1',
  patient: { reference: 'https://ehr.example/fhir/R4/Patient/7c1e' },
  text: 'No: the bone scan would.',
  consultant: { reference: 'Organization/lakeside', display: 'Lakeside Clinic' },
  recipient: { reference: 'https://ehr.example/fhir/R4/Practitioner/dr-nilsen' },
  now: new Date('2026-12-02T10:00:00Z'),
});
const classifiedNote = buildConsultNote({
  id: 'note-3',
  opinion: OpinionSchema.parse(EXAMPLE_OPINION),
  patient: { reference: 'https://ehr.example/fhir/R4/Patient/7c1e' },
  serviceRequestId: 'sr-1',
  taskId: 'task-2',
  consultant: { reference: 'Organization/lakeside', display: 'Lakeside Clinic' },
  now: new Date('2026-12-01T10:00:00Z'),
  concordance: { diagnosis: 'minor-discrepancy', plan: 'changed' },
});
const concordanceParameters = parseMeasureParameters({ periodStart: ['2026-01-01'], periodEnd: ['2026-12-31'], subject: ['Organization/st-olaf'] });
const concordanceReport = buildConcordanceReport(
  [
    { kind: 'revision', returned: 3, classified: 2, diagnosisMajor: 1, diagnosisMinor: 0, planChanged: 1, planModified: 1 },
    { kind: 'pathology-review', returned: 1, classified: 1, diagnosisMajor: 0, diagnosisMinor: 1, planChanged: 0, planModified: 0 },
  ],
  concordanceParameters,
  new Date('2026-12-31T12:00:00Z'),
);
// A referral with the patient's and the physician's questions, and an opinion answering them.
const referralWithQuestions = makeReferralServiceRequest({
  note: [{ text: 'Is a revision needed?' }, ...questionNotes([{ text: 'Will I be able to kneel again?', askedBy: 'patient' }, { text: 'Cemented or not?', askedBy: 'physician' }])],
});
const consultNoteWithAnswers = buildConsultNote({
  id: 'note-2',
  opinion: OpinionSchema.parse({ ...EXAMPLE_OPINION, answers: [{ question: 0, text: 'Probably, after six months.' }, { question: 1, notAnswerable: 'The implant record is missing.' }] }),
  patient: { reference: 'https://ehr.example/fhir/R4/Patient/7c1e', display: 'A patient' },
  serviceRequestId: 'sr-1',
  taskId: 'task-1',
  consultant: { reference: 'Organization/lakeside', display: 'Lakeside Clinic' },
  now: new Date('2026-12-01T10:00:00Z'),
  questions: readReferralQuestions(referralWithQuestions),
});

const record = makeRecordDocument({ id: 'd1', meta: { source: 'https://ehr.example/fhir/R4/DocumentReference/op-note' } });
const now = new Date('2026-12-01T10:00:00Z');
const builtAuditEvent = buildAuditEvent({
  action: 'read',
  outcome: 'success',
  agent: { clientId: 'lakeside-worklist', participantId: 'lakeside-consults', organizationReference: 'Organization/lakeside' },
  entities: [{ reference: 'Bundle/rs-1' }],
  patientReference: 'https://ehr.example/fhir/R4/Patient/7c1e',
  query: 'status=requested',
  requestId: 'REQ-1',
  recorded: now,
  source: { observer: { display: 'second-opinion service', identifier: { system: 'urn:ietf:rfc:3986', value: 'https://second-opinion.example' } } },
});

const corpus: [string, Resource][] = [
  ['record copy (DocumentReference, R4)', record],
  ['Bundle (buildRecordSetBundle)', buildRecordSetBundle('rs-1', [{ resource: record, source: 'https://ehr.example/fhir/R4/DocumentReference/op-note' }], now, 'https://so.example/fhir')],
  ['Provenance (buildRecordSetProvenance)', buildRecordSetProvenance({ id: 'pv-1', bundleId: 'rs-1', serviceRequestId: 'sr-1', records: [record], referrerOrganization: { reference: 'Organization/st-olaf' }, now })],
  ['AuditEvent (buildAuditEvent)', builtAuditEvent],
  ['ServiceRequest (second-opinion-request)', makeReferralServiceRequest()],
  ['Task (second-opinion-task)', makeSecondOpinionTask()],
  ['completed Task (second-opinion-task)', makeSecondOpinionTask({ status: 'completed', output: [{ type: { text: 'Second opinion' }, valueReference: { reference: 'DocumentReference/d1' } }] })],
  ['ClinicalImpression (first-opinion)', makeFirstOpinion()],
  ['DocumentReference (consult-note, fixture)', makeConsultNote()],
  ['DocumentReference (consult-note, buildConsultNote)', consultNote],
  ['DocumentReference (consult-note with concordance)', classifiedNote],
  ['MeasureReport (concordance-measure-report)', concordanceReport],
  ['ServiceRequest (second-opinion-request, with questions)', referralWithQuestions],
  ['DocumentReference (consult-note, buildConsultNote, with answers)', consultNoteWithAnswers],
  ['Bundle (record-set-bundle)', makeRecordSetBundle()],
  ['Provenance', provenance],
  ['AuditEvent', auditEvent],
  ['Communication', communication],
  ['Communication (follow-up-communication, question)', followUpQuestion],
  ['Communication (follow-up-communication, answer)', followUpAnswer],
  ['Subscription', subscription],
];

interface Verdict {
  valid: boolean;
  errors: string[];
}

function verdict(validator: typeof generated, resource: Resource): Verdict {
  let issues: OperationOutcomeIssue[] = [];
  try {
    validator.validate(resource);
  } catch (err) {
    if (!(err instanceof ResourceValidationError)) throw err;
    issues = err.issues;
  }
  const errors = [...new Set(issues.filter((i) => i.severity === 'error').flatMap((i) => i.expression ?? []))].sort();
  return { valid: errors.length === 0, errors };
}

/** Top-level elements of the resource's profile (or R4 type when it has none of ours). */
function topLevel(resource: Resource): ElementDefinition[] {
  const profile = byUrl.get(resource.meta?.profile?.[0] ?? '');
  const elements = profile?.snapshot?.element ?? [];
  return elements.filter((e) => e.id!.split('.').length === 2 && !e.id!.includes(':'));
}

/** Systematic mutations of one valid resource, each with a label. */
function mutations(resource: Resource): [string, Resource][] {
  const out: [string, Resource][] = [];
  const r = resource as unknown as Record<string, unknown>;
  const mutate = (label: string, change: (copy: Record<string, unknown>) => void): void => {
    const copy = structuredClone(r);
    change(copy);
    out.push([label, copy as unknown as Resource]);
  };
  for (const e of topLevel(resource)) {
    const name = e.path.split('.')[1]!;
    if (name.endsWith('[x]') || name === 'meta') continue;
    const present = r[name] !== undefined;
    const max = e.max === '*' ? Infinity : Number(e.max);
    if ((e.min ?? 0) > 0 && present) mutate(`missing required ${name}`, (c) => delete c[name]);
    if (!present) continue;
    mutate(`wrong type ${name}`, (c) => (c[name] = typeof r[name] === 'number' ? 'x' : 42));
    mutate(`null ${name}`, (c) => (c[name] = Array.isArray(r[name]) ? [...(r[name] as unknown[]), null] : null));
    if (max === 1 && !Array.isArray(r[name])) mutate(`too many ${name}`, (c) => (c[name] = [r[name], r[name]]));
    else if (Number.isFinite(max)) mutate(`too many ${name}`, (c) => (c[name] = Array.from({ length: max + 1 }, () => (r[name] as unknown[])[0])));
    const targets = e.type?.find((t) => t.code === 'Reference')?.targetProfile ?? [];
    if (targets.length > 0 && !targets.some((t) => t.endsWith('/Resource'))) {
      const value = { reference: 'Basic/b1' };
      mutate(`wrong reference type ${name}`, (c) => (c[name] = max === 1 ? value : [value]));
    }
    const pattern = Object.entries(e).find(([k]) => k.startsWith('pattern') || k.startsWith('fixed'));
    if (pattern) mutate(`wrong pattern ${name}`, (c) => (c[name] = typeof pattern[1] === 'string' ? 'unknown' : { coding: [{ system: 'http://example.org/cs', code: 'x' }] }));
    if (e.binding?.strength === 'required' && e.binding.valueSet?.startsWith('https://second-opinion.org/')) {
      mutate(`bad code in required binding ${name}`, (c) => {
        const value = c[name] as { coding?: { code?: string }[] };
        for (const coding of value.coding ?? []) coding.code = 'not-one-of-ours';
      });
    }
  }
  mutate('extra unknown element', (c) => (c.bogusElement = { a: 1 }));
  mutate('wrong type meta', (c) => (c.meta = { ...(c.meta as object), lastUpdated: 42 }));
  const extensions = (r.extension as { url: string; [k: string]: unknown }[] | undefined) ?? [];
  extensions.forEach((ext, i) => {
    mutate(`missing required extension ${ext.url.split('/').at(-1)}`, (c) => {
      c.extension = (c.extension as unknown[]).filter((_, j) => j !== i);
      if ((c.extension as unknown[]).length === 0) delete c.extension;
    });
    mutate(`extension with wrong value type ${ext.url.split('/').at(-1)}`, (c) => {
      const copy = (c.extension as Record<string, unknown>[])[i]!;
      for (const k of Object.keys(copy)) if (k.startsWith('value') || k === 'extension') delete copy[k];
      copy.valueInteger = 3;
    });
    mutate(`extension not an object ${ext.url.split('/').at(-1)}`, (c) => ((c.extension as unknown[])[i] = 42));
    if (Array.isArray(ext.extension)) {
      mutate(`sub-extension not an object ${ext.url.split('/').at(-1)}`, (c) => {
        ((c.extension as Record<string, unknown[]>[])[i]!.extension![0] as unknown) = null;
      });
    }
  });
  return out;
}

/** Invariants of our profiles, broken one by one. */
const BROKEN_INVARIANTS: [string, Resource][] = [
  ['so-task-1: cancelled without statusReason', makeSecondOpinionTask({ status: 'cancelled' })],
  ['so-task-2: completed without output', makeSecondOpinionTask({ status: 'completed' })],
  ['so-consult-2: consult note without its second-opinion extension', { ...consultNote, extension: undefined } as Resource],
  ['so-consult-1: attachment with neither data nor url', { ...consultNote, content: [{ attachment: { contentType: 'text/plain' } }] } as Resource],
  ['so-followup-1: a follow-up question without its due date', { ...followUpQuestion, extension: undefined } as Resource],
  ['so-recordset-1: a record-set entry that is not a record', makeRecordSetBundle({ entry: [{ resource: provenance }] })],
  [
    'so-answer-1: an answer with both a text and a reason it cannot be answered',
    {
      ...consultNoteWithAnswers,
      extension: (consultNoteWithAnswers.extension ?? []).map((e) => (e.url === EXTENSION.secondOpinionAnswer ? { ...e, extension: [...(e.extension ?? []), { url: 'notAnswerable', valueString: 'both' }] } : e)),
    } as Resource,
  ],
];

/**
 * Where the engines differ on purpose, by label prefix, with the reason. In each such case the
 * generated engine must refuse (its verdict is the stricter one).
 */
const DELIBERATE: Record<string, string> = {
  'wrong type':
    'a number where a complex element (CodeableConcept, Reference, BackboneElement...) belongs: Medplum walks past it (accepting it, or reporting only missing children), the generated code reports "Invalid JSON type: expected object" at the element (as in generated-validator.test.ts)',
  null: 'a null value: both refuse it ("Invalid null value"); Medplum then also walks into the null (missing children, and a slice of category counting it), the generated code stops there',
  'extension not an object':
    'a number in place of an extension: both refuse it at the extension; Medplum also walks into it and reports its missing url',
  'sub-extension not an object':
    "a null sub-extension: the generated code reports it with the slices' counts at `extension`; Medplum also reports the null and its missing url",
  'extension with wrong value type':
    "Medplum also fails ext-1 at the extension: its FHIRPath finds no value once the value is of a type the profile does not allow; the generated code evaluates ext-1 on the JSON, where the value is there, and reports the wrong value's property and the missing value[x] (as Medplum does too)",
};
const deliberate = (label: string): string | undefined => Object.keys(DELIBERATE).find((kind) => label.startsWith(kind));

describe('createValidator: generated engine vs Medplum engine, with our profiles', () => {
  for (const [name, resource] of corpus) {
    const cases: [string, Resource][] = [['as built', resource], ...mutations(resource)];
    it(`${name}: agrees on ${cases.length} cases (valid or not, error paths)`, () => {
      expect(verdict(medplum, resource)).toEqual({ valid: true, errors: [] });
      const disagreements: string[] = [];
      for (const [label, instance] of cases) {
        const ours = verdict(generated, instance);
        const theirs = verdict(medplum, instance);
        if (JSON.stringify(ours) === JSON.stringify(theirs)) continue;
        // A deliberate difference is always a refusal of ours: at the mutated element for a wrong type (which Medplum
        // may accept), else at some of the paths Medplum reports.
        const mutated = `${resource.resourceType}.${label.split(' ').at(-1)}`;
        const where = label.startsWith('wrong type') ? ours.errors.includes(mutated) : ours.errors.some((e) => theirs.errors.includes(e));
        if (deliberate(label) && !ours.valid && where) continue;
        disagreements.push(`${label}: generated ${JSON.stringify(ours)} medplum ${JSON.stringify(theirs)}`);
      }
      expect(disagreements).toEqual([]);
    });
  }

  it.each(BROKEN_INVARIANTS)('both refuse a broken invariant of ours (%s), at the same paths', (_, resource) => {
    const ours = verdict(generated, resource);
    expect(ours.valid).toBe(false);
    expect(ours).toEqual(verdict(medplum, resource));
  });
});
