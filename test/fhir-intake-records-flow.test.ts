import type { Bundle, OperationOutcome, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { PROFILE } from '../src/fhir/constants.ts';
import { createValidator } from '../src/fhir/validator.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { ORG_REGISTRY, referralParts, toTransaction, type BundleParts } from './support/fhir-referrals.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { stateChanges, storeState } from './support/store-state.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * FHIR intake gaps over real HTTP against the strict sandbox EHR: clinics named only
 * by the EHR's own Organization reference (read from the EHR, recognised by identifier);
 * supportingInfo naming DiagnosticReports and ImagingStudies (records of the one intake model,
 * taken by the JSON door too, copied into the record set); reasonReference refused with 422.
 */
describe('FHIR intake: clinics by EHR reference, reports and studies, reasonReference', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);
  const validator = createValidator();
  const parts = (): BundleParts => referralParts(ehr.seeded, ehr.baseUrl);
  const lakesideOnEhr = () => `${ehr.baseUrl}/Organization/${ehr.seeded.organizations.lakeside}`;
  const reportRef = () => `${ehr.baseUrl}/DiagnosticReport/${ehr.seeded.pathologyReportId}`;
  const studyRef = () => `${ehr.baseUrl}/ImagingStudy/${ehr.seeded.imagingStudyId}`;

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0 });
    service = await startTestService({ NETWORK_FILE: await writeSandboxNetwork(ehr) });
    tokens['st-olaf'] = await getAccessToken(service.url, clientIdOf('st-olaf'));
  }, 60_000);
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  async function refused(path: string, body: unknown, status: number, expressions: string[]): Promise<OperationOutcome> {
    const before = await storeState(service);
    const res = await call<OperationOutcome>('POST', path, 'st-olaf', body);
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue.map((i) => i.expression?.[0])).toEqual(expressions);
    expect(stateChanges(before, await storeState(service))).toEqual([]);
    return res.body;
  }

  // Refusals first: no referral exists yet, so no background assembly changes the store meanwhile.
  describe('refusals name the element and write nothing', () => {
    it('reasonReference (a Condition on the EHR): 422 business-rule naming it, pointing at reasonCode', async () => {
      const p = parts();
      p.serviceRequest.reasonReference = [{ reference: `${ehr.baseUrl}/Condition/c-1` }];
      const body = await refused('/fhir', toTransaction(p), 422, ['Bundle.entry[0].resource.reasonReference[0]']);
      expect(body.issue).toEqual([
        {
          severity: 'error',
          code: 'business-rule',
          details: { text: "reasonReference is not taken: this service does not read Conditions from your EHR. Send the condition as ServiceRequest.reasonCode (the Condition's code codings)" },
          expression: ['Bundle.entry[0].resource.reasonReference[0]'],
        },
      ]);
    });

    it('a clinic named by a reference to an Organization the EHR does not hold: 422 naming the performer, with the EHR status', async () => {
      const p = parts();
      p.serviceRequest.performer = [{ reference: `${ehr.baseUrl}/Organization/no-such-organization` }];
      p.serviceRequest.supportingInfo = p.serviceRequest.supportingInfo!.slice(1);
      const body = await refused('/fhir/ServiceRequest', p.serviceRequest, 422, ['ServiceRequest.performer[0]']);
      expect(body.issue[0]).toMatchObject({ code: 'business-rule', details: { text: expect.stringContaining('(HTTP 404)') } });
    });

    it('a clinic named by the EHR reference of an Organization whose identifiers name no participant (Harbor Clinic): 422 naming the Task owner', async () => {
      const harbor = ehr.seeded.organizations['harbor-clinic'];
      expect(harbor).toBeDefined();
      const p = parts();
      p.serviceRequest.performer = undefined;
      p.tasks = [p.tasks[0] as Task];
      p.tasks[0]!.owner = { reference: `${ehr.baseUrl}/Organization/${harbor}` };
      const body = await refused('/fhir', toTransaction(p, ['sr', 't0', 'ci']), 422, ['Bundle.entry[1].resource.owner']);
      expect(body.issue[0]?.code).toBe('business-rule');
    });

    it('supportingInfo naming a type that is no record (Observation): 400 naming it, listing what is taken', async () => {
      const p = parts();
      p.serviceRequest.supportingInfo!.push({ reference: `${ehr.baseUrl}/Observation/o-1` });
      const body = await refused('/fhir', toTransaction(p), 400, ['Bundle.entry[0].resource.supportingInfo[3]']);
      expect(body.issue[0]?.details?.text).toContain('DocumentReference, DiagnosticReport, ImagingStudy');
    });
  });

  describe('accepted', () => {
    let sr: ServiceRequest;

    it('a Bundle naming Lakeside only by the EHR reference (Task owner and performer), with a DiagnosticReport and an ImagingStudy: created, the clinic recognised', async () => {
      const p = parts();
      p.serviceRequest.performer![0] = { reference: lakesideOnEhr(), display: 'Lakeside Clinic' };
      p.tasks[0]!.owner = { reference: lakesideOnEhr() };
      p.serviceRequest.supportingInfo!.push({ reference: reportRef(), display: 'Pathology report' }, { reference: studyRef() });
      const res = await call<Bundle>('POST', '/fhir', 'st-olaf', toTransaction(p));
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      const srLocation = res.body.entry?.[0]?.response?.location as string;
      const id = srLocation.split('/').at(-3) as string;
      sr = (await call<ServiceRequest>('GET', `/fhir/ServiceRequest/${id}`, 'st-olaf')).body;
      expect(sr.performer?.map((x) => x.reference)).toEqual(['Organization/lakeside', 'Organization/northfield-pathology']);
      expect(sr.supportingInfo?.filter((s) => s.type !== undefined && s.type !== 'Consent').map((s) => [s.type, s.reference])).toEqual([
        ['DocumentReference', `${ehr.baseUrl}/DocumentReference/${seededDocument(ehr.seeded, 'op-note-2024').id}`],
        ['DiagnosticReport', reportRef()],
        ['ImagingStudy', studyRef()],
      ]);
      expect(sr.meta?.profile).toEqual([PROFILE.serviceRequest]);
      expect(validator.validate(sr)).toEqual([]);
      const tasks = await call<Bundle<Task>>('GET', `/fhir/Task?focus=ServiceRequest/${id}`, 'st-olaf');
      expect((tasks.body.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource?.owner?.reference).sort()).toEqual(['Organization/lakeside', 'Organization/northfield-pathology']);
    });

    it('the record set holds copies of the named DiagnosticReport and ImagingStudy, with their sources', async () => {
      const summary = await until(async () => {
        const s = await call<ReferralSummary>('GET', `/second-opinions/${sr.id}`, 'st-olaf');
        return s.body.recordSet.bundleId ? s.body : undefined;
      }, 'the record set');
      const bundle = (await call<Bundle>('GET', `/fhir/Bundle/${summary.recordSet.bundleId}`, 'st-olaf')).body;
      const copies = (bundle.entry ?? []).map((e) => e.resource as Resource);
      for (const [type, source] of [['DiagnosticReport', reportRef()], ['ImagingStudy', studyRef()]] as const) {
        const copy = copies.find((r) => r.resourceType === type && r.meta?.source === source);
        expect([type, copy?.meta?.source]).toEqual([type, source]);
      }
    });

    it('POST /fhir/ServiceRequest: a performer named by a relative reference to the EHR\'s Organization becomes Lakeside\'s Task', async () => {
      const p = parts();
      p.serviceRequest.performer = [{ reference: `Organization/${ehr.seeded.organizations.lakeside}` }, { identifier: { system: ORG_REGISTRY, value: 'ORG-2002' } }];
      p.serviceRequest.supportingInfo = p.serviceRequest.supportingInfo!.slice(1);
      const res = await call<ServiceRequest>('POST', '/fhir/ServiceRequest', 'st-olaf', p.serviceRequest);
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body.performer?.map((x) => x.reference)).toEqual(['Organization/lakeside', 'Organization/northfield-pathology']);
    });

    it('the JSON door takes the same records (one model): a DiagnosticReport and an ImagingStudy in records.documents', async () => {
      const body = makeSecondOpinionRequest(
        { records: { documents: [{ reference: `DiagnosticReport/${ehr.seeded.pathologyReportId}` }, { reference: `ImagingStudy/${ehr.seeded.imagingStudyId}`, display: 'MRI knee' }] } },
        ehr.seeded,
      );
      const res = await call<{ id: string }>('POST', '/second-opinions', 'st-olaf', body);
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      const stored = (await call<ServiceRequest>('GET', `/fhir/ServiceRequest/${res.body.id}`, 'st-olaf')).body;
      expect(stored.supportingInfo?.filter((s) => s.type === 'DiagnosticReport' || s.type === 'ImagingStudy')).toEqual([
        { reference: reportRef(), type: 'DiagnosticReport' },
        { reference: studyRef(), type: 'ImagingStudy', display: 'MRI knee' },
      ]);
    });
  });
});
