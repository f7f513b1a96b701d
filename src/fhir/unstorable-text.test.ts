import { describe, expect, it } from 'vitest';
import { findUnstorableText, unfitForFhir, unstorableText } from './unstorable-text.ts';

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

describe('unfitForFhir', () => {
  it.each([
    ['tab, LF, CR, DEL and C1 characters', 'a\tb\nc\rd\u007fe\u0085', undefined],
    ['a NUL', 'a\u0000b', 'contains a NUL character (U+0000), which the service cannot store'],
    ['an escape character', 'a\u001b[31m', 'contains a control character (U+001B), which FHIR text cannot hold'],
    ['a bell', '\u0007', 'contains a control character (U+0007), which FHIR text cannot hold'],
    ['a vertical tab', 'a\u000bb', 'contains a control character (U+000B), which FHIR text cannot hold'],
  ])('%s', (_what, text, reason) => {
    expect(unfitForFhir(text)).toBe(reason);
  });

  it('is not applied to URLs and forms: a control character there is a value like any other', () => {
    expect(unstorableText('a\u0001b')).toBeUndefined();
  });
});

describe('findUnstorableText', () => {
  it('finds control characters in values and field names too', () => {
    expect(findUnstorableText({ question: 'Is it \u0001ok?', ['k\u001f']: 1 })).toEqual([
      { path: [], reason: 'has a field name that contains a control character (U+001F), which FHIR text cannot hold' },
      { path: ['question'], reason: 'contains a control character (U+0001), which FHIR text cannot hold' },
    ]);
  });


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
