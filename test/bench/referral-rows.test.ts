import { describe, expect, it } from 'vitest';
import { copier, insertStatement, type ReferralRows } from '../../scripts/bench/lib/referral-rows.ts';

const SR = '0b6f3c2e-4a51-4d39-9f5e-2f1d7c8a9b10';
const TASK = '7d2e9a41-13c5-4f68-8b0a-5e6c7d8f9a01';
const JOB = 'c3a1b2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d';
const REQUEST_ID = 'BENCH-1a2b3c4d-0000000001';

const rows: ReferralRows = {
  tables: [
    { table: 'intake_request', columns: ['request_id', 'service_request_id', 'task_ids'], rows: [{ request_id: REQUEST_ID, service_request_id: SR, task_ids: [TASK] }] },
    {
      table: 'resource',
      columns: ['resource_type', 'id', 'content'],
      rows: [
        { resource_type: 'ServiceRequest', id: SR, content: { resourceType: 'ServiceRequest', id: SR, identifier: [{ value: REQUEST_ID }] } },
        { resource_type: 'Task', id: TASK, content: { resourceType: 'Task', id: TASK, basedOn: [{ reference: `ServiceRequest/${SR}` }] } },
      ],
    },
    { table: 'job', columns: ['id', 'data'], rows: [{ id: JOB, data: { serviceRequestId: SR, taskIds: [TASK] } }] },
  ],
  ids: [REQUEST_ID, SR, TASK, JOB],
};

describe('raw-insert baseline: copies of one referral', () => {
  it('replaces every id by a fresh one of the same length, the same one in every table, and keeps the sizes', () => {
    const copy = copier(rows);
    const [intake, resources, job] = copy().map((json) => JSON.parse(json) as Record<string, unknown>[]);
    const sr = resources?.[0] as { id: string; content: { id: string; identifier: { value: string }[] } };
    const task = resources?.[1] as { id: string; content: { basedOn: { reference: string }[] } };
    expect(sr.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(sr.id).not.toBe(SR);
    expect(sr.content.id).toBe(sr.id);
    expect(task.content.basedOn[0]?.reference).toBe(`ServiceRequest/${sr.id}`);
    expect(intake?.[0]).toEqual({ request_id: sr.content.identifier[0]?.value, service_request_id: sr.id, task_ids: [task.id] });
    expect((intake?.[0] as { request_id: string }).request_id).toHaveLength(REQUEST_ID.length);
    expect((intake?.[0] as { request_id: string }).request_id).not.toBe(REQUEST_ID);
    expect(job?.[0]).toEqual({ id: expect.not.stringMatching(JOB) as unknown, data: { serviceRequestId: sr.id, taskIds: [task.id] } });
    expect(copy().map((j) => j.length)).toEqual(rows.tables.map((t) => JSON.stringify(t.rows).length));
    expect(copy()[1]).not.toBe(copy()[1]);
  });

  it('inserts each table from one jsonb parameter, the job into the job queue schema', () => {
    expect(insertStatement(rows.tables[0]!, 'q_pgboss')).toBe(
      'INSERT INTO intake_request ("request_id", "service_request_id", "task_ids") SELECT "request_id", "service_request_id", "task_ids" FROM jsonb_populate_recordset(NULL::intake_request, $1::jsonb)',
    );
    expect(insertStatement(rows.tables[2]!, 'q_pgboss')).toBe('INSERT INTO q_pgboss.job ("id", "data") SELECT "id", "data" FROM jsonb_populate_recordset(NULL::q_pgboss.job, $1::jsonb)');
  });
});
