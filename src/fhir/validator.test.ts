import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import {
  makeConsultNote,
  makeFirstOpinion,
  makeRecordDocument,
  makeRecordSetBundle,
  makeReferralServiceRequest,
  makeSecondOpinionTask,
} from '../../test/fixtures/fhir/second-opinion-resources.ts';
import { EXTENSION, PROFILE, SYSTEM } from './constants.ts';
import { buildAnswer, buildQuestion } from '../followups/follow-up-resources.ts';
import { createValidator, ResourceValidationError } from './validator.ts';

const validator = createValidator();
const medplum = createValidator({ engine: 'medplum' });

/** The errors a resource fails with, as [expression, text] pairs (warnings left out). */
function errorsOf(resource: Resource, by = validator): [string, string][] {
  try {
    by.validate(resource);
  } catch (err) {
    if (!(err instanceof ResourceValidationError)) throw err;
    return err.issues
      .filter((i: OperationOutcomeIssue) => i.severity === 'error')
      .map((i) => [(i.expression ?? []).join(', '), i.details?.text ?? '']);
  }
  return [];
}

const statusReason = { text: 'Out of our scope' };
const opinionOutput = [
  { type: { text: 'Second opinion' }, valueReference: { reference: 'DocumentReference/7b1c0e4e-0d7a-4f43-9a55-0c6f1d0e2b11' } },
];

describe('createValidator', () => {
  it('knows each of our profiles', () => {
    expect([...validator.profiles].sort()).toEqual(Object.values(PROFILE).sort());
  });

  it('accepts a valid instance of each profile with no warnings, absolute EHR references included', () => {
    expect(validator.validate(makeReferralServiceRequest())).toEqual([]);
    expect(validator.validate(makeSecondOpinionTask())).toEqual([]);
    expect(validator.validate(makeRecordSetBundle())).toEqual([]);
    expect(validator.validate(makeConsultNote())).toEqual([]);
    expect(validator.validate(makeFirstOpinion())).toEqual([]);
  });

  it('throws ResourceValidationError naming the resource type and the failed rules', () => {
    let caught: unknown;
    try {
      validator.validate(makeSecondOpinionTask({ owner: undefined }));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ResourceValidationError);
    const error = caught as ResourceValidationError;
    expect(error.name).toBe('ResourceValidationError');
    expect(error.resourceType).toBe('Task');
    expect(error.issues).toEqual([
      { severity: 'error', code: 'structure', details: { text: 'Missing required property' }, expression: ['Task.owner'] },
    ]);
    expect(error.message).toBe('Task failed validation: Missing required property (Task.owner)');
  });

  it('fails loudly when meta.profile names a profile of ours that does not exist', () => {
    const unknown = 'https://second-opinion.org/fhir/StructureDefinition/no-such-profile';
    expect(errorsOf(makeFirstOpinion({ meta: { profile: [unknown] } }))).toEqual([
      ['ClinicalImpression.meta.profile[0]', `Unknown profile ${unknown} (not in profiles/generated/profiles.json)`],
    ]);
  });

  it('refuses a profile of ours on the wrong resource type', () => {
    expect(errorsOf(makeFirstOpinion({ meta: { profile: [PROFILE.task] } }))).toEqual([
      ['ClinicalImpression.meta.profile[0]', `Profile ${PROFILE.task} constrains Task, not ClinicalImpression`],
    ]);
  });

  it('checks a resource without our meta.profile against R4 base only', () => {
    const task = makeSecondOpinionTask({ meta: undefined, owner: undefined, businessStatus: undefined });
    expect(validator.validate(task)).toEqual([]);
    expect(errorsOf({ ...task, intent: undefined } as unknown as Resource)).toEqual([['Task.intent', 'Missing required property']]);
  });

  it('keeps a warning for a reference whose type cannot be told, without failing', () => {
    const request = makeReferralServiceRequest({ performer: [{ reference: 'urn:uuid:5e0c8f7a-3b2d-4c1e-9f8a-7b6c5d4e3f21' }] });
    expect(validator.validate(request)).toEqual([
      {
        severity: 'warning',
        code: 'structure',
        details: { text: 'Invalid reference: got "urn:uuid:5e0c8f7a-3b2d-4c1e-9f8a-7b6c5d4e3f21", expected "http://hl7.org/fhir/StructureDefinition/Organization"' },
        expression: ['ServiceRequest.performer[0]'],
      },
    ]);
  });
});

