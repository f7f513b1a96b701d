import { describe, expect, it } from 'vitest';
import { checkPushes, pushFailures, pushRows } from '../../scripts/soak/push-checks.ts';

const push = (id: string, taskId: string, status: string, bundleId = `b-${id}`) => ({ id, taskId, serviceRequestId: `sr-${taskId}`, bundleId, status });
const open = (taskId: string, newestBundleId?: string) => ({ taskId, ended: false, ...(newestBundleId ? { newestBundleId } : {}) });

describe('soak push clinic checks', () => {
  it('every disclosed record set pushed, every copy once on the clinic server: passes; a Task that ended before its push went out is allowed, its copy at most once', () => {
    const found = checkPushes(
      'riverside-imaging',
      [open('t1', 'b-p2'), open('t2', 'b-p3'), { taskId: 't3', ended: true, newestBundleId: 'b-p4' }, open('t4', 'b-new')],
      // t1: an older version's push superseded by the newer one's; t3 ended first; t4: a newer record set replaced the one pushed (its own push pushed).
      [push('p1', 't1', 'superseded'), push('p2', 't1', 'pushed'), push('p3', 't2', 'pushed'), push('p4', 't3', 'superseded'), push('p5', 't4', 'superseded'), push('p6', 't4', 'pushed', 'b-new')],
      [
        { what: 'Task task-id t1', count: 1, required: true },
        { what: 'DocumentReference record-copy-id c1', count: 1, required: true },
        { what: 'Task task-id t3', count: 1, required: false },
        { what: 'DocumentReference record-copy-id c3', count: 0, required: false },
      ],
    );
    expect(found).toEqual({ clinic: 'riverside-imaging', disclosed: 4, byStatus: { superseded: 3, pushed: 3 }, notPushed: [], endedFirst: 1, unfinished: [], copies: 4, duplicated: [], missing: [] });
    expect(pushFailures(found)).toEqual([]);
    expect(pushRows(found)).toEqual([
      ['push clinic (riverside-imaging): record sets disclosed / not pushed / Task ended first (allowed) / pushes by status', '4 / 0 / 1 / pushed 3, superseded 3'],
      ['push clinic: copies on its server checked / duplicated / missing', '4 / 0 / 0'],
    ]);
  });

  it('a disclosure never pushed (no push, or superseded while its Task goes on with that record set), a push left failed, a copy twice or missing fail, naming them', () => {
    const found = checkPushes('riverside-imaging', [open('t1'), open('t2'), open('t3', 'b-p3')], [push('p1', 't1', 'failed'), push('p3', 't3', 'superseded')], [
      { what: 'Task task-id t1', count: 0, required: true },
      { what: 'DocumentReference record-copy-id c1', count: 2, required: false },
    ]);
    expect(pushFailures(found)).toEqual([
      'record sets disclosed to riverside-imaging and never pushed (3): Task/t1, Task/t2, Task/t3',
      'record-set pushes left pending or failed (1): push p1 of Task/t1 (failed)',
      "resources pushed twice to riverside-imaging's server (1): DocumentReference record-copy-id c1 (2 copies)",
      "pushed resources missing on riverside-imaging's server (1): Task task-id t1",
    ]);
    expect(pushFailures(undefined)).toEqual([]);
  });
});
