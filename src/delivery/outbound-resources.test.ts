import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { EXAMPLE_OPINION } from '../../test/support/opinions.ts';
import { PROFILE } from '../fhir/constants.ts';
import { createValidator } from '../fhir/validator.ts';
import { buildConsultNote } from '../opinions/consult-note.ts';
import { OpinionSchema } from '../opinions/opinion.ts';
import { findReferences } from '../outbound/ehr-references.ts';
import { ehrTarget, toCommunication, toEhrDocument } from './deliver-opinion.ts';

const EHR = 'https://ehr.st-olaf.example/fhir/R4';
const REGISTRY = 'https://registry.example.org/organizations';
const LAKESIDE = { reference: 'Organization/lakeside', display: 'Lakeside Clinic (example)', identifier: [{ system: REGISTRY, value: 'ORG-2001' }] };
const network = { findByOrganization: (reference: string) => (reference === LAKESIDE.reference ? { organization: LAKESIDE } : undefined) };

const note = buildConsultNote({
  id: 'note-1',
  opinion: OpinionSchema.parse(EXAMPLE_OPINION),
  patient: { reference: `${EHR}/Patient/7c1e`, display: 'A patient' },
  serviceRequestId: 'sr-1',
  taskId: 'task-1',
  consultant: { reference: LAKESIDE.reference, display: LAKESIDE.display },
  now: new Date('2026-12-01T10:00:00Z'),
  requestId: 'REQ-1',
});
const serviceRequest: ServiceRequest = {
  resourceType: 'ServiceRequest',
  id: 'sr-1',
  status: 'active',
  intent: 'order',
  subject: { reference: `${EHR}/Patient/7c1e` },
  requester: { reference: `${EHR}/Practitioner/9f3a`, display: 'Dr Nilsen' },
  identifier: [{ type: { coding: [{ code: 'PLAC' }] }, system: 'urn:st-olaf:requests', value: 'REQ-1' }],
};
const task: Task = { resourceType: 'Task', id: 'task-1', status: 'completed', intent: 'order', owner: { reference: LAKESIDE.reference, display: LAKESIDE.display } };
const validator = createValidator();

/** Every reference is either relative to the EHR (it exists there) or logical (identifier and/or display, no literal reference). */
function expectOnlyEhrOrLogical(resource: Parameters<typeof findReferences>[0]): void {
  for (const { path, reference } of findReferences(resource)) {
    if (reference.reference !== undefined) expect(reference.reference, path).toMatch(/^(Patient|Practitioner|DocumentReference)\/[0-9a-f]+$/);
    else expect(reference.identifier ?? reference.display, path).toBeDefined();
  }
}

describe('what is posted to an EHR references only what exists there', () => {
  it('the consult note: the patient relative on the EHR, the consulting clinic by identifier and name, the request by placer identifier', () => {
    const doc = toEhrDocument(note, ehrTarget(EHR, undefined, network), serviceRequest, 'REQ-1');
    expect(doc.subject).toEqual({ reference: 'Patient/7c1e', display: 'A patient' });
    expect(doc.author).toEqual([{ type: 'Organization', identifier: { system: REGISTRY, value: 'ORG-2001' }, display: LAKESIDE.display }]);
    expect(doc.context?.related).toEqual([{ identifier: { system: 'urn:st-olaf:requests', value: 'REQ-1' }, display: 'Second-opinion request' }]);
    expect(doc.id).toBeUndefined();
    expect(JSON.stringify(doc)).not.toContain('Organization/lakeside');
    expect(JSON.stringify(doc)).not.toContain('ServiceRequest/sr-1');
    expectOnlyEhrOrLogical(doc);
    expect(findReferences(doc).map((r) => r.path)).toEqual(['DocumentReference.subject', 'DocumentReference.author[0]', 'DocumentReference.context.related[0]']);
  });

  it('meta.profile is left out unless the EHR is set to keep it; either way the note validates', () => {
    const omitted = toEhrDocument(note, ehrTarget(EHR, 'omit', network), serviceRequest, 'REQ-1');
    expect(omitted.meta).toBeUndefined();
    expect(validator.validate(omitted)).toEqual([]);
    const kept = toEhrDocument(note, ehrTarget(EHR, 'keep', network), serviceRequest, 'REQ-1');
    expect(kept.meta).toEqual({ profile: [PROFILE.consultNote] });
    expect(validator.validate(kept)).toEqual([]);
  });

  it('a participant without identifiers is named by display only; a reference to another server becomes logical too', () => {
    const bare = { findByOrganization: () => ({ organization: { reference: LAKESIDE.reference, display: LAKESIDE.display } }) };
    const doc = toEhrDocument({ ...note, custodian: { reference: 'https://other.example/fhir/Organization/x', display: 'Elsewhere' } }, ehrTarget(EHR, undefined, bare), serviceRequest, 'REQ-1');
    expect(doc.author).toEqual([{ type: 'Organization', display: LAKESIDE.display }]);
    expect(doc.custodian).toEqual({ type: 'Organization', display: 'Elsewhere' });
  });

  it('the Communication: to the requester, about the note created there, sent by the clinic (by identifier), about the patient', () => {
    const communication = toCommunication({ deliveryId: 'note-1', remoteDocumentId: 'a1b2', note, serviceRequest, task, now: new Date('2026-12-01T10:05:00Z') }, ehrTarget(EHR, undefined, network));
    expect(communication.recipient).toEqual([{ reference: 'Practitioner/9f3a', display: 'Dr Nilsen' }]);
    expect(communication.about).toEqual([{ reference: 'DocumentReference/a1b2' }]);
    expect(communication.subject).toEqual({ reference: 'Patient/7c1e', display: 'A patient' });
    expect(communication.sender).toEqual({ type: 'Organization', identifier: { system: REGISTRY, value: 'ORG-2001' }, display: LAKESIDE.display });
    expectOnlyEhrOrLogical(communication);
    expect(validator.validate(communication)).toEqual([]);
  });
});