describe('second-opinion-request (ServiceRequest)', () => {
  it('requires the second-opinion category slice', () => {
    const request = makeReferralServiceRequest();
    expect(errorsOf({ ...request, category: request.category?.slice(0, 1) })).toEqual([
      ['ServiceRequest.category', 'Invalid number of values: expected 2..*, but found 1'],
      ['ServiceRequest.category', "Incorrect number of values provided for slice 'secondOpinion': expected 1..1, but found 0"],
    ]);
  });

  it('matches category codes whatever their display text', () => {
    const request = makeReferralServiceRequest({
      category: [
        { coding: [{ system: SYSTEM.snomed, code: '3457005', display: 'Referral' }] },
        { coding: [{ system: SYSTEM.v2ReferralReason, code: 'S' }] },
      ],
    });
    expect(validator.validate(request)).toEqual([]);
  });

  it('requires the review-type extension', () => {
    const request = makeReferralServiceRequest();
    expect(errorsOf({ ...request, extension: request.extension?.filter((e) => e.url !== EXTENSION.reviewType) })).toEqual([
      ['ServiceRequest.extension', "Incorrect number of values provided for slice 'reviewType': expected 1..1, but found 0"],
    ]);
  });

  it('checks the review-type extension value against its definition and code system', () => {
    const wrongType = makeReferralServiceRequest({ extension: [{ url: EXTENSION.reviewType, valueString: 'records-only' }] });
    expect(errorsOf(wrongType)).toEqual([
      ['ServiceRequest.extension[0].valueString', 'Invalid additional property "valueString"'],
      ['ServiceRequest.extension[0].value[x]', 'Missing required property'],
    ]);
    // Medplum also fails ext-1: its FHIRPath sees no value once valueString is not a property
    // of the profiled extension. The generated code evaluates FHIRPath on the JSON as it is.
    expect(errorsOf(wrongType, medplum)).toEqual([
      ['ServiceRequest.extension[0]', 'Constraint ext-1 not met: Must have either extensions or value[x], not both'],
      ['ServiceRequest.extension[0].value[x]', 'Missing required property'],
      ['ServiceRequest.extension[0].valueString', 'Invalid additional property "valueString"'],
    ]);
    expect(
      errorsOf(
        makeReferralServiceRequest({
          extension: [{ url: EXTENSION.reviewType, valueCoding: { system: SYSTEM.reviewType, code: 'by-post' } }],
        }),
      ),
    ).toEqual([
      [
        'ServiceRequest.extension[0].value[x]',
        `Code ${SYSTEM.reviewType}#by-post is not in the required value set https://second-opinion.org/fhir/ValueSet/review-type`,
      ],
    ]);
  });

  it('rejects a kind that is not in our code system', () => {
    expect(errorsOf(makeReferralServiceRequest({ code: { coding: [{ system: SYSTEM.kind, code: 'gut-feeling' }] } }))).toEqual([
      [
        'ServiceRequest.code',
        `Code ${SYSTEM.kind}#gut-feeling is not in the required value set https://second-opinion.org/fhir/ValueSet/second-opinion-kind`,
      ],
    ]);
  });

  it('requires intent order, a subject, a requester and at most eight organisations as performers (five at intake, more for a third or fourth opinion)', () => {
    expect(errorsOf(makeReferralServiceRequest({ intent: 'plan' }))).toEqual([
      ['ServiceRequest.intent', 'Value did not match expected pattern'],
    ]);
    expect(errorsOf(makeReferralServiceRequest({ subject: undefined, requester: undefined } as never))).toEqual([
      ['ServiceRequest.subject', 'Missing required property'],
      ['ServiceRequest.requester', 'Missing required property'],
    ]);
    const nine = Array.from({ length: 9 }, (_, i) => ({ reference: `Organization/clinic-${i}` }));
    expect(errorsOf(makeReferralServiceRequest({ performer: nine }))).toEqual([
      ['ServiceRequest.performer', 'Invalid number of values: expected 1..8, but found 9'],
    ]);
    expect(errorsOf(makeReferralServiceRequest({ performer: [{ reference: 'Practitioner/pr9' }] }))).toEqual([
      ['ServiceRequest.performer[0]', 'Reference to Practitioner where Organization is allowed'],
    ]);
    expect(errorsOf(makeReferralServiceRequest({ subject: { reference: 'https://ehr.example/fhir/Group/g1' } }))).toEqual([
      ['ServiceRequest.subject', 'Reference to Group where Patient is allowed'],
    ]);
  });
});

