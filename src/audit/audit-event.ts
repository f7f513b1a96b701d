/**
 * AuditEvent for every read and disclosure of PHI (docs/fhir.md, "FHIR model"):
 * who (client and participant organization), what (references only), when, outcome.
 *
 * Coded after R4 AuditEvent and the IHE Basic Audit Log Patterns (BALP):
 * - read/vread/history/search/operation/create/update: type `audit-event-type#rest`, subtype
 *   the FHIR restful interaction (`read`, `vread`, `history-instance`, `search-type`,
 *   `operation`, `create`, `update`), action R / R / R / E / E / C / U (BALP Read, Query,
 *   Create, Update; an operation that answers with data is executed like a query);
 * - disclose: type DICOM 110106 "Export", subtype `iso-21089-lifecycle#disclose`, action R
 *   (BALP PrivacyDisclosure.Source: this service is the source that releases the records);
 * - agents: the client and this service in DICOM "Source Role ID" (110153) / "Destination
 *   Role ID" (110152), in the direction BALP fixes per interaction (reads: the client is the
 *   destination; search, create, update: the client is the source), plus the participant's
 *   Organization as information recipient (IRCP) or author (AUT);
 * - entities: the patient (audit-entity-type 1 "Person", object-role 1 "Patient"), each
 *   resource (2 "System Object", role 4 "Domain Resource" by default), the search as a
 *   query entity (role 24, base64), and the request id (BALP XrequestId).
 * - outcome: success 0, refused 4 (minor failure: the request was refused), failure 8.
 *
 * Nothing but references, codes and ids: no names, no clinical text.
 *
 * @see https://hl7.org/fhir/R4/auditevent.html
 * @see https://profiles.ihe.net/ITI/BALP/
 */
import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding, Device, Identifier, Reference } from '@medplum/fhirtypes';
import { AUDIT_SYSTEM, CLIENT_ID_SYSTEM, PARTICIPANT_ID_SYSTEM } from '../fhir/constants.ts';

export type AuditAction = 'read' | 'vread' | 'history' | 'search' | 'operation' | 'disclose' | 'create' | 'update';
export type AuditOutcome = 'success' | 'refused' | 'failure';
/** AuditEvent.entity.role of a resource (BALP RestObjectRoles). */
export type AuditEntityRole = 'domain-resource' | 'report' | 'job';

export interface AuditEntityInput {
  /** Literal reference of the resource read, disclosed or written (`Bundle/b1`, `Binary/x`). */
  reference: string;
  /** Default `domain-resource`. */
  role?: AuditEntityRole;
  /** Default audit-entity-type 2 "System Object". */
  type?: Coding;
}

export interface AuditEventInput {
  action: AuditAction;
  outcome: AuditOutcome;
  /** The caller: its SMART client id, its network participant id and that participant's Organization. */
  agent: { clientId?: string; participantId: string; organizationReference: string };
  entities: readonly AuditEntityInput[];
  recorded: Date;
  /** This service, as the observer of the event. */
  source: { observer: { display: string; identifier?: Identifier }; site?: string };
  /** Why the data is used (e.g. v3-ActReason TREAT). */
  purposeOfUse?: Coding;
  /** The patient whose data it is, when known. */
  patientReference?: string;
  /** Outcome description, e.g. why a read was refused. Must carry no PHI. */
  description?: string;
  /** The request id (X-Request-Id) of the HTTP request that caused the event. */
  requestId?: string;
  /** For `search`: the search as requested, with references only (recorded base64, as BALP does). */
  query?: string;
}

const DICOM_SOURCE: Coding = { system: AUDIT_SYSTEM.dicom, code: '110153', display: 'Source Role ID' };
const DICOM_DESTINATION: Coding = { system: AUDIT_SYSTEM.dicom, code: '110152', display: 'Destination Role ID' };
const RECIPIENT: Coding = { system: AUDIT_SYSTEM.participationType, code: 'IRCP', display: 'information recipient' };
const AUTHOR: Coding = { system: AUDIT_SYSTEM.participationType, code: 'AUT', display: 'author (originator)' };

interface ActionCoding {
  type: Coding;
  subtype: Coding;
  action: NonNullable<AuditEvent['action']>;
  /** Whether the client is the DICOM source (else the destination) of this interaction. */
  clientIsSource: boolean;
  organizationRole: Coding;
}

const REST: Coding = { system: AUDIT_SYSTEM.eventType, code: 'rest', display: 'RESTful Operation' };
const rest = (code: string): Coding => ({ system: AUDIT_SYSTEM.restfulInteraction, code, display: code });

