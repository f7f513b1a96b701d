import { describe, expect, it } from 'vitest';
import { parseExportArgs } from './audit-export-args.ts';

describe('npm run audit:export arguments', () => {
  const now = new Date('2026-12-07T10:00:00Z');
  const sixYears = { years: 6 };

  it('takes a day or a timestamp up to now minus the retention, with a default file name', () => {
    expect(parseExportArgs(['--before', '2020-12-07'], now, sixYears)).toEqual({
      ok: true,
      args: { before: new Date('2020-12-07T00:00:00Z'), out: 'audit-events-before-2020-12-07.ndjson', batchSize: 500, force: false },
    });
    expect(parseExportArgs(['--before', '2019-06-01T12:00:00+02:00', '--out', '/archive/a.ndjson', '--batch', '100'], now, sixYears)).toEqual({
      ok: true,
      args: { before: new Date('2019-06-01T10:00:00Z'), out: '/archive/a.ndjson', batchSize: 100, force: false },
    });
  });

  it('refuses a DATE within the retention unless --force, and one in the future even then', () => {
    expect(parseExportArgs(['--before', '2021-01-01'], now, sixYears)).toEqual({
      ok: false,
      help: false,
      error: '--before 2021-01-01 is within the audit retention (6 years: AuditEvents since 2020-12-07T10:00:00.000Z are kept); use a DATE up to 2020-12-07, or --force',
    });
    expect(parseExportArgs(['--before', '2026-12-01'], now, { days: 30 })).toMatchObject({ ok: false, error: expect.stringContaining('(30 days:') });
    expect(parseExportArgs(['--before', '2021-01-01', '--force'], now, sixYears)).toMatchObject({ ok: true, args: { force: true } });
    expect(parseExportArgs(['--before', '2027-01-01', '--force'], now, sixYears)).toEqual({ ok: false, help: false, error: '--before 2027-01-01 is in the future' });
  });

  it('names what is wrong: missing or bad DATE, bad batch, unknown option; --help', () => {
    expect(parseExportArgs([], now, sixYears)).toEqual({ ok: false, help: false, error: '--before DATE is required' });
    expect(parseExportArgs(['--before', '07/12/2019'], now, sixYears)).toMatchObject({ ok: false, error: expect.stringMatching(/^--before: not a date/) });
    expect(parseExportArgs(['--before', '2019-02-30T00:00:00'], now, sixYears)).toMatchObject({ ok: false, error: expect.stringMatching(/^--before: not a date/) });
    expect(parseExportArgs(['--before', '2019-01-01', '--batch', '0'], now, sixYears)).toEqual({ ok: false, help: false, error: '--batch: a whole number from 1 to 10000' });
    expect(parseExportArgs(['--before', '2019-01-01', '--delete-all'], now, sixYears)).toMatchObject({ ok: false, error: expect.stringContaining('--delete-all') });
    expect(parseExportArgs(['--help'], now, sixYears)).toEqual({ ok: false, help: true });
  });
});
