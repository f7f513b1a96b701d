import type { OperationOutcome } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { safeError } from '../log/safe-error.ts';
import {
  briefOutboundFailure,
  classifyFailure,
  describeOutboundFailure,
  keptOutcome,
  OutboundAuthError,
  OutboundHttpError,
  retryAtFrom,
  sanitizeOAuthDescription,
} from './outbound-errors.ts';

describe('classifyFailure: transient or permanent', () => {
  const fhir: [number, 'transient' | 'permanent'][] = [
    [400, 'permanent'],
    [401, 'permanent'],
    [403, 'permanent'],
    [404, 'permanent'],
    [405, 'permanent'],
    [406, 'permanent'],
    [408, 'transient'],
    [409, 'transient'],
    [410, 'permanent'],
    [412, 'permanent'],
    [413, 'permanent'],
    [415, 'permanent'],
    [422, 'permanent'],
    [425, 'transient'],
    [429, 'transient'],
    [500, 'transient'],
    [501, 'transient'],
    [502, 'transient'],
    [503, 'transient'],
    [504, 'transient'],
    [302, 'permanent'],
  ];
  it.each(fhir)('FHIR call answered %i: %s', (status, expected) => {
    expect(classifyFailure(status, 'http', 'fhir')).toBe(expected);
    const err = new OutboundHttpError({ status, failure: 'http', method: 'POST', url: 'https://ehr.example/fhir/DocumentReference' });
    expect(err).toMatchObject({ retryable: expected === 'transient', failureClass: expected });
  });

  it('no response at all (connection refused or reset, timeout) is transient, on both endpoints', () => {
    for (const failure of ['network', 'timeout'] as const) {
      expect(classifyFailure(0, failure, 'fhir')).toBe('transient');
      expect(classifyFailure(0, failure, 'token')).toBe('transient');
      expect(new OutboundHttpError({ status: 0, failure, method: 'GET', url: 'https://ehr.example/fhir/Patient/1' }).retryable).toBe(true);
    }
  });

  const token: [number, string | undefined, 'transient' | 'permanent'][] = [
    [400, 'invalid_scope', 'permanent'],
    [400, 'invalid_grant', 'permanent'],
    [400, 'unauthorized_client', 'permanent'],
    [401, 'invalid_client', 'permanent'],
    [403, undefined, 'permanent'],
    [404, undefined, 'permanent'],
    [409, undefined, 'permanent'],
    [408, undefined, 'transient'],
    [429, undefined, 'transient'],
    [500, 'server_error', 'transient'],
    [503, 'temporarily_unavailable', 'transient'],
  ];
  it.each(token)('token endpoint answered %i %s: %s', (status, oauthError, expected) => {
    expect(classifyFailure(status, 'http', 'token')).toBe(expected);
    const err = new OutboundAuthError({ status, failure: 'http', tokenUrl: 'https://ehr.example/token', ...(oauthError ? { oauthError } : {}) });
    expect(err.retryable).toBe(expected === 'transient');
  });
});

describe('retryAtFrom: Retry-After on 429 and 503', () => {
  const now = Date.parse('2026-12-06T10:00:00Z');

  it('delay seconds', () => {
    expect(retryAtFrom(429, '2', now)).toEqual(new Date(now + 2_000));
    expect(retryAtFrom(503, ' 120 ', now)).toEqual(new Date(now + 120_000));
  });

  it('an HTTP-date', () => {
    expect(retryAtFrom(503, 'Sun, 06 Dec 2026 10:05:00 GMT', now)).toEqual(new Date('2026-12-06T10:05:00Z'));
    expect(retryAtFrom(429, 'Sun, 06 Dec 2026 10:00:30 GMT', now)).toEqual(new Date('2026-12-06T10:00:30Z'));
  });

  it('nothing for other statuses, a date already past, zero, or an unreadable value', () => {
    expect(retryAtFrom(500, '2', now)).toBeUndefined();
    expect(retryAtFrom(403, '2', now)).toBeUndefined();
    expect(retryAtFrom(429, 'Sun, 06 Dec 2026 09:00:00 GMT', now)).toBeUndefined();
    expect(retryAtFrom(429, '0', now)).toBeUndefined();
    expect(retryAtFrom(429, 'soon', now)).toBeUndefined();
    expect(retryAtFrom(429, '-5', now)).toBeUndefined();
    expect(retryAtFrom(429, null, now)).toBeUndefined();
  });
});

