import { describe, expect, it } from 'vitest';
import { checkPushes, pushFailures, pushRows } from '../../scripts/soak/push-checks.ts';

const push = (id: string, taskId: string, status: string) => ({ id, taskId, serviceRequestId: `sr-${taskId}`, bundleId: `b-${id}`, status });

describe('soak push clinic checks', () => {
  it('every disclosed record set pushed, every copy once on the clinic server: passes; superseded pushes are counted, not failed', () => {
    const found = checkPushes('riverside-imaging', ['t1', 't2'], [push('p1', 't1', 'superseded'), push('p2', 't1', 'pushed'), push('p3', 't2', 'pushed')], [
      { what: 'Task task-id t1', count: 1 },
      { what: 'DocumentReference record-copy-id c1', count: 1 },
    ]);
    expect(found).toEqual({ clinic: 'riverside-imaging', disclosed: 2, byStatus: { superseded: 1, pushed: 2 }, notPushed: [], unfinished: [], copies: 2, duplicated: [], missing: [] });
    expect(pushFailures(found)).toEqual([]);
    expect(pushRows(found)).toEqual([
      ['push clinic (riverside-imaging): record sets disclosed / not pushed / pushes by status', '2 / 0 / pushed 2, superseded 1'],
      ['push clinic: copies on its server checked / duplicated / missing', '2 / 0 / 0'],
    ]);
  });

  it('a disclosure never pushed, a push left failed, a copy twice or missing on the clinic server fail, naming them', () => {
    const found = checkPushes('riverside-imaging', ['t1', 't2'], [push('p1', 't1', 'failed')], [
      { what: 'Task task-id t1', count: 0 },
      { what: 'DocumentReference record-copy-id c1', count: 2 },
    ]);
    expect(pushFailures(found)).toEqual([
      'record sets disclosed to riverside-imaging and never pushed (2): Task/t1, Task/t2',
      'record-set pushes left pending or failed (1): push p1 of Task/t1 (failed)',
      "resources pushed twice to riverside-imaging's server (1): DocumentReference record-copy-id c1 (2 copies)",
      "pushed resources missing on riverside-imaging's server (1): Task task-id t1",
    ]);
    expect(pushFailures(undefined)).toEqual([]);
  });
});
