import type { Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createValidator } from '../src/fhir/validator.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { rowCounts } from './support/raw-http.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * References to other servers are refused at intake: every reference the
 * intake, add-records and information bodies carry must be relative or on the referrer's own
 * FHIR base (network file `fhir.baseUrl`, here the sandbox EHR), or the request answers 422
 * naming each field, and nothing is written. Before, `http://127.0.0.1:18099/...` or
 * `169.254.169.254` were accepted (201) and then reported unreadable.
 */
describe('references to other servers', () => {
  let ehr: SandboxEhr;
  /** The ids this sandbox gave a seeded document (`op-note-2024`, ...) and its Binary. */
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;
  const binId = (key: string): string => seededDocument(ehr.seeded, key).binaryId!;
  let service: TestService;
  let store: ResourceStore;
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);
  let referral: string;
  let task: string;

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 10_000 } });
    service = await startTestService({ NETWORK_FILE: await writeSandboxNetwork(ehr, { timeoutMs: 5_000 }) }, undefined, { jobPollingIntervalSeconds: 0.5 });
    store = new ResourceStore(service.database.db, createValidator());
    for (const p of ['st-olaf', 'lakeside-consults']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
    // A referral whose Lakeside Task is on hold for information, so /records and /info would otherwise go through.
    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] } }, ehr.seeded));
    expect(created.status).toBe(201);
    referral = created.body.id;
    task = created.body.tasks[0]?.id as string;
    await until(async () => ((await store.read<Task>('Task', task, 'system'))?.businessStatus?.coding?.[0]?.code === 'records-ready' ? true : undefined), 'the record set');
    for (const [action, body] of [['accept'], ['start'], ['request-info', { question: 'Which implant was used?' }]] as const) {
      expect((await call('POST', `/consults/${task}/${action}`, 'lakeside-consults', body)).status).toBe(200);
    }
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  const refusal = (fields: string[]) => ({
    resourceType: 'OperationOutcome',
    issue: fields.map((field) => ({
      severity: 'error',
      code: 'business-rule',
      details: { text: `${field} must be relative (e.g. DocumentReference/123) or an absolute URL on your own FHIR server ${ehr.baseUrl}: references to other servers are refused` },
      expression: [field],
    })),
  });

  /** POSTs and asserts a 422 naming `fields`, with no row written anywhere. */
  async function refused(path: string, body: unknown, fields: string[]): Promise<void> {
    const before = await rowCounts(service);
    const res = await call('POST', path, 'st-olaf', body);
    expect({ status: res.status, body: res.body }).toEqual({ status: 422, body: refusal(fields) });
    expect(await rowCounts(service)).toEqual(before);
  }

  /** Places outside the referrer's base; `{base}`, `{origin}` and `{host}` stand for the sandbox EHR's. */
  const elsewhere = [
    ['another port on the same host', 'http://127.0.0.1:18099/fhir/R4/DocumentReference/x'],
    ['the cloud metadata address', 'http://169.254.169.254/latest/meta-data/DocumentReference/x'],
    ['the same origin outside the base path', '{origin}/admin/DocumentReference/x'],
    ['a path that only starts like the base', '{base}-other/DocumentReference/x'],
    ['dot segments climbing out of the base', '{base}/../../admin/DocumentReference/x'],
    ['the base with credentials', 'http://user:secret@{host}/fhir/R4/DocumentReference/x'],
    ['the base over another scheme', 'https://{host}/fhir/R4/DocumentReference/x'],
    ['a network-path reference', '//127.0.0.1:18099/fhir/R4/DocumentReference/x'],
    ['a file URL', 'file:///etc/fhir/R4/DocumentReference/x'],
  ] as const;

  it.each(elsewhere)('intake: %s is refused naming the field (%s)', async (_what, template) => {
    const { origin, host } = new URL(ehr.baseUrl);
    const reference = template.replace('{base}', ehr.baseUrl).replace('{origin}', origin).replace('{host}', host);
    const request = makeSecondOpinionRequest({ records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }, { reference }] } }, ehr.seeded);
    await refused('/second-opinions', request, ['records.documents[1].reference']);
  });

  it('intake: every field that carries a reference is checked, and each bad one named', async () => {
    const far = 'http://169.254.169.254/fhir';
    const request = makeSecondOpinionRequest({
      patient: { reference: `${far}/Patient/${ehr.seeded.patientId}`, identifier: [] },
      requester: { reference: `${far}/Practitioner/${ehr.seeded.practitionerId}`, display: 'Dr Ingrid Nilsen' },
      firstOpinion: { documents: [{ reference: `DocumentReference/${docId('first-opinion-note')}` }, { reference: `${far}/DocumentReference/x` }] },
      records: { documents: [{ reference: `${far}/DocumentReference/y` }] },
      consent: { reference: `${far}/Consent/${ehr.seeded.consentId}` },
    }, ehr.seeded);
    await refused('/second-opinions', request, ['patient.reference', 'requester.reference', 'firstOpinion.documents[1].reference', 'records.documents[0].reference', 'consent.reference']);
  });

  it('add records: a document on another server is refused naming it; the referral is unchanged', async () => {
    await refused(`/second-opinions/${referral}/records`, { documents: [{ reference: `DocumentReference/${docId('progress-2024')}` }, { reference: 'http://127.0.0.1:18099/fhir/R4/DocumentReference/x' }] }, ['documents[1].reference']);
  });

  it('answering a request for information: a document on another server is refused naming it; the Task stays on hold', async () => {
    await refused(`/second-opinions/${referral}/info`, { text: 'Here it is', documents: [{ reference: 'http://169.254.169.254/latest/DocumentReference/x' }] }, ['documents[0].reference']);
    expect((await store.read<Task>('Task', task, 'system'))?.status).toBe('on-hold');
  });

  // Last: the referral it creates is assembled in the background, after the row-count checks above.
  it('intake: relative references and absolute ones on the base (any case of scheme and host) are accepted', async () => {
    const upper = ehr.baseUrl.replace('http://127.0.0.1', 'HTTP://127.0.0.1');
    const request = makeSecondOpinionRequest({
      patient: { reference: `${ehr.baseUrl}/Patient/${ehr.seeded.patientId}`, identifier: [] },
      records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }, { reference: `${upper}/DocumentReference/${docId('hp-2024')}/_history/1` }] },
    }, ehr.seeded);
    const res = await call<{ serviceRequest: { supportingInfo: { reference: string }[] } }>('POST', '/second-opinions', 'st-olaf', request);
    expect(res.status).toBe(201);
    expect(res.body.serviceRequest.supportingInfo.map((s) => s.reference)).toContain(`${upper}/DocumentReference/${docId('hp-2024')}/_history/1`);
  });
});
