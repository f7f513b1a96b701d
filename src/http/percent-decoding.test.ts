import { describe, expect, it } from 'vitest';
import { decodeComponent, parameterProblems } from './percent-decoding.ts';

describe('decodeComponent', () => {
  it.each([
    ['caf%C3%A9', false, { ok: true, value: 'café' }],
    ['a+b', true, { ok: true, value: 'a b' }],
    ['a+b', false, { ok: true, value: 'a+b' }],
    ['%E0%A4%A', false, { ok: false, reason: 'is not valid percent-encoded UTF-8' }],
    ['%ED%A0%80', false, { ok: false, reason: 'is not valid percent-encoded UTF-8' }],
    ['%', false, { ok: false, reason: 'is not valid percent-encoded UTF-8' }],
    ['a%00', true, { ok: false, reason: 'contains a NUL character (U+0000), which the service cannot store' }],
  ])('%s (plus is space: %s)', (raw, plusIsSpace, decoded) => {
    expect(decodeComponent(raw, plusIsSpace)).toEqual(decoded);
  });
});

describe('parameterProblems', () => {
  it('names each bad value by its parameter, and a bad name as sent', () => {
    expect(parameterProblems('status=ok&_count=2&flag&x=%00&%E0%A4%A=1&y=%FF&&z=')).toEqual([
      { name: 'x', reason: 'x contains a NUL character (U+0000), which the service cannot store' },
      { name: '%E0%A4%A', reason: 'The parameter name is not valid percent-encoded UTF-8' },
      { name: 'y', reason: 'y is not valid percent-encoded UTF-8' },
    ]);
  });
});
