import type { Bundle, DocumentReference, OperationOutcome, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { opinionDeliveries, resources } from '../src/store/schema.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { callerFor, until } from './support/flow.ts';
import { EXAMPLE_OPINION } from './support/opinions.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken, postTokenRequest } from './support/tokens.ts';

/** One sample of the exposition text: name, labels, value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (what prom-client writes: no escaped quotes in our label values). */
function parseExposition(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`not an exposition line: ${line}`);
      const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1] as string, l[2] as string]));
      return { name: m[1] as string, labels, value: Number(m[3]) };
    });
}

/** The one sample named so whose labels include `labels`; undefined when there is none. */
function sample(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

/**
 * Metrics over real HTTP: a referral goes through intake, record assembly, the consultant's
 * opinion and its post-back to the sandbox EHR; a scrape then shows each step in its series,
 * with route templates and closed label sets only (no id, no patient data). Then the three
 * ways /metrics is served: bearer (operators only), its own open port, and off.
 */
describe('metrics (flow)', () => {
  let ehr: SandboxEhr;
  let service: TestService;
  const tokens: Record<string, string> = {};
  const call = callerFor(() => service.url, tokens);
  /** Every id and piece of patient data of the flow: none may appear in a label. */
  const secrets: string[] = [];
  let samples: Sample[] = [];
  let exposition = '';
  let recordSetBytes = 0;

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 50_000 } });
    service = await startTestService({ NETWORK_FILE: await writeSandboxNetwork(ehr, { timeoutMs: 5_000 }) }, undefined, { jobPollingIntervalSeconds: 0.5 });
    for (const p of ['st-olaf', 'lakeside-consults', 'operations']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
    const consentId = await ehr.addConsent(['lakeside']);

    const created = await call<{ id: string; tasks: Task[] }>('POST', '/second-opinions', 'st-olaf', makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, consent: { reference: `Consent/${consentId}` } }, ehr.seeded));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const srId = created.body.id;
    const taskId = created.body.tasks[0]?.id as string;
    await until(async () => ((await call<ReferralSummary>('GET', `/second-opinions/${srId}`, 'st-olaf')).body.recordSet.status === 'records-ready' ? true : undefined), 'the record set');
    for (const action of ['accept', 'start']) expect((await call('POST', `/consults/${taskId}/${action}`, 'lakeside-consults')).status).toBe(200);
    expect((await call('POST', `/consults/${taskId}/opinion`, 'lakeside-consults', EXAMPLE_OPINION)).status).toBe(200);
    await until(async () => ((await service.database.db.select().from(opinionDeliveries))[0]?.status === 'delivered' ? true : undefined), 'the opinion posted back');
    // A refused token request, and a request to an unknown Task (its id in the path).
    expect((await postTokenRequest(service.url, { grant_type: 'client_credentials' })).status).toBe(400);
    expect((await call('POST', `/consults/${taskId}x/accept`, 'lakeside-consults')).status).toBe(404);

    const rows = await service.database.db.select({ id: resources.id, content: resources.content }).from(resources);
    // What the record set holds: the attachment bytes its copies declare.
    recordSetBytes = rows
      .filter((r) => r.content.resourceType === 'Bundle')
      .flatMap((r) => (r.content as Bundle).entry ?? [])
      .flatMap((e) => (e.resource as DocumentReference).content ?? [])
      .reduce((sum, c) => sum + (c.attachment.size ?? 0), 0);
    secrets.push(srId, taskId, `${taskId}x`, consentId, ehr.seeded.patientId, ehr.seeded.practitionerId, ...rows.map((r) => r.id), ...ehr.seeded.documents.flatMap((d) => [d.id, d.binaryId ?? d.id]));
    secrets.push('Alex', 'Example', '1968-04-02', 'Nilsen', 'st-olaf', 'lakeside', clientIdOf('st-olaf'), clientIdOf('operations'));

    const res = await fetch(`${service.url}/metrics`, { headers: { authorization: `Bearer ${tokens.operations}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    exposition = await res.text();
    samples = parseExposition(exposition);
  }, 240_000);
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  it('HTTP requests by route template and status: the intake 201, the opinion 200, the unknown Task 404 under its template', () => {
    const count = 'second_opinion_http_request_duration_seconds_count';
    expect(sample(samples, count, { route: '/second-opinions', method: 'POST', status: '201' })).toBe(1);
    expect(sample(samples, count, { route: '/consults/:taskId/opinion', method: 'POST', status: '200' })).toBe(1);
    expect(sample(samples, count, { route: '/consults/:taskId/accept', method: 'POST', status: '200' })).toBe(1);
    expect(sample(samples, count, { route: '/consults/:taskId/accept', method: 'POST', status: '404' })).toBe(1);
    expect(sample(samples, count, { route: '/auth/token', method: 'POST', status: '200' })).toBe(3);
    expect(sample(samples, count, { route: '/second-opinions/:id', method: 'GET', status: '200' })).toBeGreaterThanOrEqual(1);
    // The histogram has its buckets: the +Inf bucket holds every request of the series.
    expect(sample(samples, 'second_opinion_http_request_duration_seconds_bucket', { route: '/second-opinions', method: 'POST', status: '201', le: '+Inf' })).toBe(1);
    expect(sample(samples, 'second_opinion_http_request_duration_seconds_sum', { route: '/second-opinions', method: 'POST', status: '201' })).toBeGreaterThan(0);
  });

  it('the record set: one assembly, its attachment bytes and time', () => {
    expect(sample(samples, 'second_opinion_record_set_assembly_seconds_count', { outcome: 'assembled' })).toBe(1);
    expect(sample(samples, 'second_opinion_record_set_assembly_bytes_count')).toBe(1);
    expect(recordSetBytes).toBeGreaterThan(0);
    expect(sample(samples, 'second_opinion_record_set_assembly_bytes_sum')).toBe(recordSetBytes);
    expect(sample(samples, 'second_opinion_record_set_assembly_seconds_sum', { outcome: 'assembled' })).toBeGreaterThan(0);
  });

  it('the post-back: one delivery attempt, delivered; no failures', () => {
    expect(sample(samples, 'second_opinion_delivery_attempts_total', { kind: 'opinion', outcome: 'delivered' })).toBe(1);
    expect(sample(samples, 'second_opinion_delivery_attempts_total', { kind: 'opinion', outcome: 'failed' })).toBeUndefined();
    expect(sample(samples, 'second_opinion_delivery_attempts_total', { kind: 'opinion', outcome: 'retrying' })).toBeUndefined();
  });

  it('tokens issued by role, refusals by reason', () => {
    expect(sample(samples, 'second_opinion_tokens_issued_total', { role: 'referrer' })).toBe(1);
    expect(sample(samples, 'second_opinion_tokens_issued_total', { role: 'consultant' })).toBe(1);
    expect(sample(samples, 'second_opinion_tokens_issued_total', { role: 'operator' })).toBe(1);
    expect(sample(samples, 'second_opinion_token_refusals_total', { reason: 'invalid_request' })).toBe(1);
  });

  it('jobs per queue and state (read on scrape), job attempts, overdue Tasks, process metrics', () => {
    for (const queue of ['assemble-record-set', 'deliver-opinion', 'notify-webhook']) {
      for (const state of ['queued', 'retrying', 'active', 'dead_lettered']) expect(sample(samples, 'second_opinion_jobs', { queue, state }), `${queue} ${state}`).toBe(0);
    }
    expect(sample(samples, 'second_opinion_job_attempts_total', { queue: 'assemble-record-set', outcome: 'completed' })).toBe(1);
    expect(sample(samples, 'second_opinion_job_attempts_total', { queue: 'deliver-opinion', outcome: 'completed' })).toBe(1);
    expect(sample(samples, 'second_opinion_overdue_tasks')).toBe(0);
    expect(sample(samples, 'second_opinion_audit_events_past_retention')).toBe(0);
    expect(sample(samples, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(sample(samples, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
  });

  it('no label carries an id or patient data: every value is from a closed set or a route template', () => {
    const values = new Set(samples.flatMap((s) => Object.values(s.labels)));
    expect(values.size).toBeGreaterThan(20);
    const leaks = [...values].filter((v) => secrets.some((secret) => secret.length >= 4 && v.includes(secret)));
    expect(leaks).toEqual([]);
    for (const s of samples.filter((x) => x.name.startsWith('second_opinion_http_request_duration_seconds'))) {
      // Templates only: literal segments and :parameters, never a UUID or a hash.
      expect(s.labels.route, s.labels.route).toMatch(/^(unmatched|(\/([a-z0-9.$_-]+|:[a-zA-Z]+|\{\*rest\}))+|\/)$/i);
      expect(s.labels.route).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/i);
    }
    expect(exposition).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i);
  });

  it('METRICS=bearer (the default): 401 without a token, 403 for a participant without the operator role, 200 for an operator', async () => {
    const none = await fetch(`${service.url}/metrics`);
    expect(none.status).toBe(401);
    const consultant = await call<OperationOutcome>('GET', '/metrics', 'lakeside-consults');
    expect(consultant.status).toBe(403);
    expect(consultant.body.resourceType).toBe('OperationOutcome');
    expect(consultant.body.issue[0]?.code).toBe('forbidden');
    const operator = await fetch(`${service.url}/metrics`, { headers: { authorization: `Bearer ${tokens.operations}` } });
    expect(operator.status).toBe(200);
    expect(await operator.text()).toContain('# TYPE second_opinion_http_request_duration_seconds histogram');
  });

  it('METRICS=port: served open on its own port, not on the main one; METRICS=off: not served at all', async () => {
    const portService = await startTestService({ METRICS: 'port', METRICS_PORT: '0' });
    try {
      expect(portService.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      expect(new URL(portService.metricsUrl as string).port).not.toBe(new URL(portService.url).port);
      const open = await fetch(portService.metricsUrl as string);
      expect(open.status).toBe(200);
      const text = await open.text();
      expect(sample(parseExposition(text), 'second_opinion_overdue_tasks')).toBe(0);
      // Nothing else is served there.
      expect((await fetch(new URL('/readyz', portService.metricsUrl)).then((r) => r.status))).toBe(404);
      // The main port does not serve them, to an operator either.
      const operator = await getAccessToken(portService.url, clientIdOf('operations'));
      const main = await fetch(`${portService.url}/metrics`, { headers: { authorization: `Bearer ${operator}` } });
      expect(main.status).toBe(404);
      expect(((await main.json()) as OperationOutcome).issue[0]?.code).toBe('not-found');
    } finally {
      await portService.stop();
    }
    const offService = await startTestService({ METRICS: 'off' });
    try {
      expect(offService.metricsUrl).toBeUndefined();
      const operator = await getAccessToken(offService.url, clientIdOf('operations'));
      const off = await fetch(`${offService.url}/metrics`, { headers: { authorization: `Bearer ${operator}` } });
      expect(off.status).toBe(404);
    } finally {
      await offService.stop();
    }
  }, 120_000);
});