describe("what is kept and shown of the EHR's answer", () => {
  const outcome: OperationOutcome = {
    resourceType: 'OperationOutcome',
    id: 'oo-1',
    text: { status: 'generated', div: '<div>long narrative</div>' },
    issue: [
      { severity: 'error', code: 'forbidden', details: { text: 'Forbidden: missing system/DocumentReference.c', coding: [{ code: 'x' }] }, diagnostics: 'scope check\nfailed', expression: ['DocumentReference'] },
      ...Array.from({ length: 8 }, () => ({ severity: 'warning' as const, code: 'informational' as const, diagnostics: 'x'.repeat(2_000) })),
    ],
  };

  it('keeps severity, code, details.text, diagnostics and expression; at most 5 issues, texts capped', () => {
    const kept = keptOutcome(outcome) as OperationOutcome;
    expect(kept.issue).toHaveLength(5);
    expect(kept.issue[0]).toEqual({ severity: 'error', code: 'forbidden', details: { text: 'Forbidden: missing system/DocumentReference.c' }, diagnostics: 'scope check failed', expression: ['DocumentReference'] });
    expect(kept).not.toHaveProperty('text');
    expect(kept).not.toHaveProperty('id');
    expect((kept.issue[1]?.diagnostics as string).length).toBe(500);
    expect(keptOutcome(undefined)).toBeUndefined();
    expect(keptOutcome({ resourceType: 'OperationOutcome', issue: [] })).toBeUndefined();
  });

  it('the full line (summary, admin list) quotes the EHR; the brief one (Task business status) only its codes', () => {
    const err = new OutboundHttpError({ status: 403, failure: 'http', method: 'POST', url: 'https://ehr.example/fhir/DocumentReference?_x=1', outcome });
    expect(describeOutboundFailure(err)).toBe(
      'OutboundHttpError: POST https://ehr.example/fhir/DocumentReference HTTP 403 (permanent, not retried); the EHR said: forbidden: Forbidden: missing system/DocumentReference.c / scope check failed',
    );
    expect(briefOutboundFailure(err)).toBe('POST https://ehr.example/fhir/DocumentReference HTTP 403 (forbidden, informational): permanent, not retried');
    const busy = new OutboundHttpError({ status: 503, failure: 'http', method: 'POST', url: 'https://ehr.example/fhir/DocumentReference' });
    expect(describeOutboundFailure(busy)).toBe('OutboundHttpError: POST https://ehr.example/fhir/DocumentReference HTTP 503 (transient)');
  });
});

describe('the token endpoint error_description', () => {
  const assertion = 'eyJhbGciOiJFUzM4NCIsImtpZCI6InNlcnZpY2Utb3V0Ym91bmQifQ.eyJpc3MiOiJzby1zZXJ2aWNlIiwic3ViIjoic28tc2VydmljZSJ9.c2lnbmF0dXJlLWJ5dGVzLXRoYXQtYXJlLWxvbmctZW5vdWdo';

  it('is kept on the error and in its message', () => {
    const err = new OutboundAuthError({ status: 400, failure: 'http', tokenUrl: 'https://ehr.example/oauth2/token', oauthError: 'invalid_request', oauthErrorDescription: 'Invalid client assertion audience' });
    expect(err).toMatchObject({ oauthError: 'invalid_request', oauthErrorDescription: 'Invalid client assertion audience', retryable: false });
    expect(err.message).toBe('Token request to https://ehr.example/oauth2/token failed: HTTP 400 invalid_request: Invalid client assertion audience');
    expect(briefOutboundFailure(err)).toBe('Token request to https://ehr.example/oauth2/token failed: HTTP 400 invalid_request: permanent, not retried');
  });

  it('is logged sanitised: printable ASCII, at most 200 characters, the assertion and anything token-shaped removed', () => {
    const description = `Bad assertion ${assertion} for\u0000 client \u00e9t\u00e9 Bearer abcdefghijklmnopqrstuvwxyz0123456789ABCDEF ${'long '.repeat(60)}`;
    const err = new OutboundAuthError({ status: 401, failure: 'http', tokenUrl: 'https://ehr.example/token', oauthError: 'invalid_client', oauthErrorDescription: description, secrets: [assertion] });
    const logged = safeError(err);
    expect(logged).toMatchObject({ type: 'OutboundAuthError', status: 401, oauthError: 'invalid_client', retryable: false });
    const text = logged.oauthErrorDescription as string;
    expect(text.startsWith('Bad assertion [redacted] for client t Bearer [redacted] long long')).toBe(true);
    expect(text.length).toBeLessThanOrEqual(200);
    expect(text).toMatch(/^[\x20-\x7e]*$/);
    for (const part of assertion.split('.')) expect(JSON.stringify(logged)).not.toContain(part);
    expect(JSON.stringify(logged)).not.toContain('abcdefghijklmnopqrstuvwxyz0123456789');
    expect(err.message).not.toContain(assertion.split('.')[2]);
  });

  it('a quoted JWT is removed even when it is not the assertion we sent', () => {
    expect(sanitizeOAuthDescription('token eyJhbGciOi.eyJzdWIiOiJ4In0.sig rejected')).toBe('token [redacted] rejected');
    expect(sanitizeOAuthDescription('Invalid client assertion audience')).toBe('Invalid client assertion audience');
  });
});
