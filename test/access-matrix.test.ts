import { readFile } from 'node:fs/promises';
import type { Bundle, DocumentReference, Provenance, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import type { Express } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mayView, type ResourceKind, type Viewer } from '../src/access/resource-audiences.ts';
import { FHIR_TYPE_ACCESS, ROUTE_RULES, ruleFor, type RouteAccess, type RouteRule } from '../src/access/route-rules.ts';
import { hasScope, splitScopes } from '../src/auth/scopes.ts';
import { BACKPORT_EXTENSION, TASK_TOPIC } from '../src/subscriptions/backport.ts';
import type { Worklist } from '../src/consults/worklist.ts';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { resources } from '../src/store/schema.ts';
import { writeSandboxNetwork, type ExampleParticipant } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { type BundleParts, referralParts, toTransaction } from './support/fhir-referrals.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument, type SeededIds } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { clientCredentialsForm, generateClientKey, postTokenRequest } from './support/tokens.ts';
import { listRoutes } from './support/routes.ts';
import { stateChanges, storeState } from './support/store-state.ts';

/** The sandbox's seeded ids, for module-level builders (set once the sandbox runs). */
let chart: SeededIds;
/** The sandbox's FHIR base (set with `chart`). */
let ehrBase: string;

/**
 * The access matrix, generated from the route table (src/access/route-rules.ts)
 * and the resource audiences (src/access/resource-audiences.ts), driven over real HTTP.
 *
 * The world: two referrers (St Olaf and Harbor), two clinicians of St Olaf (dr-nilsen, who
 * requested referral A, and dr-other), St Olaf's physicians' portal (acting for dr-nilsen),
 * three clinics and an auditor. Referral A (St Olaf, blinded) goes to Lakeside and Riverside,
 * whom the patient's Consent names, and to Northfield, whom it does not; Riverside has given its
 * opinion. Referral B (Harbor) goes to Northfield, named by its Consent. Every caller is tried on
 * every route, every resource and every action; the expected status is computed from the two
 * tables, never from the access lists the service stored. Refused reads must leave an
 * AuditEvent; refused writes must leave the store exactly as it was.
 */

type PartyId = 'referrer' | 'requester' | 'other-practitioner' | 'physician' | 'other-referrer' | 'consultant-admitted' | 'consultant-after-opinion' | 'consultant-before-consent' | 'auditor' | 'unknown';
type ReferralId = 'A' | 'B';
type Clinic = 'lakeside-consults' | 'riverside-imaging' | 'northfield-pathology';

interface Party {
  id: PartyId;
  participant?: string;
  roles: string[];
  scopes: string[];
  /** The referral it placed (referrer viewer). */
  referrerOf?: ReferralId;
  /** The referral whose requester it reads as. */
  requesterOf?: ReferralId;
  clinic?: Clinic;
}

interface Instance {
  label: string;
  kind: ResourceKind;
  referral: ReferralId;
  type: string;
  id: string;
  /** The clinic owning the Task (task kind) or that wrote the note (consult-note kind). */
  clinic?: Clinic;
}

/** Which clinics the world admits to which referral, and who gave its opinion (the world's facts, set up below). */
const ADMITTED: Record<ReferralId, Clinic[]> = { A: ['lakeside-consults', 'riverside-imaging'], B: ['northfield-pathology'] };
const OPINION_GIVEN: Record<ReferralId, Clinic[]> = { A: ['riverside-imaging'], B: [] };
const BLINDED: Record<ReferralId, boolean> = { A: true, B: false };

function viewersOf(party: Party, instance: Pick<Instance, 'referral' | 'clinic'>): Set<Viewer> {
  const v = new Set<Viewer>();
  const r = instance.referral;
  if (party.referrerOf === r) v.add('referrer');
  if (party.requesterOf === r) v.add('requester');
  if (party.roles.includes('auditor')) v.add('auditor');
  const clinic = party.clinic;
  if (clinic && ADMITTED[r].includes(clinic)) {
    v.add('consultant');
    if (!BLINDED[r]) v.add('consultant-unless-blinded');
    if (instance.clinic === clinic) v.add('owner').add('author');
    if (OPINION_GIVEN[r].includes(clinic)) v.add('consultant-after-opinion');
  }
  return v;
}

