import type { AuditEvent, Bundle, OperationOutcome, ServiceRequest, Task } from '@medplum/fhirtypes';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createValidator } from '../src/fhir/validator.ts';
import { createLogger } from '../src/log/logger.ts';
import { MAX_CONSULTANTS_PER_REFERRAL } from '../src/intake/add-consultants.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE_POLICIES } from '../src/jobs/queues.ts';
import type { Comparison } from '../src/retrieval/comparison.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { opinionDeliveries, recordSetAssemblies } from '../src/store/schema.ts';
import { clientIdOf, outboundTo, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION as OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { generateClientKey, getAccessToken } from './support/tokens.ts';

const OTHER_REFERRER = { participant: 'harbor-hospital', clientId: 'harbor-ehr' };
/** Consulting clinics with no system of their own: only to fill a referral up to its cap. */
const EXTRA_CONSULTANTS = ['extra-1', 'extra-2', 'extra-3', 'extra-4', 'extra-5', 'extra-6'];

/**
 * Third and fourth opinions over real HTTP against the sandbox EHR: the referrer
 * adds clinics to a referral, each gets its Task, its consent is checked, it receives the current
 * record set (the same Bundle, nothing fetched again), and on a blinded referral it sees no other
 * opinion until its own is in.
 */
describe('third and fourth opinions (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  let store: ResourceStore;
  const validator = createValidator();
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 50_000 } });
    const otherKey = await generateClientKey();
    const networkFile = await writeSandboxNetwork(
      { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl },
      {
        timeoutMs: 5_000,
        add: () => [
          {
            id: OTHER_REFERRER.participant,
            name: 'Harbor Hospital (test)',
            roles: ['referrer'],
            organization: { reference: 'Organization/harbor' },
            clients: [{ clientId: OTHER_REFERRER.clientId, jwks: { keys: [otherKey.publicJwk] }, scope: 'system/*.rs system/ServiceRequest.c' }],
            fhir: outboundTo(ehr, 5_000),
          },
          ...EXTRA_CONSULTANTS.map((id) => ({
            id,
            name: `Clinic ${id} (test)`,
            roles: ['consultant'],
            organization: { reference: `Organization/${id}`, identifier: [{ system: 'https://example.org/test-clinics', value: id }] },
            clients: [],
          })),
        ],
      },
    );
    service = await startTestService({ NETWORK_FILE: networkFile }, process.env.DEBUG_LOGS ? createLogger({ level: 'error' }) : undefined, {
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 2 })),
      jobPollingIntervalSeconds: 0.5,
    });
    store = new ResourceStore(service.database.db, validator);
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology', 'riverside-imaging', 'audit-office']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
    tokens[OTHER_REFERRER.participant] = await getAccessToken(service.url, OTHER_REFERRER.clientId, { privateJwk: otherKey.privateJwk });
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  const summary = async (id: string) => (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
  const readTask = (id: string) => store.read<Task>('Task', id, 'system');
  const businessCode = (t: Task | undefined) => t?.businessStatus?.coding?.[0]?.code;

  /** A referral whose record set is assembled and shared with `consultants`. */
  async function referral(overrides: Parameters<typeof makeSecondOpinionRequest>[0]): Promise<{ id: string; taskIds: string[]; bundleId: string }> {
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest(overrides, ehr.seeded));
    expect(created.status).toBe(201);
    const id = created.body.id;
    const ready = await until(async () => {
      const s = await summary(id);
      return s.recordSet.status === 'records-ready' ? s : undefined;
    }, 'records-ready');
    return { id, taskIds: created.body.tasks.map((t) => t.id as string), bundleId: ready.recordSet.bundleId as string };
  }

  /** The clinic accepts, starts and returns its opinion; returns the consult note's id. */
  async function opine(taskId: string, consultant: string): Promise<string> {
    await until(async () => (businessCode(await readTask(taskId)) === 'records-ready' ? true : undefined), `records for ${consultant}`);
    expect((await call('POST', `/consults/${taskId}/accept`, consultant)).status).toBe(200);
    expect((await call('POST', `/consults/${taskId}/start`, consultant)).status).toBe(200);
    const done = await call<Task>('POST', `/consults/${taskId}/opinion`, consultant, OPINION);
    expect(done.status).toBe(200);
    return (done.body.output?.[0]?.valueReference?.reference as string).split('/')[1] as string;
  }

  const delivered = (noteId: string) =>
    until(async () => ((await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, noteId)))[0]?.status === 'delivered' ? true : undefined), `delivery of ${noteId}`);

  it('a third clinic on a completed, blinded referral: its own Task, the same record set, no other opinion before its own', async () => {
    const consent = await ehr.addConsent(['lakeside', 'northfield-pathology']);
    const { id, taskIds, bundleId } = await referral({ consultants: ['lakeside-consults', 'northfield-pathology'], blinded: true, consent: { reference: `Consent/${consent}` } });
    const notes = [await opine(taskIds[0] as string, 'lakeside-consults'), await opine(taskIds[1] as string, 'northfield-pathology')];
    for (const note of notes) await delivered(note);
    const completed = await store.read<ServiceRequest>('ServiceRequest', id, 'system');
    expect(completed?.status).toBe('completed');
    const [before] = await service.database.db.select().from(recordSetAssemblies).where(eq(recordSetAssemblies.serviceRequestId, id));
    const firstOpinion = completed?.supportingInfo?.find((s) => s.reference?.startsWith('ClinicalImpression/'))?.reference as string;

    // The patient's consent for the third clinic is a new Consent, named with the addition.
    const third = await ehr.addConsent(['riverside-imaging']);
    const requestsBefore = ehr.requests.length;
    const added = await call<{ id: string; serviceRequest: ServiceRequest; tasks: Task[] }>('POST', `/second-opinions/${id}/consultants`, 'st-olaf', {
      consultants: ['riverside-imaging'],
      consent: { reference: `Consent/${third}` },
    });
    expect(added.status).toBe(201);
    expect(added.headers.get('location')).toBe(`${service.url}/second-opinions/${id}`);
    expect(added.body.serviceRequest).toMatchObject({ status: 'active', performer: [{ reference: 'Organization/lakeside' }, { reference: 'Organization/northfield-pathology' }, { reference: 'Organization/riverside-imaging' }] });
    expect(validator.validate(added.body.serviceRequest)).toEqual([]);
    const [task] = added.body.tasks;
    expect(task).toMatchObject({ status: 'requested', owner: { reference: 'Organization/riverside-imaging' }, focus: { reference: `ServiceRequest/${id}` }, businessStatus: { coding: [{ code: 'records-pending' }] } });
    expect(validator.validate(task as Task)).toEqual([]);
    // Due by the referral's priority, as the first Tasks were.
    const first = await readTask(taskIds[0] as string);
    const span = (t: Task) => Date.parse(t.restriction?.period?.end as string) - Date.parse(t.authoredOn as string);
    expect(span(task as Task)).toBe(span(first as Task));
    const thirdTaskId = task?.id as string;

    // The very record set: the same Bundle, no record fetched again from the EHR.
    const ready = await until(async () => {
      const t = await readTask(thirdTaskId);
      return businessCode(t) === 'records-ready' ? t : undefined;
    }, 'the third clinic admitted');
    expect(ready.input?.[0]?.valueReference?.reference).toBe(`Bundle/${bundleId}`);
    const reads = ehr.requests.slice(requestsBefore).filter((r) => r.method === 'GET' && /\/(DocumentReference|Binary|DiagnosticReport)/.test(r.path) && r.origin === 'ehr');
    expect(reads.map((r) => r.path)).toEqual([]);
    const [after] = await service.database.db.select().from(recordSetAssemblies).where(eq(recordSetAssemblies.serviceRequestId, id));
    expect(after).toMatchObject({ bundleId, recordsRevision: before?.recordsRevision, attempts: before?.attempts });
    expect(after?.consent).toEqual(expect.arrayContaining([expect.objectContaining({ participant: 'riverside-imaging', permitted: true })]));
    expect((await call<Bundle>('GET', `/fhir/Bundle/${bundleId}`, 'riverside-imaging')).status).toBe(200);

    // Blinded: neither the first opinion nor the other clinics' opinions, on any read or search.
    expect(await store.read('ClinicalImpression', firstOpinion.split('/')[1] as string, { participantId: 'riverside-imaging' })).toBeUndefined();
    for (const note of notes) expect((await call('GET', `/fhir/DocumentReference/${note}`, 'riverside-imaging')).status).toBe(404);
    const search = await call<Bundle>('GET', `/fhir/DocumentReference?_count=100`, 'riverside-imaging');
    expect(search.status).toBe(200);
    const seen = (search.body.entry ?? []).map((e) => e.resource?.id);
    for (const note of notes) expect(seen).not.toContain(note);
    const recordSet = (await call<Bundle>('GET', `/fhir/Bundle/${bundleId}`, 'riverside-imaging')).body;
    expect((recordSet.entry ?? []).filter((e) => JSON.stringify(e.resource).includes('11488-4'))).toEqual([]);

    // Its opinion releases them (audited), completes the referral again and is delivered.
    const own = await opine(thirdTaskId, 'riverside-imaging');
    expect(await store.read('ClinicalImpression', firstOpinion.split('/')[1] as string, { participantId: 'riverside-imaging' })).toBeDefined();
    for (const note of notes) expect((await call('GET', `/fhir/DocumentReference/${note}`, 'riverside-imaging')).status).toBe(200);
    const audits = await store.search<AuditEvent>({ resourceType: 'AuditEvent', contains: [[{ entity: [{ what: { reference: `DocumentReference/${notes[0]}` } }] }]], count: 20 }, 'system');
    const release = audits.resources.find((a) => a.outcomeDesc?.includes('released to the consultant after its own opinion'));
    expect(release).toMatchObject({ action: 'R', outcome: '0' });
    const whats = release?.entity?.map((e) => e.what?.reference);
    expect(whats).toEqual(expect.arrayContaining([firstOpinion, `DocumentReference/${notes[0]}`, `DocumentReference/${notes[1]}`]));
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('completed');
    await delivered(own);

    // Summary and comparison: three clinics, three opinions.
    const s = await summary(id);
    expect(s.consultants.map((c) => [c.participant, c.task.id, c.task.status])).toEqual([
      ['lakeside-consults', taskIds[0], 'completed'],
      ['northfield-pathology', taskIds[1], 'completed'],
      ['riverside-imaging', thirdTaskId, 'completed'],
    ]);
    const comparison = await call<Comparison>('GET', `/second-opinions/${id}/comparison`, 'st-olaf');
    expect(comparison.status).toBe(200);
    expect(comparison.body.opinions.map((o) => o.source).sort()).toEqual(['lakeside-consults', 'northfield-pathology', 'riverside-imaging']);
  });

  it('unblinded: a clinic the consent covers sees the earlier opinion (audited); one it does not cover waits for consent', async () => {
    const { id, taskIds } = await referral({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } });
    const note = await opine(taskIds[0] as string, 'lakeside-consults');
    const northfieldOnly = await ehr.addConsent(['northfield-pathology']);
    const added = await call<{ tasks: Task[] }>('POST', `/second-opinions/${id}/consultants`, 'st-olaf', {
      consultants: ['northfield-pathology', 'riverside-imaging'],
      consent: { reference: `Consent/${northfieldOnly}` },
    });
    expect(added.status).toBe(201);
    const [northfield, riverside] = added.body.tasks.map((t) => t.id as string);
    await until(async () => (businessCode(await readTask(northfield as string)) === 'records-ready' ? true : undefined), 'northfield admitted');
    const waiting = await until(async () => {
      const t = await readTask(riverside as string);
      return businessCode(t) === 'awaiting-consent' ? t : undefined;
    }, 'riverside awaiting consent');
    expect(waiting.status).toBe('requested');
    expect(waiting.input).toBeUndefined();
    expect((await call('GET', `/fhir/Task/${riverside}`, 'riverside-imaging')).status).toBe(404);
    expect((await call('GET', `/fhir/DocumentReference/${note}`, 'riverside-imaging')).status).toBe(404);
    // The earlier opinion is disclosed to the clinic admitted after it, and the disclosure says so.
    expect((await call('GET', `/fhir/DocumentReference/${note}`, 'northfield-pathology')).status).toBe(200);
    const audits = await store.search<AuditEvent>({ resourceType: 'AuditEvent', contains: [[{ entity: [{ what: { reference: `DocumentReference/${note}` } }] }]], count: 20 }, 'system');
    expect(audits.resources.some((a) => a.action === 'R' && a.agent?.some((g) => JSON.stringify(g).includes('northfield')) && a.outcomeDesc?.includes('made available to the consultant'))).toBe(true);
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('active');
    // The clinic that declines settles nothing while another is open; cancelling the waiting one ends the referral again.
    expect((await call('POST', `/consults/${northfield}/decline`, 'northfield-pathology', { reason: 'Not our field' })).status).toBe(200);
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('active');
    expect((await call('POST', `/second-opinions/${id}/cancel`, 'st-olaf', { reason: 'Two opinions suffice' })).status).toBe(200);
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('completed');
  });

  it('records added since the last assembly: the record set is assembled again, for the new clinic too', async () => {
    const { id, taskIds, bundleId } = await referral({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } });
    const records = await call<{ recordsRevision: number }>('POST', `/second-opinions/${id}/records`, 'st-olaf', { documents: [{ reference: `DocumentReference/${seededDocument(ehr.seeded, 'hp-2024').id}` }] });
    expect(records.status).toBe(202);
    const consent = await ehr.addConsent(['northfield-pathology']);
    const added = await call<{ tasks: Task[] }>('POST', `/second-opinions/${id}/consultants`, 'st-olaf', { consultants: ['northfield-pathology'], consent: { reference: `Consent/${consent}` } });
    expect(added.status).toBe(201);
    const northfield = added.body.tasks[0]?.id as string;
    const ready = await until(async () => {
      const s = await summary(id);
      return s.recordSet.assembledRevision === 2 && s.recordSet.status === 'records-ready' ? s : undefined;
    }, 'the assembly of revision 2');
    expect(ready.recordSet).toMatchObject({ recordsRevision: 2, assembledRevision: 2 });
    expect(ready.recordSet.bundleId).not.toBe(bundleId);
    const task = await until(async () => {
      const t = await readTask(northfield);
      return businessCode(t) === 'records-ready' ? t : undefined;
    }, 'northfield admitted');
    expect(task.input?.[0]?.valueReference?.reference).toBe(`Bundle/${ready.recordSet.bundleId}`);
    expect((await readTask(taskIds[0] as string))?.input?.[0]?.valueReference?.reference).toBe(`Bundle/${ready.recordSet.bundleId}`);
    const recordSet = await call<Bundle>('GET', `/fhir/Bundle/${ready.recordSet.bundleId}`, 'northfield-pathology');
    expect(recordSet.status).toBe(200);
    expect(recordSet.body.entry?.some((e) => e.resource?.meta?.source?.includes(`DocumentReference/${seededDocument(ehr.seeded, 'hp-2024').id}`))).toBe(true);
  });

  it('refuses a revoked referral, a clinic already on it, an unknown or non-consultant participant, and other referrers', async () => {
    const { id } = await referral({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } });
    const post = (who: string, body: unknown) => call<OperationOutcome>('POST', `/second-opinions/${id}/consultants`, who, body);

    const refused = await post('st-olaf', { consultants: ['lakeside-consults', 'nowhere', 'audit-office'] });
    expect(refused.status).toBe(422);
    expect(refused.body.issue?.map((i) => [i.code, i.expression?.[0]])).toEqual([
      ['business-rule', 'consultants[0]'],
      ['business-rule', 'consultants[1]'],
      ['business-rule', 'consultants[2]'],
    ]);
    expect(refused.body.issue?.[0]?.details?.text).toContain('already a consultant of this referral');
    const invalid = await post('st-olaf', { consultants: ['riverside-imaging', 'riverside-imaging'] });
    expect(invalid.status).toBe(400);
    expect(invalid.body.issue?.[0]?.expression).toEqual(['consultants']);

    // Not the referrer's referral: as if it did not exist. A consultant may not add at all.
    const other = await post(OTHER_REFERRER.participant, { consultants: ['riverside-imaging'] });
    expect(other.status).toBe(404);
    expect((await post('lakeside-consults', { consultants: ['riverside-imaging'] })).status).toBe(403);

    expect((await call('POST', `/second-opinions/${id}/cancel`, 'st-olaf', { reason: 'Patient decided' })).status).toBe(200);
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('revoked');
    const revoked = await post('st-olaf', { consultants: ['riverside-imaging'] });
    expect(revoked.status).toBe(409);
    expect(revoked.body.issue?.[0]).toMatchObject({ code: 'conflict', details: { text: expect.stringContaining('revoked') } });
  });

  it('two identical posts at once add the clinic once; the cap on clinics per referral is named', async () => {
    const { id, taskIds } = await referral({ consultants: ['lakeside-consults', 'extra-1', 'extra-2'], blinded: false, firstOpinion: { documents: [] } });
    const body = { consultants: ['riverside-imaging'] };
    const both = await Promise.all([0, 1].map(() => call<OperationOutcome>('POST', `/second-opinions/${id}/consultants`, 'st-olaf', body)));
    expect(both.map((r) => r.status).sort()).toEqual([201, 422]);
    const loser = both.find((r) => r.status === 422);
    expect(loser?.body.issue?.[0]?.expression).toEqual(['consultants[0]']);
    expect((await summary(id)).consultants).toHaveLength(taskIds.length + 1);

    // 4 clinics on it, 3 more make 7; of the next two, the first is the 8th and the second is refused, named.
    expect((await call('POST', `/second-opinions/${id}/consultants`, 'st-olaf', { consultants: ['northfield-pathology', 'extra-3', 'extra-4'] })).status).toBe(201);
    expect(MAX_CONSULTANTS_PER_REFERRAL).toBe(8);
    const over = await call<OperationOutcome>('POST', `/second-opinions/${id}/consultants`, 'st-olaf', { consultants: ['extra-5', 'extra-6'] });
    expect(over.status).toBe(422);
    expect(over.body.issue).toEqual([expect.objectContaining({ code: 'business-rule', expression: ['consultants[1]'], details: { text: expect.stringContaining('at most 8 consultants') } })]);
    expect((await summary(id)).consultants).toHaveLength(7);
  });
});
