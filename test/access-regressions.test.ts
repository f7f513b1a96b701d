import type { AuditEvent, Bundle, DocumentReference, OperationOutcome, ServiceRequest, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import type { Worklist } from '../src/consults/worklist.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { clientCredentialsForm, getAccessToken, postTokenRequest } from './support/tokens.ts';

/**
 * Regressions of the security review, over real HTTP against the sandbox EHR:
 * - a referrer token issued for one practitioner reads and acts on that clinician's referrals
 *   only, at every door (JSON, /fhir read, vread, history, search, Binary), not only the summary;
 * - a consulting clinic the patient's Consent does not name sees nothing of the case.
 */
describe('access regressions: practitioner restriction at every door, consent before any disclosure', () => {
  let ehr: SandboxEhr;
  /** The ids this sandbox gave a seeded document (`op-note-2024`, ...) and its Binary. */
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;
  const binId = (key: string): string => seededDocument(ehr.seeded, key).binaryId!;
  let service: TestService;
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);
  let referral: { id: string; requestId: string; tasks: Task[] };
  let summary: ReferralSummary;
  let copy: DocumentReference;
  let binary: string;

  async function restrictedToken(practitioner: string): Promise<string> {
    const res = await postTokenRequest(service.url, { ...(await clientCredentialsForm(service.url, clientIdOf('st-olaf'))), practitioner });
    expect(res.status).toBe(200);
    return res.body.access_token as string;
  }

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
    service = await startTestService({ NETWORK_FILE: await writeSandboxNetwork(ehr, { timeoutMs: 5_000 }) });
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology', 'audit-office']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
    tokens.nilsen = await restrictedToken(`Practitioner/${ehr.seeded.practitionerId}`);
    tokens.other = await restrictedToken('Practitioner/dr-other');

    // dr-nilsen's referral to Lakeside (named by consent-1) and Northfield (not named by it).
    const body = makeSecondOpinionRequest({
      consultants: ['lakeside-consults', 'northfield-pathology'],
      blinded: false,
      records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }, { reference: `DocumentReference/${docId('discharge-2024')}` }, { reference: `DocumentReference/${docId('preop-photo-2024')}` }] },
    }, ehr.seeded);
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'nilsen', body);
    expect(created.status).toBe(201);
    referral = { ...created.body, requestId: body.requestId as string };
    summary = await until(async () => {
      const s = await call<ReferralSummary>('GET', `/second-opinions/${referral.id}`, 'st-olaf');
      return s.body.recordSet.status === 'records-pending' ? undefined : s.body;
    }, 'the record set');
    expect(summary.recordSet).toMatchObject({ status: 'records-ready', consent: [{ participant: 'lakeside-consults', permitted: true }, { participant: 'northfield-pathology', permitted: false }] });
    const bundle = await call<Bundle>('GET', `/fhir/Bundle/${summary.recordSet.bundleId}`, 'st-olaf');
    copy = bundle.body.entry?.[0]?.resource as DocumentReference;
    binary = (copy.content[0]?.attachment.url ?? '').split('/').pop() as string;
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  const taskOf = (participant: 'lakeside-consults' | 'northfield-pathology') =>
    referral.tasks.find((t) => t.owner?.reference === (participant === 'lakeside-consults' ? 'Organization/lakeside' : 'Organization/northfield-pathology')) as Task;

  /** Every read door onto the referral's resources, as (what, path, how many search hits when visible). */
  function readDoors(): { what: string; path: string; hits?: number }[] {
    const task = taskOf('lakeside-consults');
    return [
      { what: 'ServiceRequest read', path: `/fhir/ServiceRequest/${referral.id}` },
      { what: 'ServiceRequest vread', path: `/fhir/ServiceRequest/${referral.id}/_history/1` },
      { what: 'ServiceRequest history', path: `/fhir/ServiceRequest/${referral.id}/_history` },
      { what: 'Task read', path: `/fhir/Task/${task.id}` },
      { what: 'Bundle read', path: `/fhir/Bundle/${summary.recordSet.bundleId}` },
      { what: 'DocumentReference read', path: `/fhir/DocumentReference/${copy.id}` },
      { what: 'Binary read', path: `/fhir/Binary/${binary}` },
      { what: 'ServiceRequest?identifier=', path: `/fhir/ServiceRequest?identifier=${encodeURIComponent(referral.requestId)}`, hits: 1 },
      { what: 'Task?focus=', path: `/fhir/Task?focus=ServiceRequest/${referral.id}`, hits: 2 },
      { what: 'Provenance?target=', path: `/fhir/Provenance?target=Bundle/${summary.recordSet.bundleId}`, hits: 1 },
      { what: 'summary', path: `/second-opinions/${referral.id}` },
      { what: 'comparison', path: `/second-opinions/${referral.id}/comparison` },
    ];
  }

  it('a token issued for another practitioner gets 404 (or an empty search) at every door; the requester\'s own token reads it all', async () => {
    for (const door of readDoors()) {
      const other = await call<OperationOutcome | Bundle>('GET', door.path, 'other');
      const own = await call<Bundle>('GET', door.path, 'nilsen');
      if (door.hits === undefined) {
        expect([door.what, other.status, (other.body as OperationOutcome | undefined)?.resourceType]).toEqual([door.what, 404, 'OperationOutcome']);
        expect([door.what, own.status]).toEqual([door.what, 200]);
      } else {
        expect([door.what, other.status, (other.body as Bundle).entry ?? []]).toEqual([door.what, 200, []]);
        expect([door.what, own.status, (own.body.entry ?? []).length]).toEqual([door.what, 200, door.hits]);
      }
    }
  });

  it('a token issued for another practitioner can neither act on the referral nor refer in another clinician\'s name', async () => {
    const before = await call<ServiceRequest>('GET', `/fhir/ServiceRequest/${referral.id}`, 'st-olaf');
    for (const [action, body] of [
      ['cancel', { reason: 'not mine' }],
      ['info', { text: 'an answer' }],
      ['records', { documents: [{ reference: 'DocumentReference/path-2024' }] }],
    ] as const) {
      const refused = await call<OperationOutcome>('POST', `/second-opinions/${referral.id}/${action}`, 'other', body);
      expect([action, refused.status, refused.body.resourceType]).toEqual([action, 404, 'OperationOutcome']);
    }
    const after = await call<ServiceRequest>('GET', `/fhir/ServiceRequest/${referral.id}`, 'st-olaf');
    expect(after.body.meta?.versionId).toBe(before.body.meta?.versionId);
    const summaryAfter = await call<ReferralSummary>('GET', `/second-opinions/${referral.id}`, 'st-olaf');
    expect(summaryAfter.body.recordSet.recordsRevision).toBe(summary.recordSet.recordsRevision);

    const impersonating = await call<OperationOutcome>('POST', '/second-opinions', 'other', makeSecondOpinionRequest({ requester: { reference: `Practitioner/${ehr.seeded.practitionerId}`, display: 'Dr Ingrid Nilsen' } }, ehr.seeded));
    expect(impersonating.status).toBe(403);
    expect(impersonating.body.issue).toEqual([
      { severity: 'error', code: 'forbidden', details: { text: 'This access token was issued for another practitioner: requester must be the practitioner named in the token request' }, expression: ['requester.reference'] },
    ]);
  });

  it('a clinic the consent does not name sees nothing of the case: not in its worklist, 404 at every door, each refusal audited', async () => {
    const northfieldTask = taskOf('northfield-pathology');
    const worklist = await call<Worklist>('GET', '/consults', 'northfield-pathology');
    expect(worklist.status).toBe(200);
    expect(worklist.body.items.map((i) => i.referral.id)).not.toContain(referral.id);
    for (const path of [`/fhir/ServiceRequest/${referral.id}`, `/fhir/Task/${northfieldTask.id}`, `/fhir/Task/${northfieldTask.id}/_history`, `/fhir/Bundle/${summary.recordSet.bundleId}`, `/fhir/Binary/${binary}`]) {
      const refused = await call<OperationOutcome>('GET', path, 'northfield-pathology');
      expect([path, refused.status, refused.body.resourceType]).toEqual([path, 404, 'OperationOutcome']);
    }
    for (const path of [`/fhir/Task?focus=ServiceRequest/${referral.id}`, `/fhir/ServiceRequest?patient=${encodeURIComponent(`${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`)}`]) {
      const search = await call<Bundle>('GET', path, 'northfield-pathology');
      expect([path, search.status, search.body.entry ?? []]).toEqual([path, 200, []]);
    }
    const accept = await call<OperationOutcome>('POST', `/consults/${northfieldTask.id}/accept`, 'northfield-pathology');
    expect(accept.status).toBe(404);

    // The Task stays untouched, waiting for consent.
    const task = await call<Task>('GET', `/fhir/Task/${northfieldTask.id}`, 'st-olaf');
    expect(task.body).toMatchObject({ status: 'requested', businessStatus: { coding: [{ code: 'awaiting-consent' }] } });
    expect(task.body.meta?.versionId).toBe('2');

    const events = await call<Bundle<AuditEvent>>('GET', `/fhir/AuditEvent?entity=ServiceRequest/${referral.id}&agent=Organization/northfield-pathology&outcome=4`, 'audit-office');
    expect(events.status).toBe(200);
    expect((events.body.entry ?? []).map((e) => (e.resource as AuditEvent).outcomeDesc)).toEqual(['Refused (404): not found, or not visible to the caller']);
  });

  it('the clinic the consent names is admitted with the record set: its Task, the referral and the first opinion, in one disclosure', async () => {
    const lakesideTask = taskOf('lakeside-consults');
    const worklist = await call<Worklist>('GET', '/consults', 'lakeside-consults');
    expect(worklist.body.items.find((i) => i.referral.id === referral.id)?.task.id).toBe(lakesideTask.id);
    expect((await call('GET', `/fhir/ServiceRequest/${referral.id}`, 'lakeside-consults')).status).toBe(200);
    const tasks = await call<Bundle<Task>>('GET', `/fhir/Task?focus=ServiceRequest/${referral.id}`, 'lakeside-consults');
    expect((tasks.body.entry ?? []).map((e) => e.resource?.id)).toEqual([lakesideTask.id]);

    const disclosures = await call<Bundle<AuditEvent>>('GET', `/fhir/AuditEvent?entity=ServiceRequest/${referral.id}&subtype=disclose`, 'audit-office');
    const disclosed = (disclosures.body.entry ?? []).map((e) => e.resource as AuditEvent);
    expect(disclosed).toHaveLength(1);
    expect(disclosed[0]?.agent[0]?.who?.identifier?.value).toBe('lakeside-consults');
    const entities = disclosed[0]?.entity?.map((e) => e.what?.reference) ?? [];
    expect(entities.slice(0, 5)).toEqual([`${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`, `ServiceRequest/${referral.id}`, `Task/${lakesideTask.id}`, expect.stringMatching(/^ClinicalImpression\//), `Bundle/${summary.recordSet.bundleId}`]);
  });
});