describe('access matrix: every caller x every route, resource and action, over HTTP', () => {
  let ehr: SandboxEhr;
  /** The ids this sandbox gave a seeded document (`op-note-2024`, ...) and its Binary. */
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;
  const binId = (key: string): string => seededDocument(ehr.seeded, key).binaryId!;
  let service: TestService;
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);
  const parties: Party[] = [];
  const instances: Instance[] = [];
  const refs: Refs = { sr: { A: '', B: '' }, tasks: {} };
  let app: Express;
  const counts = new Map<string, number>();
  /** Refused reads that must each have left an AuditEvent, per participant. */
  const refusedReads = new Map<string, number>();
  let matrixStart = '';

  const count = (route: string) => counts.set(route, (counts.get(route) ?? 0) + 1);

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 50_000 } });
    chart = ehr.seeded;
    ehrBase = ehr.baseUrl;
    const harborKey = await generateClientKey('ES384', 'harbor-1');
    // Harbor: a second referrer (its own client key) on the same sandbox EHR.
    const networkFile = await writeSandboxNetwork(ehr, {
      timeoutMs: 5_000,
      add: (byId) => [
        {
          ...(JSON.parse(JSON.stringify(byId('st-olaf'))) as ExampleParticipant),
          id: 'harbor',
          name: 'Harbor Hospital (test)',
          organization: { reference: 'Organization/harbor', display: 'Harbor Hospital (test)' },
          clients: [{ clientId: 'harbor-ehr', jwks: { keys: [harborKey.publicJwk] }, scope: 'system/*.rs system/ServiceRequest.c system/Task.rs' } as never],
        },
      ],
    });
    service = await startTestService({ NETWORK_FILE: networkFile });
    // The Express app, not the drain listener http-server.ts puts before it.
    app = service.server.listeners('request').find((l) => 'router' in l) as unknown as Express;

    const network = JSON.parse(await readFile(networkFile, 'utf8')) as { participants: (ExampleParticipant & { roles: string[]; clients: { clientId: string; scope: string }[] })[] };
    const scopeOf = (participant: string) => splitScopes(network.participants.find((p) => p.id === participant)?.clients[0]?.scope ?? '');
    const rolesOf = (participant: string) => network.participants.find((p) => p.id === participant)?.roles ?? [];
    const token = async (participant: string, extra: Record<string, string> = {}, privateJwk?: unknown) => {
      const clientId = network.participants.find((p) => p.id === participant)?.clients[0]?.clientId as string;
      const form = await clientCredentialsForm(service.url, clientId, privateJwk ? { privateJwk: privateJwk as never } : {});
      const res = await postTokenRequest(service.url, { ...form, ...extra });
      expect(res.status, `token for ${participant}`).toBe(200);
      return res.body.access_token as string;
    };
    const add = async (p: Party, extra: Record<string, string> = {}, privateJwk?: unknown) => {
      parties.push(p);
      if (p.participant) tokens[p.id] = await token(p.participant, extra, privateJwk);
    };
    const party = (id: PartyId, participant: string, more: Partial<Party> = {}): Party => ({ id, participant, roles: rolesOf(participant), scopes: scopeOf(participant), ...more });
    await add(party('referrer', 'st-olaf', { referrerOf: 'A' }));
    await add(party('requester', 'st-olaf', { requesterOf: 'A' }), { practitioner: `Practitioner/${ehr.seeded.practitionerId}` });
    await add(party('other-practitioner', 'st-olaf'), { practitioner: 'Practitioner/dr-other' });
    await add(party('physician', 'st-olaf-physicians', { requesterOf: 'A' }));
    await add(party('other-referrer', 'harbor', { referrerOf: 'B' }), {}, harborKey.privateJwk);
    await add(party('consultant-admitted', 'lakeside-consults', { clinic: 'lakeside-consults' }));
    await add(party('consultant-after-opinion', 'riverside-imaging', { clinic: 'riverside-imaging' }));
    await add(party('consultant-before-consent', 'northfield-pathology', { clinic: 'northfield-pathology' }));
    await add(party('auditor', 'audit-office'));
    parties.push({ id: 'unknown', roles: [], scopes: [] });
    tokens.unknown = 'eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJub2JvZHkifQ.c2lnbmF0dXJl';

    // Consents on the EHR: A's names Lakeside and Riverside, B's names Northfield.
    const consentA = await ehr.addConsent(['lakeside', 'riverside-imaging']);
    const consentB = await ehr.addConsent(['northfield-pathology']);

    const records = { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }, { reference: `DocumentReference/${docId('discharge-2024')}` }, { reference: `DocumentReference/${docId('preop-photo-2024')}` }] };
    const place = async (who: PartyId, body: Record<string, unknown>) => {
      const res = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', who, makeSecondOpinionRequest({ records, ...body }, ehr.seeded));
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return res.body;
    };
    const a = await place('requester', { consultants: ['lakeside-consults', 'riverside-imaging', 'northfield-pathology'], blinded: true, consent: { reference: `Consent/${consentA}` } });
    // B asks for a pathology read of other documents, so its attachment bytes are not A's (Binary is content-addressed).
    const b = await place('other-referrer', {
      kind: 'pathology-review',
      consultants: ['northfield-pathology'],
      blinded: false,
      firstOpinion: { documents: [] },
      records: { documents: [{ reference: `DocumentReference/${docId('pathology-2024')}` }] },
      requester: { reference: 'Practitioner/dr-berg', display: 'Dr Berg' },
      consent: { reference: `Consent/${consentB}` },
    });
    refs.sr = { A: a.id, B: b.id };
    const ownerOf: Record<string, Clinic> = { 'Organization/lakeside': 'lakeside-consults', 'Organization/riverside-imaging': 'riverside-imaging', 'Organization/northfield-pathology': 'northfield-pathology' };
    for (const [r, placed] of [['A', a], ['B', b]] as const) {
      for (const t of placed.tasks) refs.tasks[`${r}:${ownerOf[t.owner?.reference as string]}`] = t.id as string;
    }
    for (const [r, who] of [['A', 'referrer'], ['B', 'other-referrer']] as const) {
      await until(async () => {
        const s = await call<ReferralSummary>('GET', `/second-opinions/${refs.sr[r]}`, who);
        return s.body.recordSet.status === 'records-pending' ? undefined : s.body;
      }, `record set of ${r}`);
    }

    // Lakeside accepts A; Riverside accepts, starts and gives its opinion; Northfield accepts B.
    const act = async (who: PartyId, task: string, action: string, body?: unknown) => {
      const res = await call<Task>('POST', `/consults/${task}/${action}`, who, body);
      expect(res.status, `${who} ${action}: ${JSON.stringify(res.body)}`).toBe(200);
    };
    await act('consultant-admitted', refs.tasks['A:lakeside-consults'] as string, 'accept');
    await act('consultant-after-opinion', refs.tasks['A:riverside-imaging'] as string, 'accept');
    await act('consultant-after-opinion', refs.tasks['A:riverside-imaging'] as string, 'start');
    await act('consultant-after-opinion', refs.tasks['A:riverside-imaging'] as string, 'opinion', EXAMPLE_OPINION);
    await act('consultant-before-consent', refs.tasks['B:northfield-pathology'] as string, 'accept');
    await until(async () => {
      const s = await call<ReferralSummary>('GET', `/second-opinions/${refs.sr.A}`, 'referrer');
      return s.body.consultants.find((c) => c.participant === 'riverside-imaging')?.delivery?.status === 'delivered' ? true : undefined;
    }, 'the opinion posted back');

    // The resources of the world, one of each kind per referral (and per owning clinic).
    const rows = await service.database.db.select({ type: resources.resourceType, id: resources.id, content: resources.content }).from(resources);
    const all = rows.map((r) => r.content as Resource);
    const srs = all.filter((r): r is ServiceRequest => r.resourceType === 'ServiceRequest');
    const referralOf = (srId: string): ReferralId => (srId === refs.sr.A ? 'A' : 'B');
    for (const sr of srs) {
      const r = referralOf(sr.id as string);
      instances.push({ label: `ServiceRequest ${r}`, kind: 'referral', referral: r, type: 'ServiceRequest', id: sr.id as string });
      const disclosed = (sr.supportingInfo ?? []).flatMap((s) => (s.reference?.startsWith('Bundle/') ? [s.reference.slice(7)] : []));
      for (const bundle of all.filter((x): x is Bundle => x.resourceType === 'Bundle')) {
        const prov = all.find((p) => p.resourceType === 'Provenance' && (p as Provenance).target.some((t) => t.reference === `Bundle/${bundle.id}`)) as Provenance;
        if (prov.reason?.[0]?.text !== `Record set of ServiceRequest/${sr.id}`) continue;
        const kind: ResourceKind = disclosed.includes(bundle.id as string) ? 'record-set' : 'withheld-record-set';
        const tag = `${kind} ${r}`;
        instances.push({ label: `Bundle (${tag})`, kind, referral: r, type: 'Bundle', id: bundle.id as string });
        const copy = bundle.entry?.[0]?.resource as DocumentReference;
        instances.push({ label: `DocumentReference copy (${tag})`, kind, referral: r, type: 'DocumentReference', id: copy.id as string });
        instances.push({ label: `Provenance (${tag})`, kind, referral: r, type: 'Provenance', id: prov.id as string });
        const url = copy.content[0]?.attachment.url as string;
        instances.push({ label: `Binary (${tag})`, kind, referral: r, type: 'Binary', id: url.split('/').pop() as string });
      }
      const intakeProv = all.find((p) => p.resourceType === 'Provenance' && (p as Provenance).target.some((t) => t.reference === `ServiceRequest/${sr.id}`)) as Provenance;
      instances.push({ label: `Provenance (intake ${r})`, kind: 'intake-provenance', referral: r, type: 'Provenance', id: intakeProv.id as string });
    }
    for (const [key, id] of Object.entries(refs.tasks)) {
      const [r, clinic] = key.split(':') as [ReferralId, Clinic];
      instances.push({ label: `Task ${r} of ${clinic}`, kind: 'task', referral: r, type: 'Task', id, clinic });
      const change = all.find((p) => p.resourceType === 'Provenance' && (p as Provenance).target.some((t) => t.reference?.startsWith(`Task/${id}/`))) as Provenance | undefined;
      if (change) instances.push({ label: `Provenance (Task ${r} of ${clinic})`, kind: 'task', referral: r, type: 'Provenance', id: change.id as string, clinic });
    }
    const riversideTask = all.find((t) => t.id === refs.tasks['A:riverside-imaging']) as Task;
    refs.note = riversideTask.output?.[0]?.valueReference?.reference?.slice('DocumentReference/'.length) as string;
    instances.push({ label: 'consult note (A, Riverside)', kind: 'consult-note', referral: 'A', type: 'DocumentReference', id: refs.note, clinic: 'riverside-imaging' });
    const noteProv = all.find((p) => p.resourceType === 'Provenance' && (p as Provenance).target.some((t) => t.reference === `DocumentReference/${refs.note}`)) as Provenance;
    instances.push({ label: 'Provenance (consult note A)', kind: 'consult-note', referral: 'A', type: 'Provenance', id: noteProv.id as string, clinic: 'riverside-imaging' });
    // One AuditEvent of a single read: a coalesced one (polled summary) keeps only its latest version, so it has no `_history/1` to read.
    const event = all.find((x) => x.resourceType === 'AuditEvent' && x.meta?.versionId === '1') as Resource;
    instances.push({ label: 'AuditEvent', kind: 'audit-event', referral: 'A', type: 'AuditEvent', id: event.id as string });
    matrixStart = new Date().toISOString();
  }, 240_000);
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  /** 401 / 403 from the route's row, before any resource is looked at; undefined when the caller passes it. */
  function routeRefusal(party: Party, access: RouteAccess): number | undefined {
    if (access.kind === 'public') return undefined;
    if (party.id === 'unknown') return 401;
    if (access.kind !== 'roles') return undefined;
    if (!access.roles.some((r) => party.roles.includes(r))) return 403;
    if (access.scope && !hasScope(party.scopes, access.scope.type, access.scope.interaction)) return 403;
    return undefined;
  }

  /** Expected status of a FHIR read-type interaction on `instance` (FHIR_TYPE_ACCESS, scopes, audiences). */
  function fhirExpectation(party: Party, instance: Instance, interaction: 'r' | 's'): { status: number; visible: boolean } {
    if (party.id === 'unknown') return { status: 401, visible: false };
    if (!hasScope(party.scopes, instance.type, interaction)) return { status: 403, visible: false };
    const typeRule = FHIR_TYPE_ACCESS[instance.type as keyof typeof FHIR_TYPE_ACCESS];
    if (typeRule && typeRule.roles !== 'any' && !typeRule.roles.some((r) => party.roles.includes(r))) return { status: 403, visible: false };
    const visible = mayView(instance.kind, viewersOf(party, instance));
    return { status: visible || interaction === 's' ? 200 : 404, visible };
  }

  const refused = (party: Party) => {
    if (party.participant) refusedReads.set(party.participant, (refusedReads.get(party.participant) ?? 0) + 1);
  };

  it('every route the service registers has a row in the access rules, and every row is exercised below', () => {
    const registered = listRoutes(app);
    expect(registered.length).toBeGreaterThan(20);
    const missing = registered.filter((r) => !ruleFor(r.method, r.path)).map((r) => `${r.method} ${r.path}`);
    expect(missing, 'routes without a row in ROUTE_RULES').toEqual([]);
    const unregistered = ROUTE_RULES.filter((rule) => !registered.some((r) => ruleFor(r.method, r.path) === rule)).map((r) => `${r.method} ${r.path}`);
    expect(unregistered, 'rows of ROUTE_RULES no route uses').toEqual([]);
    const uncovered = ROUTE_RULES.filter((rule) => !CELLS[rule.path]).map((r) => `${r.method} ${r.path}`);
    expect(uncovered, 'rows the matrix below does not drive: add cells for them').toEqual([]);
  });

  it('FHIR read, vread, history and search of every resource, for every caller', async () => {
    for (const instance of instances.filter((i) => i.type !== 'Binary')) {
      for (const party of parties) {
        const read = fhirExpectation(party, instance, 'r');
        for (const [route, path] of [
          ['/fhir/:type/:id', `/fhir/${instance.type}/${instance.id}`],
          ['/fhir/:type/:id/_history/:vid', `/fhir/${instance.type}/${instance.id}/_history/1`],
          ['/fhir/:type/:id/_history', `/fhir/${instance.type}/${instance.id}/_history`],
        ] as const) {
          const res = await call<Resource>('GET', path, party.id);
          count(route);
          expect(`${party.id} GET ${route} ${instance.label}: ${res.status}`).toBe(`${party.id} GET ${route} ${instance.label}: ${read.status}`);
          if (res.status === 403 || res.status === 404) refused(party);
        }
        const search = fhirExpectation(party, instance, 's');
        const res = await call<Bundle>('GET', `/fhir/${instance.type}?_id=${instance.id}`, party.id);
        count('/fhir/:type');
        expect(`${party.id} search ${instance.label}: ${res.status}`).toBe(`${party.id} search ${instance.label}: ${search.status}`);
        if (res.status === 200) expect(`${party.id} search ${instance.label}: ${(res.body.entry ?? []).filter((e) => e.search?.mode === 'match').length} hits`).toBe(`${party.id} search ${instance.label}: ${search.visible ? 1 : 0} hits`);
        if (res.status === 403) refused(party);
      }
    }
  });

  it('Binary: the attachment bytes of every record set, for every caller', async () => {
    const rule = ruleFor('GET', '/fhir/Binary/:id') as RouteRule;
    for (const instance of instances.filter((i) => i.type === 'Binary')) {
      for (const party of parties) {
        // The bytes are stored once by content: whoever may read any record set carrying them may read them.
        const holders = instances.filter((i) => i.type === 'Binary' && i.id === instance.id);
        const expected = routeRefusal(party, rule.access) ?? (holders.some((h) => mayView(h.kind, viewersOf(party, h))) ? 200 : 404);
        const res = await fetch(`${service.url}/fhir/Binary/${instance.id}`, { headers: { authorization: `Bearer ${tokens[party.id]}` } });
        await res.arrayBuffer();
        count(rule.path);
        expect(`${party.id} Binary ${instance.label}: ${res.status}`).toBe(`${party.id} Binary ${instance.label}: ${expected}`);
        if (expected === 403 || expected === 404) refused(party);
      }
    }
  });

  it('the JSON referral routes, consultant actions, worklist, admin and directory routes, for every caller; refused writes change nothing', async () => {
    const before = await storeState(service);
    for (const [path, cells] of Object.entries(CELLS)) {
      const rule = ROUTE_RULES.find((r) => r.path === path) as RouteRule;
      for (const cell of cells({ refs })) {
        // Several methods may share a path (GET and DELETE /fhir/Subscription/:id): each cell is held to its own row.
        const cellRule = ruleFor(cell.method ?? rule.method, path) ?? rule;
        for (const party of parties) {
          if (cell.deferred?.(party)) continue;
          const refusal = routeRefusal(party, cellRule.access);
          const expected = refusal ?? cell.expect(party);
          const res = await call<unknown>(cell.method ?? rule.method, cell.path, party.id, cell.body, cell.headers);
          count(path);
          const label = `${party.id} ${cell.method ?? rule.method} ${cell.path}`;
          if (Array.isArray(expected)) expect(expected, `${label}: ${res.status} ${JSON.stringify(res.body)}`).toContain(res.status);
          else expect(`${label}: ${res.status}`).toBe(`${label}: ${expected}`);
          if (cellRule.access.kind === 'roles' && cellRule.access.audit && (res.status === 403 || res.status === 404)) refused(party);
          cell.check?.(party, res.status, res.body);
        }
      }
    }
    expect(stateChanges(before, await storeState(service))).toEqual([]);
  });

  it('every refused read left an AuditEvent (outcome 4) naming the caller', async () => {
    for (const [participant, expected] of refusedReads) {
      let found = 0;
      let next: string | undefined = `/fhir/AuditEvent?agent=Organization/${ORGANIZATIONS[participant]}&outcome=4&date=ge${matrixStart}&_count=500`;
      while (next) {
        const page: { body: Bundle } = await call<Bundle>('GET', next, 'auditor');
        found += (page.body.entry ?? []).filter((e) => e.search?.mode === 'match').length;
        const link = page.body.link?.find((l) => l.relation === 'next')?.url;
        next = link ? link.slice(service.url.length) : undefined;
      }
      expect(`${participant}: ${found} refusals audited`).toBe(`${participant}: ${expected} refusals audited`);
    }
    expect(refusedReads.size).toBeGreaterThan(5);
  });

  it('the referrer-side writes reach the referral only for its referrer and requester (run last: they change it)', async () => {
    for (const party of parties) {
      const rule = ruleFor('POST', '/second-opinions/:id/cancel') as RouteRule;
      const res = await call<unknown>('POST', `/second-opinions/${refs.sr.B}/cancel`, party.id, { reason: 'matrix' });
      count(rule.path);
      const expected = routeRefusal(party, rule.access) ?? (party.referrerOf === 'B' || party.requesterOf === 'B' ? 200 : 404);
      expect(`${party.id} cancel B: ${res.status}`).toBe(`${party.id} cancel B: ${expected}`);
    }
    // Printed for the CI log: how many cells each route got.
    console.log(`access matrix: ${[...counts.values()].reduce((a, b) => a + b, 0)} requests; ${[...counts].map(([r, n]) => `${r} ${n}`).join('; ')}`);
  });
});