/** Type, subtype, action and agent directions per action (BALP Read, Query, Create, Update, PrivacyDisclosure.Source; vread and history as Read). */
export const AUDIT_ACTION_CODING: Readonly<Record<AuditAction, ActionCoding>> = {
  read: { type: REST, subtype: rest('read'), action: 'R', clientIsSource: false, organizationRole: RECIPIENT },
  vread: { type: REST, subtype: rest('vread'), action: 'R', clientIsSource: false, organizationRole: RECIPIENT },
  history: { type: REST, subtype: rest('history-instance'), action: 'R', clientIsSource: false, organizationRole: RECIPIENT },
  search: { type: REST, subtype: rest('search-type'), action: 'E', clientIsSource: true, organizationRole: RECIPIENT },
  // A FHIR operation that answers with data ($status, $events of a Subscription): executed at the client's request, as a query.
  operation: { type: REST, subtype: rest('operation'), action: 'E', clientIsSource: true, organizationRole: RECIPIENT },
  create: { type: REST, subtype: rest('create'), action: 'C', clientIsSource: true, organizationRole: AUTHOR },
  update: { type: REST, subtype: rest('update'), action: 'U', clientIsSource: true, organizationRole: AUTHOR },
  disclose: {
    type: { system: AUDIT_SYSTEM.dicom, code: '110106', display: 'Export' },
    subtype: { system: AUDIT_SYSTEM.lifecycle, code: 'disclose', display: 'Disclose Record Lifecycle Event' },
    action: 'R',
    clientIsSource: false,
    organizationRole: RECIPIENT,
  },
};

/** R4 audit-event-outcome: 0 success, 4 minor failure, 8 serious failure. */
export const AUDIT_OUTCOME_CODE: Readonly<Record<AuditOutcome, NonNullable<AuditEvent['outcome']>>> = {
  success: '0',
  refused: '4',
  failure: '8',
};

const ENTITY_ROLE: Readonly<Record<AuditEntityRole, Coding>> = {
  'domain-resource': { system: AUDIT_SYSTEM.objectRole, code: '4', display: 'Domain Resource' },
  report: { system: AUDIT_SYSTEM.objectRole, code: '3', display: 'Report' },
  job: { system: AUDIT_SYSTEM.objectRole, code: '20', display: 'Job' },
};
const SYSTEM_OBJECT: Coding = { system: AUDIT_SYSTEM.entityType, code: '2', display: 'System Object' };
const PERSON: Coding = { system: AUDIT_SYSTEM.entityType, code: '1', display: 'Person' };
const PATIENT_ROLE: Coding = { system: AUDIT_SYSTEM.objectRole, code: '1', display: 'Patient' };
const QUERY_ROLE: Coding = { system: AUDIT_SYSTEM.objectRole, code: '24', display: 'Query' };
const REQUEST_ID: Coding = { system: AUDIT_SYSTEM.balpEntityType, code: 'XrequestId', display: 'X-Request-Id' };
const APPLICATION_SERVER: Coding = { system: AUDIT_SYSTEM.sourceType, code: '4', display: 'Application Server' };

/**
 * Builds the AuditEvent of one read, search, disclosure or write, successful or not (refused
 * reads are audited too). Pure: the caller stores it.
 */
export function buildAuditEvent(input: AuditEventInput): AuditEvent {
  const coding = AUDIT_ACTION_CODING[input.action];
  const purpose = input.purposeOfUse ? [{ coding: [input.purposeOfUse] }] : undefined;
  const observer: Reference<Device> = {
    type: 'Device',
    display: input.source.observer.display,
    ...(input.source.observer.identifier ? { identifier: input.source.observer.identifier } : {}),
  };

  const client: AuditEventAgent | undefined = input.agent.clientId === undefined ? undefined : {
    type: { coding: [coding.clientIsSource ? DICOM_SOURCE : DICOM_DESTINATION] },
    who: { type: 'Device', identifier: { system: CLIENT_ID_SYSTEM, value: input.agent.clientId } },
    requestor: true,
    ...(purpose ? { purposeOfUse: purpose } : {}),
  };
  const organization: AuditEventAgent = {
    type: { coding: [coding.organizationRole] },
    who: {
      reference: input.agent.organizationReference,
      identifier: { system: PARTICIPANT_ID_SYSTEM, value: input.agent.participantId },
    },
    requestor: false,
  };
  const server: AuditEventAgent = {
    type: { coding: [coding.clientIsSource ? DICOM_DESTINATION : DICOM_SOURCE] },
    who: observer,
    requestor: false,
  };

  const entity: AuditEventEntity[] = [];
  if (input.patientReference) entity.push({ what: { reference: input.patientReference }, type: PERSON, role: PATIENT_ROLE });
  for (const e of input.entities) {
    entity.push({ what: { reference: e.reference }, type: e.type ?? SYSTEM_OBJECT, role: ENTITY_ROLE[e.role ?? 'domain-resource'] });
  }
  if (input.query !== undefined) {
    entity.push({ type: SYSTEM_OBJECT, role: QUERY_ROLE, query: Buffer.from(input.query, 'utf8').toString('base64') });
  }
  if (input.requestId) entity.push({ what: { identifier: { value: input.requestId } }, type: REQUEST_ID });

  return {
    resourceType: 'AuditEvent',
    type: coding.type,
    subtype: [coding.subtype],
    action: coding.action,
    recorded: input.recorded.toISOString(),
    outcome: AUDIT_OUTCOME_CODE[input.outcome],
    ...(input.description ? { outcomeDesc: input.description } : {}),
    ...(purpose ? { purposeOfEvent: purpose } : {}),
    // A disclosure made by the assembly job has no client: the recipient organization is the agent.
    agent: client ? [client, organization, server] : [{ ...organization, requestor: true }, server],
    source: {
      ...(input.source.site ? { site: input.source.site } : {}),
      observer,
      type: [APPLICATION_SERVER],
    },
    ...(entity.length > 0 ? { entity } : {}),
  };
}
