import type { AuditEvent } from '@medplum/fhirtypes';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/support/database.ts';
import { EXTENSION } from '../fhir/constants.ts';
import { createValidator } from '../fhir/validator.ts';
import type { Database } from '../store/database.ts';
import { ResourceStore } from '../store/resource-store.ts';
import { auditReadWindows, resourceHistory, resources } from '../store/schema.ts';
import { AuditLog, type AuditRecordInput } from './audit-log.ts';

/** Coalesced summary reads (AuditLog.recordCoalesced), on the store the run uses (PGlite, or PostgreSQL with DATABASE_URL). */
describe('coalesced summary reads', () => {
  let database: Database;
  let store: ResourceStore;
  let audit: AuditLog;
  let clock = new Date('2026-12-07T10:00:05.000Z');
  const network = { get: (id: string) => ({ organization: { reference: `Organization/${id}` } }) };
  const summaryRead = (clientId: string, requestId = 'r-1'): AuditRecordInput => ({
    action: 'read',
    outcome: 'success',
    agent: { participantId: 'st-olaf', clientId },
    entities: [{ reference: 'ServiceRequest/sr-1' }, { reference: 'Task/t-1' }],
    patientReference: 'https://ehr.example/fhir/R4/Patient/p1',
    requestId,
  });
  const at = (iso: string) => {
    clock = new Date(iso);
  };
  const events = async () => (await store.search<AuditEvent>({ resourceType: 'AuditEvent', count: 100 }, 'system')).resources;
  const countOf = (e: AuditEvent) => e.extension?.find((x) => x.url === EXTENSION.auditReadCount)?.valuePositiveInt;

  beforeAll(async () => {
    database = await openTestDatabase();
    const validator = createValidator();
    store = new ResourceStore(database.db, { validate: (r) => void validator.validate(r) }, () => clock);
    audit = new AuditLog({ store, network, now: () => clock, publicUrl: 'http://localhost' });
  });
  afterAll(async () => {
    await database?.close();
  });
  beforeEach(async () => {
    await database.db.delete(resources);
    await database.db.delete(resourceHistory);
    await database.db.delete(auditReadWindows);
  });

  it('five reads in one minute by one client: one AuditEvent with count 5, period from the first read to the last, one version kept', async () => {
    for (const [i, t] of ['10:00:05', '10:00:15', '10:00:30', '10:00:45', '10:00:59'].entries()) {
      at(`2026-12-07T${t}.000Z`);
      await audit.recordCoalesced(summaryRead('st-olaf-ehr', `r-${i}`));
    }
    const all = await events();
    expect(all).toHaveLength(1);
    const [event] = all as [AuditEvent];
    expect(countOf(event)).toBe(5);
    expect(event.period).toEqual({ start: '2026-12-07T10:00:05.000Z', end: '2026-12-07T10:00:59.000Z' });
    expect(event.recorded).toBe('2026-12-07T10:00:05.000Z');
    expect(event.meta?.versionId).toBe('5');
    // The first read's request id names the event; the entities are the summary's.
    expect(event.entity?.map((e) => e.what?.reference ?? e.what?.identifier?.value)).toEqual(['https://ehr.example/fhir/R4/Patient/p1', 'ServiceRequest/sr-1', 'Task/t-1', 'r-0']);
    // Earlier versions (count 1..4) are not kept: one history row, the current one.
    const history = await store.history<AuditEvent>('AuditEvent', event.id as string, 'system');
    expect(history?.map((h) => h.meta?.versionId)).toEqual(['5']);
    // It validates against R4 and the extension's definition (the store validated it on every write; again here).
    const validator = createValidator();
    expect(validator.validate(event)).toEqual([]);
    // ...and the extension is checked: a count that is not a positiveInt is refused.
    expect(() => validator.validate({ ...event, extension: [{ url: EXTENSION.auditReadCount, valueString: '5' }] })).toThrow(/AuditEvent failed validation/);
  });

  it('a read in the next minute starts a new AuditEvent; another client gets its own; a different summary its own', async () => {
    at('2026-12-07T10:00:50.000Z');
    await audit.recordCoalesced(summaryRead('st-olaf-ehr'));
    await audit.recordCoalesced(summaryRead('st-olaf-ehr'));
    await audit.recordCoalesced(summaryRead('st-olaf-portal'));
    await audit.recordCoalesced({ ...summaryRead('st-olaf-ehr'), entities: [{ reference: 'ServiceRequest/sr-2' }] });
    at('2026-12-07T10:01:01.000Z');
    await audit.recordCoalesced(summaryRead('st-olaf-ehr'));
    const all = await events();
    const summary = (clientId: string, sr: string) =>
      all
        .filter((e) => e.agent?.[0]?.who?.identifier?.value === clientId && e.entity?.some((x) => x.what?.reference === `ServiceRequest/${sr}`))
        .map((e) => [e.period?.start, countOf(e)])
        .sort();
    expect(all).toHaveLength(4);
    expect(summary('st-olaf-ehr', 'sr-1')).toEqual([
      ['2026-12-07T10:00:50.000Z', 2],
      ['2026-12-07T10:01:01.000Z', 1],
    ]);
    expect(summary('st-olaf-portal', 'sr-1')).toEqual([['2026-12-07T10:00:50.000Z', 1]]);
    expect(summary('st-olaf-ehr', 'sr-2')).toEqual([['2026-12-07T10:00:50.000Z', 1]]);
  });

  it('two reads at the same time: one AuditEvent, count 2', async () => {
    at('2026-12-07T10:02:10.000Z');
    const [a, b] = await Promise.all([audit.recordCoalesced(summaryRead('st-olaf-ehr', 'r-a')), audit.recordCoalesced(summaryRead('st-olaf-ehr', 'r-b'))]);
    expect(a.id).toBe(b.id);
    const all = await events();
    expect(all).toHaveLength(1);
    expect(countOf(all[0] as AuditEvent)).toBe(2);
  });

  it('two AuditLogs on the one database (two replicas), reads at the same time: one AuditEvent, count 4', async () => {
    const replica = new AuditLog({ store, network, now: () => clock, publicUrl: 'http://localhost' });
    at('2026-12-07T10:03:10.000Z');
    await Promise.all([audit, replica, audit, replica].map((log, i) => log.recordCoalesced(summaryRead('st-olaf-ehr', `r-${i}`))));
    const all = await events();
    expect(all.map(countOf)).toEqual([4]);
  });

  it('without a client id each read is its own AuditEvent, without a count', async () => {
    at('2026-12-07T10:04:10.000Z');
    const noClient = { ...summaryRead('x'), agent: { participantId: 'st-olaf' } };
    await audit.recordCoalesced(noClient);
    await audit.recordCoalesced(noClient);
    const all = await events();
    expect(all.map(countOf)).toEqual([undefined, undefined]);
  });
});