const ORGANIZATIONS: Record<string, string> = {
  'st-olaf': 'st-olaf',
  'st-olaf-physicians': 'st-olaf-primary-care',
  harbor: 'harbor',
  'lakeside-consults': 'lakeside',
  'riverside-imaging': 'riverside-imaging',
  'northfield-pathology': 'northfield-pathology',
  'audit-office': 'audit-office',
};

/** A referral written as FHIR, due in the past (refused by intake once the caller passes the route's row). */
function pastDueParts(): BundleParts {
  const parts = referralParts(chart, ehrBase);
  parts.serviceRequest.occurrenceDateTime = '2020-01-01';
  return parts;
}

interface Cell {
  method?: string;
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** The status once the route's row lets the caller through; a list when several prove the call reached its target. */
  expect(party: Party): number | number[];
  check?(party: Party, status: number, body: unknown): void;
  /** Cells run by a later test (they change the world). */
  deferred?(party: Party): boolean;
}

/** Ids of the world's referrals (A, B), Tasks (`A:lakeside-consults`) and Riverside's consult note. */
type Refs = { sr: Record<ReferralId, string>; tasks: Record<string, string>; note?: string };

const reads = (party: Party, r: ReferralId) => party.referrerOf === r || party.requesterOf === r;
const STALE = { 'If-Match': 'W/"999"' };

