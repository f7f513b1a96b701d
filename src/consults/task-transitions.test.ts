import { describe, expect, it } from 'vitest';
import { allowedActions, planTransition, TRANSITIONS, type TaskStatus } from './task-transitions.ts';

describe('Task transition table', () => {
  it('follows the R4 state machine: every target is reachable from its sources only as R4 allows', () => {
    // `failed` from requested, received and accepted is the one move beyond R4's diagram (the
    // table's header says why; the next test pins it to the service's `fail`).
    const r4: Partial<Record<TaskStatus, TaskStatus[]>> = {
      requested: ['received', 'accepted', 'rejected', 'cancelled', 'failed'],
      received: ['accepted', 'rejected', 'cancelled', 'failed'],
      accepted: ['in-progress', 'cancelled', 'failed'],
      draft: ['cancelled'],
      ready: ['cancelled'],
      'in-progress': ['on-hold', 'completed', 'failed', 'cancelled'],
      'on-hold': ['in-progress', 'failed', 'cancelled'],
    };
    for (const t of TRANSITIONS) {
      if (!t.to) continue;
      for (const from of t.from) expect(r4[from] ?? [], `${t.action}: ${from} -> ${t.to}`).toContain(t.to);
    }
  });

  it('lets only the owner of each action take it', () => {
    expect(planTransition('requested', 'accept', 'consultant')).toMatchObject({ ok: true, transition: { to: 'accepted' } });
    expect(planTransition('requested', 'accept', 'referrer')).toEqual({ ok: false, reason: 'wrong-actor', allowed: ['cancel', 'withdraw-consent'] });
    expect(planTransition('in-progress', 'cancel', 'referrer')).toEqual({ ok: false, reason: 'not-allowed-from-status', allowed: ['request-cancellation', 'withdraw-consent'] });
    expect(planTransition('on-hold', 'resume', 'referrer')).toMatchObject({ ok: true, transition: { to: 'in-progress' } });
    expect(planTransition('in-progress', 'fail', 'consultant')).toMatchObject({ ok: false, reason: 'wrong-actor' });
  });

  it('lets only the service fail a Task, from every status before completion (the record set may fail before the clinic starts)', () => {
    for (const status of ['requested', 'received', 'accepted', 'in-progress', 'on-hold'] as const) {
      expect(planTransition(status, 'fail', 'service'), status).toMatchObject({ ok: true, transition: { action: 'fail', to: 'failed' } });
      expect(planTransition(status, 'fail', 'referrer'), status).toMatchObject({ ok: false, reason: 'wrong-actor' });
      expect(planTransition(status, 'fail', 'consultant'), status).toMatchObject({ ok: false, reason: 'wrong-actor' });
    }
    for (const status of ['completed', 'rejected', 'cancelled', 'failed'] as const) {
      expect(planTransition(status, 'fail', 'service'), status).toMatchObject({ ok: false, reason: 'not-allowed-from-status', allowed: [] });
    }
    // Only `failed` is reached beyond R4's diagram, and only by this action.
    const beyond = TRANSITIONS.filter((t) => t.to === 'failed');
    expect(beyond.map((t) => t.action)).toEqual(['fail']);
    expect(allowedActions('requested', 'service')).toEqual(['receive', 'fail']);
  });

  it('refuses every action on a terminal Task', () => {
    for (const status of ['completed', 'rejected', 'cancelled', 'failed'] as const) {
      for (const actor of ['consultant', 'referrer', 'service'] as const) expect(allowedActions(status, actor), `${status}/${actor}`).toEqual([]);
    }
  });

  it('lets the referrer record a withdrawal of consent from every open status, and from no ended one', () => {
    for (const status of ['draft', 'requested', 'received', 'accepted', 'ready', 'in-progress', 'on-hold'] as const) {
      expect(planTransition(status, 'withdraw-consent', 'referrer'), status).toMatchObject({ ok: true, transition: { to: 'cancelled' } });
    }
    for (const status of ['completed', 'rejected', 'cancelled', 'failed'] as const) expect(planTransition(status, 'withdraw-consent', 'referrer').ok, status).toBe(false);
    expect(planTransition('in-progress', 'withdraw-consent', 'consultant')).toMatchObject({ ok: false, reason: 'wrong-actor' });
  });

  it('lets the clinic acknowledge a Task, and the service mark it received when a pushed record set was accepted: one rule', () => {
    expect(planTransition('requested', 'receive', 'consultant')).toMatchObject({ ok: true, transition: { to: 'received' } });
    expect(planTransition('requested', 'receive', 'service')).toMatchObject({ ok: true, transition: { to: 'received' } });
    expect(planTransition('requested', 'receive', 'referrer')).toMatchObject({ ok: false, reason: 'wrong-actor' });
    expect(planTransition('accepted', 'receive', 'consultant')).toMatchObject({ ok: false, reason: 'not-allowed-from-status' });
  });

  it('names what the consultant may do from each open status', () => {
    expect(allowedActions('requested', 'consultant')).toEqual(['receive', 'accept', 'decline']);
    expect(allowedActions('received', 'consultant')).toEqual(['accept', 'decline']);
    expect(allowedActions('accepted', 'consultant')).toEqual(['start']);
    expect(allowedActions('in-progress', 'consultant')).toEqual(['request-info', 'complete', 'confirm-cancellation']);
    expect(allowedActions('on-hold', 'consultant')).toEqual(['confirm-cancellation']);
  });
});
