import type { Resource, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createValidator } from '../src/fhir/validator.ts';
import { clientIdOf } from './support/example-network.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { captureLogs } from './support/log-capture.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

/**
 * A resource of ours that breaks our profiles is a bug: it is not stored, the request
 * answers a generic 500, and the log names the rule that failed (never the content).
 * The real validator sees a Task whose owner went missing, as a builder bug would leave it.
 */
describe('a built resource that fails validation', () => {
  let service: TestService;
  const { log, lines } = captureLogs('info');

  beforeAll(async () => {
    const real = createValidator();
    const broken = {
      validate(resource: Resource) {
        if (resource.resourceType === 'Task') {
          const { owner: _dropped, ...withoutOwner } = resource as Task;
          return real.validate(withoutOwner as Task);
        }
        return real.validate(resource);
      },
    };
    service = await startTestService({}, log, { validator: broken });
  });
  afterAll(async () => service?.stop());

  it('answers 500 with a generic OperationOutcome, stores nothing, and logs the failed rule', async () => {
    const token = await getAccessToken(service.url, clientIdOf('st-olaf'));
    const request = makeSecondOpinionRequest();
    const res = await fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(request),
    });
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'exception', details: { text: 'Internal server error' } }],
    });

    const counts = await service.database.db.execute(sql`SELECT (SELECT count(*) FROM resource)::int AS r, (SELECT count(*) FROM resource_history)::int AS h, (SELECT count(*) FROM intake_request)::int AS i`);
    expect((counts as unknown as { rows: unknown[] }).rows[0]).toEqual({ r: 0, h: 0, i: 0 });
    const jobs = await service.database.db.execute(sql.raw(`SELECT count(*)::int AS n FROM ${service.jobs.schema}.job`));
    expect((jobs as unknown as { rows: unknown[] }).rows[0]).toEqual({ n: 0 });

    const failure = lines.find((l) => l.msg === 'built resource failed validation; nothing was stored');
    expect(failure).toMatchObject({ level: 'error', resourceType: 'Task' });
    const rules = failure?.rules as { expression?: string[]; text?: string }[];
    expect(rules.some((r) => r.expression?.some((e) => e.startsWith('Task.owner')))).toBe(true);
    expect(JSON.stringify(lines)).not.toContain('Alex Example');
  });
});