/** One entry per route of ROUTE_RULES: the requests that drive it (FHIR and Binary routes are driven by their own tests above). */
const CELLS: Record<string, (ctx: { refs: Refs }) => Cell[]> = {
  '/': () => [{ path: '/', expect: () => 200, check: (_party, _status, body) => expect(body).toMatchObject({ name: 'second-opinion-referrals', links: expect.arrayContaining([expect.objectContaining({ rel: 'fhir-metadata' })]) }) }],
  '/healthz': () => [{ path: '/healthz', expect: () => 200 }],
  '/readyz': () => [{ path: '/readyz', expect: () => 200 }],
  // Operators only (no party here holds the role: each is refused by role; the scrape itself: test/metrics-flow.test.ts).
  '/metrics': () => [{ path: '/metrics', expect: () => 200 }],
  // No form: an OAuth error, whoever asks (the endpoint takes no bearer token).
  '/auth/token': () => [{ path: '/auth/token', expect: () => [400, 415] }],
  '/.well-known/smart-configuration': () => [{ path: '/.well-known/smart-configuration', expect: () => 200 }],
  '/fhir/.well-known/smart-configuration': () => [{ path: '/fhir/.well-known/smart-configuration', expect: () => 200 }],
  '/.well-known/jwks.json': () => [{ path: '/.well-known/jwks.json', expect: () => 200 }],
  '/.well-known/client-jwks.json': () => [{ path: '/.well-known/client-jwks.json', expect: () => 200 }],
  '/fhir/metadata': () => [{ path: '/fhir/metadata', expect: () => 200 }],
  // The API's OpenAPI document and reference page: public, the same for everyone; only the page's own files are served.
  '/openapi.json': () => [{ path: '/openapi.json', expect: () => 200 }],
  '/docs': () => [{ path: '/docs', expect: () => 200 }],
  '/docs/:asset': () => [{ path: '/docs/init.js', expect: () => 200 }, { path: '/docs/package.json', expect: () => 404 }],
  // Our conformance resources: public, the same for everyone, with or without a token.
  ...Object.fromEntries(
    (['CodeSystem', 'ValueSet', 'StructureDefinition', 'Measure'] as const).flatMap((type) => [
      [`/fhir/${type}`, () => [{ path: `/fhir/${type}?_id=second-opinion-task,participant-role,second-opinion-concordance`, expect: () => 200 }]],
      [`/fhir/${type}/:id`, () => [{ path: `/fhir/${type}/${type === 'StructureDefinition' ? 'second-opinion-task' : type === 'Measure' ? 'second-opinion-concordance' : 'participant-role'}`, expect: () => 200 }, { path: `/fhir/${type}/unknown-id`, expect: () => 404 }]],
    ]),
  ),
  // Concordance figures: each caller its own organization's (any subject for the auditor); another organization as subject is 403.
  '/fhir/Measure/:id/$evaluate-measure': () => [
    { path: '/fhir/Measure/second-opinion-concordance/$evaluate-measure?periodStart=2000-01-01&periodEnd=2100-12-31', expect: () => 200 },
    {
      path: '/fhir/Measure/second-opinion-concordance/$evaluate-measure?periodStart=2000-01-01&periodEnd=2100-12-31&subject=Organization/st-olaf',
      expect: (p) => (p.roles.includes('auditor') || ORGANIZATIONS[p.participant ?? p.id] === 'st-olaf' ? 200 : 403),
    },
  ],
  '/participants': () => [{ path: '/participants', expect: () => 200 }],
  // A referral the caller may not place in another clinician's name: 403 for a restricted token, else 422 (a past due date): never written.
  // dr-other's token may not refer in dr-nilsen's name (403); for everyone else a past due date (422). Never written.
  '/second-opinions': () => [{ path: '/second-opinions', body: makeSecondOpinionRequest({ dueDate: '2020-01-01' }, chart), expect: (p) => (p.id === 'other-practitioner' ? 403 : 422) }],
  // The FHIR intake door, the same refusal as the JSON one: 403 for dr-other's token, else 422 (a past due date); never written.
  '/fhir': () => [{ path: '/fhir', body: toTransaction(pastDueParts()), expect: (p) => (p.id === 'other-practitioner' ? 403 : 422) }],
  '/fhir/ServiceRequest': () => [{ path: '/fhir/ServiceRequest', body: { ...pastDueParts().serviceRequest, supportingInfo: pastDueParts().serviceRequest.supportingInfo?.slice(1) }, expect: (p) => (p.id === 'other-practitioner' ? 403 : 422) }],
  '/second-opinions/:id': ({ refs }) =>
    (['A', 'B'] as const).map((r) => ({ path: `/second-opinions/${refs.sr[r]}`, expect: (p: Party) => (reads(p, r) ? 200 : 404) })),
  '/second-opinions/:id/comparison': ({ refs }) =>
    (['A', 'B'] as const).map((r) => ({ path: `/second-opinions/${refs.sr[r]}/comparison`, expect: (p: Party) => (reads(p, r) ? 200 : 404) })),
  // Records already named: the referrer's call is a no-op (200), anyone else's a 404.
  '/second-opinions/:id/records': ({ refs }) =>
    (['A', 'B'] as const).map((r) => ({ path: `/second-opinions/${refs.sr[r]}/records`, body: { documents: [{ reference: r === 'A' ? `DocumentReference/${seededDocument(chart, 'op-note-2024').id}` : `DocumentReference/${seededDocument(chart, 'pathology-2024').id}` }] }, expect: (p: Party) => (reads(p, r) ? 200 : 404) })),
  // An unknown clinic: 422 naming it for the referrer (nothing added), 404 for anyone else.
  '/second-opinions/:id/consultants': ({ refs }) =>
    (['A', 'B'] as const).map((r) => ({ path: `/second-opinions/${refs.sr[r]}/consultants`, body: { consultants: ['no-such-clinic'] }, expect: (p: Party) => (reads(p, r) ? 422 : 404) })),
  // No consultant waits for information: 409 for the referrer, 404 for anyone else.
  '/second-opinions/:id/info': ({ refs }) =>
    (['A', 'B'] as const).map((r) => ({ path: `/second-opinions/${refs.sr[r]}/info`, body: { text: 'an answer' }, expect: (p: Party) => (reads(p, r) ? 409 : 404) })),
  // A clinic that is not one of the referral's: 422 for the referrer (nothing written), 404 for anyone else.
  '/second-opinions/:id/consent-withdrawal': ({ refs }) =>
    (['A', 'B'] as const).map((r) => ({ path: `/second-opinions/${refs.sr[r]}/consent-withdrawal`, body: { consultants: ['no-such-clinic'] }, expect: (p: Party) => (reads(p, r) ? 422 : 404) })),
  // A follow-up question to a clinic whose opinion is not in: 409 for the referrer, 404 for anyone else; nothing written.
  '/second-opinions/:id/consultants/:participant/questions': ({ refs }) =>
    ([['A', 'lakeside-consults'], ['B', 'northfield-pathology']] as const).map(([r, clinic]) => ({ path: `/second-opinions/${refs.sr[r]}/consultants/${clinic}/questions`, body: { text: 'matrix?' }, expect: (p: Party) => (reads(p, r) ? 409 : 404) })),
  // Refusals here; the allowed cancel runs last (it changes the referral).
  '/second-opinions/:id/cancel': ({ refs }) => [{ path: `/second-opinions/${refs.sr.A}/cancel`, body: { reason: 'matrix' }, expect: (p: Party) => (reads(p, 'A') ? 200 : 404), deferred: (p) => reads(p, 'A') }],
  '/consults': () => [
    {
      path: '/consults',
      expect: () => 200,
      check: (party, status, body) => {
        if (status !== 200 || !party.clinic) return;
        const cases = new Set((body as Worklist).items.map((i) => i.referral.id));
        const expected = (['A', 'B'] as const).filter((r) => ADMITTED[r].includes(party.clinic as Clinic));
        expect(`${party.id} worklist: ${[...cases].length}`).toBe(`${party.id} worklist: ${expected.length}`);
      },
    },
  ],
  ...Object.fromEntries(
    (['receive', 'accept', 'start', 'confirm-cancellation', 'decline', 'request-info', 'opinion'] as const).map((action) => [
      `/consults/:taskId/${action}`,
      ({ refs }: { refs: Refs }) =>
        Object.entries(refs.tasks).map(([key, id]) => {
          const [r, clinic] = key.split(':') as [ReferralId, Clinic];
          const body = action === 'decline' ? { reason: 'matrix' } : action === 'request-info' ? { question: 'matrix?' } : action === 'opinion' ? EXAMPLE_OPINION : undefined;
          // A stale If-Match: the owner reaches its Task and is refused by the table (409) or the version (412); nothing changes.
          return { path: `/consults/${id}/${action}`, body, headers: STALE, expect: (p: Party) => (p.clinic === clinic && ADMITTED[r].includes(clinic) ? [409, 412] : 404) };
        }),
    ]),
  ),
  // An answer to a question never asked: the Task's clinic reaches it (422 naming the question), anyone else gets 404; nothing written.
  '/consults/:taskId/answers': ({ refs }) =>
    Object.entries(refs.tasks).map(([key, id]) => {
      const [r, clinic] = key.split(':') as [ReferralId, Clinic];
      return { path: `/consults/${id}/answers`, body: { question: 'no-such-question', text: 'matrix' }, expect: (p: Party) => (p.clinic === clinic && ADMITTED[r].includes(clinic) ? 422 : 404) };
    }),
  // The post-back list: the auditor reads it; every other caller is refused by role.
  '/admin/deliveries': () => [{ path: '/admin/deliveries?status=delivered', expect: () => 200 }],
  // Delivered already: 409 for the auditor; every other caller is refused by role.
  '/admin/deliveries/:id/retry': ({ refs }) => [{ path: `/admin/deliveries/${refs.note}/retry`, expect: () => 409 }],
  // The push list: the auditor reads it; every other caller is refused by role.
  '/admin/record-pushes': () => [{ path: '/admin/record-pushes?status=failed', expect: () => 200 }],
  // No such push: 404 for the auditor; every other caller is refused by role (the re-drive itself: test/record-push-flow.test.ts).
  '/admin/record-pushes/:id/retry': () => [{ path: '/admin/record-pushes/no-such-push/retry', expect: () => 404 }],
  // No party holds the admin role: refused by role, before any call to an EHR (the route's own test: test/check-ehr-flow.test.ts).
  '/admin/participants/:id/check': () => [{ path: '/admin/participants/st-olaf/check', expect: () => 200 }],
  // Task over FHIR, with a stale If-Match: whoever reaches the Task (its clinic, its referral's referrer and requester) gets 412; nothing changes.
  '/fhir/Task/:id': ({ refs }) =>
    Object.entries(refs.tasks).flatMap(([key, id]) => {
      const [r, clinic] = key.split(':') as [ReferralId, Clinic];
      const expect = (p: Party) => ((p.clinic === clinic && ADMITTED[r].includes(clinic)) || (reads(p, r) && p.roles.includes('referrer')) ? 412 : 404);
      return [
        { method: 'PUT', path: `/fhir/Task/${id}`, body: { resourceType: 'Task', id, status: 'cancelled', intent: 'order', statusReason: { text: 'matrix' } }, headers: { ...STALE, 'content-type': 'application/fhir+json' }, expect },
        { method: 'PATCH', path: `/fhir/Task/${id}`, body: [{ op: 'replace', path: '/status', value: 'cancelled' }], headers: { ...STALE, 'content-type': 'application/json-patch+json' }, expect },
      ];
    }),
  // The referrer's revoke over FHIR, with a stale If-Match: whoever placed (or requested) the referral reaches it and gets 412; nothing changes.
  '/fhir/ServiceRequest/:id': ({ refs }) =>
    (['A', 'B'] as const).map((r) => ({
      method: 'PUT',
      path: `/fhir/ServiceRequest/${refs.sr[r]}`,
      body: { resourceType: 'ServiceRequest', id: refs.sr[r], status: 'revoked', intent: 'order', note: [{ text: 'matrix' }] },
      headers: { ...STALE, 'content-type': 'application/fhir+json' },
      expect: (p: Party) => (reads(p, r) ? 412 : 404),
    })),
  // Subscriptions: a full-resource payload is refused (422, nothing stored); no Subscription exists in this world, so every allowed read or delete is a 404.
  '/fhir/Subscription': () => [
    { method: 'POST', path: '/fhir/Subscription', body: { resourceType: 'Subscription', status: 'requested', reason: 'matrix', criteria: TASK_TOPIC, channel: { type: 'rest-hook', endpoint: 'https://receiver.example/hook', _payload: { extension: [{ url: BACKPORT_EXTENSION.payloadContent, valueCode: 'full-resource' }] } } }, expect: () => 422 },
    { method: 'GET', path: '/fhir/Subscription', expect: () => 200 },
  ],
  // Type-level $status: another's id or an unknown one is simply not in the answer (an empty searchset).
  '/fhir/Subscription/$status': () => [
    {
      path: '/fhir/Subscription/$status?id=no-such-subscription',
      expect: () => 200,
      check: (_party, status, body) => {
        if (status === 200) expect(body).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 0 });
      },
    },
  ],
  '/fhir/Subscription/:id/$status': () => [{ path: '/fhir/Subscription/no-such-subscription/$status', expect: () => 404 }],
  '/fhir/Subscription/:id/$events': () => [{ path: '/fhir/Subscription/no-such-subscription/$events', expect: () => 404 }],
  '/fhir/Subscription/:id': () => [
    { method: 'GET', path: '/fhir/Subscription/no-such-subscription', expect: () => 404 },
    { method: 'DELETE', path: '/fhir/Subscription/no-such-subscription', expect: () => 404 },
  ],
  '/fhir/Binary/:id': () => [],
  '/fhir/:type/:id/_history/:vid': () => [],
  '/fhir/:type/:id/_history': () => [],
  '/fhir/:type/:id': () => [],
  '/fhir/:type': () => [],
  '/fhir/{*rest}': () => [{ method: 'POST', path: '/fhir/Task', body: { resourceType: 'Task' }, expect: () => 405 }],
};
