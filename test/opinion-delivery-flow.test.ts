import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseSearchRequest } from '@medplum/core';
import type { AuditEvent, Bundle, ClinicalImpression, Communication, DocumentReference, OperationOutcome, ServiceRequest, Task } from '@medplum/fhirtypes';
import { COMPARISON_PAGE_CSP, type Comparison } from '../src/retrieval/comparison.ts';
import { findReferences } from '../src/outbound/ehr-references.ts';
import { ORGANIZATION_REGISTRY_SYSTEM } from './support/sandbox-ehr/seed-resources.ts';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OPINION_NOTIFICATION_SYSTEM } from '../src/delivery/deliver-opinion.ts';
import { SYSTEM } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { QUEUE, QUEUE_POLICIES } from '../src/jobs/queues.ts';
import { readOpinionExtension } from '../src/opinions/consult-note.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { opinionDeliveries } from '../src/store/schema.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';
import { EXAMPLE_OPINION as OPINION } from './support/opinions.ts';

const ROOT = path.join(import.meta.dirname, '..');

/**
 * The opinion and its post-back over real HTTP: the consultant submits, the
 * Task completes with the consult note, the delivery job posts it to the sandbox EHR with a
 * conditional create and a Communication, and the EHR holds exactly one copy whatever fails.
 */