describe('second-opinion-task (Task)', () => {
  it('requires an owner', () => {
    expect(errorsOf(makeSecondOpinionTask({ owner: undefined }))).toEqual([['Task.owner', 'Missing required property']]);
  });

  it('requires the owner to be an Organization', () => {
    expect(errorsOf(makeSecondOpinionTask({ owner: { reference: 'Patient/p1' } }))).toEqual([
      ['Task.owner', 'Reference to Patient where Organization is allowed'],
    ]);
  });

  it.each(['rejected', 'cancelled', 'failed'] as const)('requires statusReason when %s', (status) => {
    expect(errorsOf(makeSecondOpinionTask({ status }))).toEqual([
      ['Task', 'Constraint so-task-1 not met: statusReason is required when the Task is rejected, cancelled or failed'],
    ]);
    expect(validator.validate(makeSecondOpinionTask({ status, statusReason }))).toEqual([]);
  });

  it('requires output when completed', () => {
    expect(errorsOf(makeSecondOpinionTask({ status: 'completed' }))).toEqual([
      ['Task', 'Constraint so-task-2 not met: output (the opinion) is required when the Task is completed'],
    ]);
    expect(validator.validate(makeSecondOpinionTask({ status: 'completed', output: opinionOutput }))).toEqual([]);
  });

  it('rejects a business status that is not in our code system', () => {
    expect(
      errorsOf(makeSecondOpinionTask({ businessStatus: { coding: [{ system: SYSTEM.taskBusinessStatus, code: 'bogus' }] } })),
    ).toEqual([
      [
        'Task.businessStatus',
        `Code ${SYSTEM.taskBusinessStatus}#bogus is not in the required value set https://second-opinion.org/fhir/ValueSet/task-business-status`,
      ],
    ]);
    expect(
      errorsOf(makeSecondOpinionTask({ businessStatus: { coding: [{ system: SYSTEM.kind, code: 'records-pending' }] } })),
    ).toEqual([
      [
        'Task.businessStatus',
        `Code ${SYSTEM.kind}#records-pending is not in the required value set https://second-opinion.org/fhir/ValueSet/task-business-status`,
      ],
    ]);
  });

  it('requires a due date, the fulfill code and a ServiceRequest focus', () => {
    expect(errorsOf(makeSecondOpinionTask({ restriction: { period: { start: '2026-11-22T10:00:00.000Z' } } }))).toEqual([
      ['Task.restriction.period.end', 'Missing required property'],
    ]);
    expect(errorsOf(makeSecondOpinionTask({ code: { coding: [{ system: SYSTEM.taskCode, code: 'approve' }] } }))).toEqual([
      ['Task.code', 'Value did not match expected pattern'],
    ]);
    expect(errorsOf(makeSecondOpinionTask({ focus: { reference: 'DocumentReference/d1' } }))).toEqual([
      ['Task.focus', 'Reference to DocumentReference where ServiceRequest is allowed'],
    ]);
  });
});

