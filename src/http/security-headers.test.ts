import type { Request, Response } from 'express';
import { describe, expect, it } from 'vitest';
import { securityHeaders } from './security-headers.ts';

function headersOf(options: Parameters<typeof securityHeaders>[0]): Record<string, string> {
  const set: Record<string, string> = {};
  const res = { setHeader: (name: string, value: string) => void (set[name] = value) } as unknown as Response;
  let called = false;
  securityHeaders(options)({} as Request, res, () => void (called = true));
  expect(called).toBe(true);
  return set;
}

describe('securityHeaders', () => {
  it('sets the API headers on every response; no HSTS over plain http', () => {
    expect(headersOf({ publicUrl: 'http://localhost:8080', hstsMaxAgeSeconds: 31_536_000 })).toEqual({
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
      'X-Frame-Options': 'DENY',
      'Referrer-Policy': 'no-referrer',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cross-Origin-Opener-Policy': 'same-origin',
    });
  });

  it('HSTS when PUBLIC_URL is https, unless its max-age is 0', () => {
    expect(headersOf({ publicUrl: 'https://so.example.org', hstsMaxAgeSeconds: 31_536_000 })['Strict-Transport-Security']).toBe('max-age=31536000');
    expect(headersOf({ publicUrl: 'https://so.example.org', hstsMaxAgeSeconds: 0 })['Strict-Transport-Security']).toBeUndefined();
  });
});