describe('opinion and post-back (flow)', () => {
  let ehr: SandboxEhr;
  /** The ids this sandbox gave a seeded document (`op-note-2024`, ...) and its Binary. */
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;
  const binId = (key: string): string => seededDocument(ehr.seeded, key).binaryId!;
  let service: TestService;
  let store: ResourceStore;
  const validator = createValidator();
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
    const network = JSON.parse(readFileSync(path.join(ROOT, 'examples', 'network.json'), 'utf8')) as { participants: { id: string; fhir?: unknown }[] };
    const stOlaf = network.participants.find((p) => p.id === 'st-olaf');
    if (!stOlaf) throw new Error('example network lacks st-olaf');
    stOlaf.fhir = { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: 2_000 };
    const networkFile = path.join(await mkdtemp(path.join(tmpdir(), 'so-network-')), 'network.json');
    await writeFile(networkFile, JSON.stringify(network));
    service = await startTestService({ NETWORK_FILE: networkFile }, undefined, {
      // Short delays; delivery gives up after 3 retries so the re-drive can be shown.
      queuePolicies: QUEUE_POLICIES.map((q) => ({ ...q, retryDelaySeconds: 1, retryDelayMaxSeconds: 1, ...(q.name === QUEUE.deliverOpinion ? { retryLimit: 3 } : {}) })),
      jobPollingIntervalSeconds: 0.5,
    });
    store = new ResourceStore(service.database.db, validator);
    for (const p of ['st-olaf', 'lakeside-consults', 'northfield-pathology', 'audit-office']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterEach(() => ehr?.faults.clear());
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  async function call<T>(method: string, pathname: string, participant: string, body?: unknown): Promise<{ status: number; body: T }> {
    const res = await fetch(`${service.url}${pathname}`, {
      method,
      headers: { authorization: `Bearer ${tokens[participant]}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
  }

  async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 45_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** A referral, assembled, its Tasks accepted and started: ready for the opinions. */
  async function inProgress(overrides: Parameters<typeof makeSecondOpinionRequest>[0] = {}): Promise<{ id: string; taskId: string; taskIds: string[] }> {
    const request = makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] }, ...overrides }, ehr.seeded);
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', request);
    expect(created.status).toBe(201);
    const id = created.body.id;
    const taskIds = created.body.tasks.map((t) => t.id as string);
    await until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'records');
    for (const [i, consultant] of (request.consultants as string[]).entries()) {
      expect((await call('POST', `/consults/${taskIds[i]}/accept`, consultant)).status).toBe(200);
      expect((await call('POST', `/consults/${taskIds[i]}/start`, consultant)).status).toBe(200);
    }
    return { id, taskId: taskIds[0] as string, taskIds };
  }

  const onEhr = async (type: 'DocumentReference' | 'Communication', identifier: string) =>
    (await ehr.repo.searchResources(parseSearchRequest(`${type}?identifier=${encodeURIComponent(identifier)}`))) as (DocumentReference | Communication)[];
  const deliveryOf = async (id: string) => (await service.database.db.select().from(opinionDeliveries).where(eq(opinionDeliveries.id, id)))[0];

  it('the opinion completes the Task with a consult note that validates; it is posted to the EHR once, with a Communication', async () => {
    const { id, taskId } = await inProgress();
    const bad = await call<OperationOutcome>('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', { ...OPINION, planAgreement: 'perhaps' });
    expect(bad.status).toBe(400);
    expect(bad.body.issue?.[0]?.expression).toEqual(['planAgreement']);

    const res = await call<Task>('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', OPINION);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'completed', output: [{ valueReference: { reference: expect.stringMatching(/^DocumentReference\//) } }] });
    expect(validator.validate(res.body)).toEqual([]);
    const noteId = (res.body.output?.[0]?.valueReference?.reference as string).split('/')[1] as string;

    // Readable by the referrer and the consultant, nobody else; validates; the structured points round-trip.
    const note = (await call<DocumentReference>('GET', `/fhir/DocumentReference/${noteId}`, 'st-olaf')).body;
    expect(validator.validate(note)).toEqual([]);
    expect(readOpinionExtension(note)).toMatchObject({ diagnosisAgreement: 'agree-with-modifications', planAgreement: 'disagree', recommendations: [{ preferred: true }, { preferred: false }] });
    expect(Buffer.from(note.content[0]?.attachment.data as string, 'base64').toString('utf8')).toContain('Aspiration and bone scan first');
    expect((await call('GET', `/fhir/DocumentReference/${noteId}`, 'lakeside-consults')).status).toBe(200);
    expect((await call('GET', `/fhir/DocumentReference/${noteId}`, 'northfield-pathology')).status).toBe(404);
    expect((await store.read<ServiceRequest>('ServiceRequest', id, 'system'))?.status).toBe('completed');

    const delivered = await until(async () => ((await deliveryOf(noteId))?.status === 'delivered' ? deliveryOf(noteId) : undefined), 'delivery');
    expect(delivered).toMatchObject({ status: 'delivered', attempts: 1, lastError: null });
    const docs = await onEhr('DocumentReference', `${SYSTEM.consultNoteId}|${noteId}`);
    expect(docs).toHaveLength(1);
    const remote = docs[0] as DocumentReference;
    expect(delivered?.remoteDocument).toBe(`${ehr.baseUrl}/DocumentReference/${remote.id}`);
    expect(remote).toMatchObject({ subject: { reference: `Patient/${ehr.seeded.patientId}` }, type: { coding: [{ code: '11488-4' }] }, context: { related: [{ identifier: { value: expect.any(String) } }] } });
    // What was sent conforms to R4; it names no profile (the EHR keeps none by default: fhir.profiles), and
    // the consulting clinic is named by its identifier, not by this service's Organization id.
    expect(remote.meta?.profile).toBeUndefined();
    expect(validator.validate(remote)).toEqual([]);
    expect(remote.author).toEqual([{ type: 'Organization', identifier: { system: ORGANIZATION_REGISTRY_SYSTEM, value: 'ORG-2001' }, display: 'Lakeside Clinic (example)' }]);
    const comms = (await onEhr('Communication', `${OPINION_NOTIFICATION_SYSTEM}|${noteId}`)) as Communication[];
    expect(comms).toHaveLength(1);
    expect(comms[0]).toMatchObject({ status: 'completed', recipient: [{ reference: `Practitioner/${ehr.seeded.practitionerId}` }], about: [{ reference: `DocumentReference/${remote.id}` }], sender: { identifier: { value: 'ORG-2001' } } });
    expect(validator.validate(comms[0] as Communication)).toEqual([]);
    // Every reference of everything posted resolves on the EHR, or is logical (identifier and name).
    const posted = findReferences(remote).concat(findReferences(comms[0] as Communication));
    expect(posted.length).toBeGreaterThanOrEqual(6);
    for (const { path, reference } of posted) {
      if (reference.reference !== undefined) await expect(ehr.repo.readReference(reference), `${path} ${reference.reference}`).resolves.toBeDefined();
      else expect(reference.identifier ?? reference.display, path).toBeDefined();
    }
    const task = (await store.read<Task>('Task', taskId, 'system')) as Task;
    expect(task.businessStatus?.coding?.[0]?.code).toBe('opinion-delivered');
    const summary = (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
    expect(summary.status).toBe('completed');
    expect(summary.consultants[0]).toMatchObject({
      task: { status: 'completed', businessStatus: 'opinion-delivered' },
      opinion: { documentReference: `DocumentReference/${noteId}`, diagnosisAgreement: 'agree-with-modifications', planAgreement: 'disagree', summary: OPINION.summary },
      delivery: { id: noteId, status: 'delivered', attempts: 1, remoteDocument: delivered?.remoteDocument, deliveredAt: expect.any(String) },
    });
    const audits = await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 10, contains: [[{ entity: [{ what: { reference: `DocumentReference/${noteId}` } }] }], [{ subtype: [{ code: 'disclose' }] }]] }, 'system');
    expect(audits.resources.map((a) => a.outcome)).toEqual(['0']);
  });

  it('the EHR fails the post-back with a 500, a timeout and a reset, then recovers: exactly one consult note on the EHR', async () => {
    const { taskId } = await inProgress();
    ehr.faults.add({ path: '/fhir/R4/DocumentReference', method: 'POST', status: 500, times: 1 });
    const res = await call<Task>('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', OPINION);
    expect(res.status).toBe(200);
    const noteId = (res.body.output?.[0]?.valueReference?.reference as string).split('/')[1] as string;
    await until(async () => (((await deliveryOf(noteId))?.attempts ?? 0) >= 1 ? true : undefined), 'first attempt');
    ehr.faults.add({ path: '/fhir/R4/DocumentReference', method: 'POST', delayMs: 2_500, times: 1 });
    await until(async () => (((await deliveryOf(noteId))?.attempts ?? 0) >= 2 ? true : undefined), 'second attempt');
    ehr.faults.add({ path: '/fhir/R4/DocumentReference', method: 'POST', resetConnection: true, times: 1 });
    const delivered = await until(async () => ((await deliveryOf(noteId))?.status === 'delivered' ? deliveryOf(noteId) : undefined), 'delivery', 60_000);
    expect(delivered?.attempts).toBeGreaterThanOrEqual(3);
    expect(await onEhr('DocumentReference', `${SYSTEM.consultNoteId}|${noteId}`)).toHaveLength(1);
    expect(await onEhr('Communication', `${OPINION_NOTIFICATION_SYSTEM}|${noteId}`)).toHaveLength(1);
    const audits = await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 20, contains: [[{ entity: [{ what: { reference: `DocumentReference/${noteId}` } }] }], [{ subtype: [{ code: 'disclose' }] }]] }, 'system');
    expect(audits.resources.filter((a) => a.outcome === '8').length).toBeGreaterThanOrEqual(2);
    expect(audits.resources.filter((a) => a.outcome === '0')).toHaveLength(1);
  });

  it('after the last retry the Task says delivery failed; an admin re-drive delivers it once', async () => {
    const { taskId } = await inProgress();
    ehr.faults.add({ path: '/fhir/R4/DocumentReference', method: 'POST', status: 503 });
    const res = await call<Task>('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', OPINION);
    const noteId = (res.body.output?.[0]?.valueReference?.reference as string).split('/')[1] as string;
    const failed = await until(async () => ((await deliveryOf(noteId))?.status === 'failed' ? deliveryOf(noteId) : undefined), 'failure', 60_000);
    expect(failed).toMatchObject({
      attempts: 4,
      lastError: `OutboundHttpError: POST ${ehr.baseUrl}/DocumentReference HTTP 503 (transient); the EHR said: exception: Injected fault: HTTP 503`,
      lastOutcome: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', details: { text: 'Injected fault: HTTP 503' } }] },
    });
    const task = (await store.read<Task>('Task', taskId, 'system')) as Task;
    // The Task, which the consultant reads too, names the call and the issue code, not the EHR's text.
    expect(task.businessStatus).toMatchObject({ coding: [{ code: 'delivery-failed' }], text: `POST ${ehr.baseUrl}/DocumentReference HTTP 503 (exception)` });

    expect((await call('POST', `/admin/deliveries/${noteId}/retry`, 'lakeside-consults')).status).toBe(403);
    ehr.faults.clear();
    const redrive = await call<{ status: string }>('POST', `/admin/deliveries/${noteId}/retry`, 'audit-office');
    expect(redrive).toMatchObject({ status: 202, body: { status: 'pending' } });
    expect((await call<OperationOutcome>('POST', `/admin/deliveries/${noteId}/retry`, 'audit-office')).status).toBe(409);
    await until(async () => ((await deliveryOf(noteId))?.status === 'delivered' ? true : undefined), 're-driven delivery');
    expect(await onEhr('DocumentReference', `${SYSTEM.consultNoteId}|${noteId}`)).toHaveLength(1);
    expect(((await store.read<Task>('Task', taskId, 'system')) as Task).businessStatus?.coding?.[0]?.code).toBe('opinion-delivered');
    expect((await call('POST', `/admin/deliveries/${noteId}/retry`, 'audit-office')).status).toBe(409);
    expect((await call('POST', '/admin/deliveries/no-such/retry', 'audit-office')).status).toBe(404);
  });

  it('blinded: the first opinion is withheld until the consultant submits its own, then released to it', async () => {
    const { taskId, id } = await inProgress({ blinded: true, firstOpinion: { documents: [{ reference: `DocumentReference/${docId('first-opinion-note')}` }] } });
    const summary = (await call<ReferralSummary>('GET', `/second-opinions/${id}`, 'st-olaf')).body;
    const withheldId = summary.recordSet.withheldBundleId as string;
    const sr = (await store.read<ServiceRequest>('ServiceRequest', id, 'system')) as ServiceRequest;
    const firstOpinion = sr.supportingInfo?.find((s) => s.reference?.startsWith('ClinicalImpression/'))?.reference as string;
    expect((await call('GET', `/fhir/Bundle/${withheldId}`, 'lakeside-consults')).status).toBe(404);
    expect(await store.read<ClinicalImpression>('ClinicalImpression', firstOpinion.split('/')[1] as string, { participantId: 'lakeside-consults' })).toBeUndefined();

    expect((await call('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', OPINION)).status).toBe(200);
    const released = await call<Bundle>('GET', `/fhir/Bundle/${withheldId}`, 'lakeside-consults');
    expect(released.status).toBe(200);
    expect(released.body.meta?.versionId).toBe('1');
    const copy = released.body.entry?.[0]?.resource as DocumentReference;
    expect((await call('GET', `/fhir/DocumentReference/${copy.id}`, 'lakeside-consults')).status).toBe(200);
    const sha256 = copy.content[0]?.attachment.url?.split('/').pop();
    expect((await fetch(`${service.url}/fhir/Binary/${sha256}`, { headers: { authorization: `Bearer ${tokens['lakeside-consults']}` } })).status).toBe(200);
    expect(await store.read<ClinicalImpression>('ClinicalImpression', firstOpinion.split('/')[1] as string, { participantId: 'lakeside-consults' })).toBeDefined();
  });

  it('comparison: the first opinion and both returned opinions side by side, with where they agree and differ; JSON and HTML', async () => {
    // A Consent naming both consulting organizations.
    const consentId = await ehr.addConsent(['lakeside', 'northfield-pathology']);
    const { id, taskIds } = await inProgress({
      consultants: ['lakeside-consults', 'northfield-pathology'],
      consent: { reference: `Consent/${consentId}` },
      firstOpinion: { diagnosis: [{ system: 'http://snomed.info/sct', code: '239873007', display: 'Osteoarthritis of knee' }], plan: 'Revision arthroplasty', documents: [] },
    });
    const pendingOnly = await call<Comparison>('GET', `/second-opinions/${id}/comparison`, 'st-olaf');
    expect(pendingOnly.body).toMatchObject({ opinions: [], pending: [{ source: 'lakeside-consults', status: 'in-progress' }, { source: 'northfield-pathology', status: 'in-progress' }] });
    expect(pendingOnly.body.agreement).toBeUndefined();

    await call('POST', `/consults/${taskIds[0]}/opinion`, 'lakeside-consults', OPINION);
    await call('POST', `/consults/${taskIds[1]}/opinion`, 'northfield-pathology', {
      ...OPINION,
      diagnosisAgreement: 'disagree',
      summary: 'Infection must be excluded <first>.',
      recommendations: [{ option: 'Two-stage revision', preferred: true, risks: ['Infection', 'Stiffness'], recovery: '6 months' }],
      missingInformation: ['Implant type and size', 'CRP and ESR'],
    });
    const res = await call<Comparison>('GET', `/second-opinions/${id}/comparison`, 'st-olaf');
    expect(res.status).toBe(200);
    expect(res.body.first).toMatchObject({ source: 'first-opinion', diagnosis: [{ code: '239873007' }], plan: 'Revision arthroplasty' });
    expect(res.body.opinions.map((o) => [o.source, o.preferredOption, o.diagnosisAgreement])).toEqual([
      ['lakeside-consults', 'Aspiration and bone scan first', 'agree-with-modifications'],
      ['northfield-pathology', 'Two-stage revision', 'disagree'],
    ]);
    // Each opinion's concordance with the first, classified when it was submitted (concordance/classify.ts).
    expect(res.body.opinions.map((o) => [o.source, o.concordance])).toEqual([
      ['lakeside-consults', { diagnosis: 'minor-discrepancy', plan: 'changed' }],
      ['northfield-pathology', { diagnosis: 'major-discrepancy', plan: 'changed' }],
    ]);
    expect(res.body.first?.concordance).toBeUndefined();
    const point = (name: string) => res.body.agreement?.find((a) => a.point === name);
    expect(point('diagnosis')).toMatchObject({ agree: true });
    expect(point('planAgreement')).toMatchObject({ agree: true, detail: 'All: Disagree' });
    expect(point('diagnosisAgreement')).toMatchObject({ agree: false });
    expect(point('preferredOption')).toMatchObject({ agree: false });
    expect(point('missingInformation')).toMatchObject({ agree: false, detail: 'Shared: implant type and size; otherwise they differ' });

    const html = await fetch(`${service.url}/second-opinions/${id}/comparison`, { headers: { authorization: `Bearer ${tokens['st-olaf']}`, accept: 'text/html' } });
    expect(html.headers.get('content-type')).toMatch(/^text\/html/);
    expect(html.headers.get('content-security-policy')).toBe(COMPARISON_PAGE_CSP);
    const page = await html.text();
    expect(page).toContain('<th>Key risks</th>');
    expect(page).toContain('Two-stage revision (preferred)');
    expect(page).toContain('<th>Compared with the first opinion</th><td></td><td>Diagnosis: Minor discrepancy<br>Plan: Changed</td><td>Diagnosis: Major discrepancy<br>Plan: Changed</td>');
    expect(page).not.toContain('<first>');
    // The comparison is the referrer's (and its physicians'): a consultant is refused by role.
    expect((await call('GET', `/second-opinions/${id}/comparison`, 'lakeside-consults')).status).toBe(403);
  });
});