describe('record-set-bundle (Bundle)', () => {
  it('admits only DocumentReference, DiagnosticReport and ImagingStudy entries', () => {
    const bundle = makeRecordSetBundle({ entry: [{ resource: { resourceType: 'Patient', id: 'p1' } }] });
    expect(errorsOf(bundle)).toEqual([
      ['Bundle.entry[0]', 'Constraint so-recordset-1 not met: A record-set entry is a DocumentReference, DiagnosticReport or ImagingStudy'],
    ]);
    const mixed = makeRecordSetBundle({
      entry: [
        { resource: makeRecordDocument() },
        { resource: { resourceType: 'DiagnosticReport', status: 'final', code: { text: 'Knee X-ray report' } } },
        { resource: { resourceType: 'ImagingStudy', status: 'available', subject: { reference: 'Patient/p1' } } },
      ],
    });
    expect(validator.validate(mixed)).toEqual([]);
  });

  it('requires contentType, size, hash and url on every document attachment', () => {
    const unhashed = makeRecordDocument({
      content: [{ attachment: { contentType: 'application/pdf', url: 'https://second-opinion.example/fhir/Binary/b1', size: 10 } }],
    });
    expect(errorsOf(makeRecordSetBundle({ entry: [{ resource: makeRecordDocument() }, { resource: unhashed }] }))).toEqual([
      [
        'Bundle',
        'Constraint so-recordset-2 not met: Every DocumentReference attachment in the record set has contentType, size, hash and url',
      ],
    ]);
  });

  it('must be a collection with a timestamp and an identifier', () => {
    expect(errorsOf(makeRecordSetBundle({ type: 'searchset', timestamp: undefined, identifier: undefined }))).toEqual([
      ['Bundle.identifier', 'Missing required property'],
      ['Bundle.type', 'Value did not match expected pattern'],
      ['Bundle.timestamp', 'Missing required property'],
    ]);
  });
});

describe('consult-note (DocumentReference)', () => {
  it('requires the LOINC consult-note type and an author', () => {
    expect(errorsOf(makeConsultNote({ type: { coding: [{ system: SYSTEM.loinc, code: '11506-3' }] } }))).toEqual([
      ['DocumentReference.type', 'Value did not match expected pattern'],
    ]);
    expect(errorsOf(makeConsultNote({ author: undefined }))).toEqual([['DocumentReference.author', 'Missing required property']]);
  });

  it('requires a content type and the content inline or by url', () => {
    expect(errorsOf(makeConsultNote({ content: [{ attachment: { data: 'aGk=' } }] }))).toEqual([
      ['DocumentReference.content[0].attachment.contentType', 'Missing required property'],
    ]);
    expect(errorsOf(makeConsultNote({ content: [{ attachment: { contentType: 'text/plain' } }] }))).toEqual([
      [
        'DocumentReference.content[0].attachment',
        "Constraint so-consult-1 not met: The consult note's attachment carries its content inline (data) or by url",
      ],
    ]);
  });
});

describe('follow-up-communication (Communication)', () => {
  const question = buildQuestion({
    id: 'q-1',
    taskId: 'task-1',
    patient: { reference: 'https://ehr.example/fhir/R4/Patient/7c1e' },
    text: 'Would an MRI change your view?',
    sender: { reference: 'https://ehr.example/fhir/R4/Practitioner/dr-nilsen' },
    consultant: { reference: 'Organization/lakeside' },
    now: new Date('2026-12-01T10:00:00Z'),
    due: new Date('2026-12-06T10:00:00Z'),
  });
  const answer = buildAnswer({ id: 'a-1', questionId: 'q-1', taskId: 'task-1', patient: question.subject as never, text: 'No.', consultant: { reference: 'Organization/lakeside' }, recipient: question.sender as never, now: new Date('2026-12-02T10:00:00Z') });

  it('accepts a question with its due date and an answer in response to it', () => {
    expect(errorsOf(question)).toEqual([]);
    expect(errorsOf(answer)).toEqual([]);
  });

  it('requires the due date on a question, the Task it is based on and its text', () => {
    expect(errorsOf({ ...question, extension: undefined })).toEqual([
      ['Communication', 'Constraint so-followup-1 not met: A follow-up question carries the date its answer is due; an answer points at its question'],
    ]);
    expect(errorsOf({ ...answer, basedOn: undefined })).toEqual([['Communication.basedOn', 'Missing required property']]);
    expect(errorsOf({ ...answer, payload: undefined })).toEqual([['Communication.payload', 'Missing required property']]);
  });
});

describe('first-opinion (ClinicalImpression)', () => {
  it('must be completed and about a patient', () => {
    expect(errorsOf(makeFirstOpinion({ status: 'in-progress' }))).toEqual([
      ['ClinicalImpression.status', 'Value did not match expected pattern'],
    ]);
    expect(errorsOf(makeFirstOpinion({ subject: { reference: 'Group/g1' } }))).toEqual([
      ['ClinicalImpression.subject', 'Reference to Group where Patient is allowed'],
    ]);
  });
});
