import { describe, expect, it } from 'vitest';
import { findUnstorableText, unstorableText } from './unstorable-text.ts';

describe('unstorableText', () => {
  it.each([
    ['plain text, accents and emoji', 'Café 😀', undefined],
    ['a NUL', 'a\u0000b', 'contains a NUL character (U+0000), which the service cannot store'],
    ['a lone high surrogate', 'a\ud800b', 'contains a lone surrogate (U+D800 to U+DFFF without its pair), which is not Unicode text'],
    ['a lone low surrogate', '\udc00', 'contains a lone surrogate (U+D800 to U+DFFF without its pair), which is not Unicode text'],
  ])('%s', (_what, text, reason) => {
    expect(unstorableText(text)).toBe(reason);
  });
});

describe('findUnstorableText', () => {
  it('names each bad string by its path, and a bad field name at the object holding it', () => {
    expect(findUnstorableText({ a: [{ b: 'x\u0000' }, 'ok', { ['k\u0000']: 1, c: '\ud800' }], d: 1, e: null, f: true })).toEqual([
      { path: ['a', 0, 'b'], reason: expect.stringContaining('NUL') },
      { path: ['a', 2], reason: expect.stringMatching(/^has a field name that contains a NUL/) },
      { path: ['a', 2, 'c'], reason: expect.stringContaining('lone surrogate') },
    ]);
  });

  it('walks nesting deeper than the call stack, and lists at most 20 findings', () => {
    const depth = 200_000;
    const deep = JSON.parse(`${'['.repeat(depth)}"\\u0000"${']'.repeat(depth)}`) as unknown;
    expect(findUnstorableText(deep)[0]?.path).toHaveLength(depth);
    expect(findUnstorableText(Array.from({ length: 50 }, () => '\u0000'))).toHaveLength(20);
  });
});
