/**
 * Hostile values for the fuzz campaign: the text, numbers, field names and
 * nestings a careless or malicious client sends in a request of a valid shape. Each arbitrary
 * mixes a fixed list of known troublemakers (always among the first values fast-check tries)
 * with generated ones.
 */
import fc from 'fast-check';

/** A piece of JSON text put into a body as written: numbers JavaScript cannot hold, deep nesting, invalid fragments. */
export class RawJson {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  /** What a failing case prints: the start of the text and its length. */
  toString(): string {
    return `RawJson(${this.text.length > 60 ? `${this.text.slice(0, 60)}… ${this.text.length} chars` : this.text})`;
  }
}

/** A JSON value, or raw JSON text where JavaScript cannot express it. */
export type Hostile = string | number | boolean | null | RawJson | Hostile[] | { [key: string]: Hostile };

const DEPTH = 10_000;

/** Confusable look-alikes of Latin letters (Cyrillic, Greek, fullwidth): ids and codes that read the same and are not. */
const CONFUSABLE: Record<string, string> = { a: 'а', e: 'е', o: 'о', p: 'р', c: 'с', x: 'х', i: 'і', s: 'ѕ', k: 'κ', l: 'ӏ', d: 'ԁ', n: 'ո', t: 'ｔ', r: 'ｒ' };

/** `text` with every letter that has a look-alike replaced by it. */
export function confusable(text: string): string {
  return [...text].map((ch) => CONFUSABLE[ch] ?? ch).join('');
}

/** Text known to break things somewhere: storage, rendering, comparison, logging. */
export const HOSTILE_TEXT: readonly string[] = [
  '',
  ' ',
  '\t\r\n',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfffy',
  '\udc00\ud800',
  '\uffff',
  '\ufffe',
  '\ufeffBOM',
  '\u202eevil\u202c',
  'a\u200bb\u200dc',
  '\u2028\u2029',
  '\u0085NEL',
  '\u0001\u0007\u001b[31m\u007f',
  'Z̸̡̛̗̼a̶̯͉l̵g̷o̵',
  '😀👩‍⚕️🏳️‍🌈',
  '𝐁𝐨𝐥𝐝 𝔉𝔯𝔞𝔨',
  'ｌａｋｅｓｉｄｅ',
  confusable('lakeside-consults'),
  confusable('Practitioner/dr-nilsen'),
  confusable('routine'),
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  '../../../etc/passwd',
  '..%2F..%2F',
  '%00',
  '${jndi:ldap://x}',
  '{{7*7}}',
  '<script>alert(1)</script>',
  "' OR 1=1 --",
  '"; DROP TABLE resource; --',
  '\\u0000',
  'null',
  'undefined',
  'NaN',
  '1e308',
  '-0',
  '2020-02-30',
  '0000-01-01',
  '+275760-09-13T00:00:00Z',
  '9999-12-31T23:59:59.999+14:00',
  'Patient/pat-1/../../Patient/other',
  'https://evil.example/fhir/Patient/1',
  'DocumentReference/op-note-2024#frag',
  'x'.repeat(65),
  'y'.repeat(2049),
];

/** Text of `bytes` length (ASCII, one byte per character), for the body limit (1 MiB by default). */
export const hugeText = (bytes: number): string => 'A'.repeat(bytes);

const loneSurrogate = fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff');

/** Hostile text the store can hold (no NUL, no lone surrogate): what passes the edge checks and must be handled further in. */
export const storableText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_TEXT.filter((t) => !t.includes('\u0000') && t.isWellFormed())) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }).filter((t) => !t.includes('\u0000')) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 16 }) },
);

/** Hostile text: the fixed list, generated Unicode with lone surrogates and NULs spliced in, huge strings. */
export const hostileText: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...HOSTILE_TEXT) },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 16 }) },
  { weight: 2, arbitrary: fc.tuple(fc.string({ maxLength: 8 }), fc.oneof(loneSurrogate, fc.constant('\u0000')), fc.string({ maxLength: 8 })).map(([a, b, c]) => a + b + c) },
  { weight: 1, arbitrary: fc.constantFrom(4_096, 65_536, 1_000_000, 1_048_576).map(hugeText) },
);

/** Numbers at the edges, as JSON text where JavaScript would round or refuse them. */
export const hostileNumber: fc.Arbitrary<Hostile> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom<Hostile>(1e308, -1e308, -0, 0, -1, 0.5, 2 ** 31, 2 ** 32, Number.MAX_SAFE_INTEGER, Number.MIN_VALUE, new RawJson('9007199254740993'), new RawJson('1e400'), new RawJson('-1e400'), new RawJson(`1${'0'.repeat(400)}`), new RawJson('1E+2'), new RawJson('1e-400'), new RawJson('-0.0')),
  },
  { weight: 1, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 128n), max: 2n ** 128n }).map((n) => new RawJson(n.toString())) },
);

/** Field names that poison objects, look like real ones, or cannot be stored. */
export const HOSTILE_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'isPrototypeOf', '', ' ', 'a\u0000b', '\ud800', '\u202eevil', 'a.b', '[0]', '$where', 'resourceType', 'id', 'meta', 'x'.repeat(10_000)];

/** A field name: the poisonous ones, a look-alike or case variant of one of `known`, or generated text. */
export function hostileKey(known: readonly string[]): fc.Arbitrary<string> {
  const variants = known.flatMap((k) => [confusable(k), k.toUpperCase(), `${k} `, `${k}\u0000`]);
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_KEYS) },
    { weight: 2, arbitrary: variants.length ? fc.constantFrom(...variants) : fc.constant('x') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  );
}

/** Nesting far deeper than any stack: arrays, objects, or both. */
export const deepNesting: fc.Arbitrary<RawJson> = fc.constantFrom(
  new RawJson(`${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}`),
  new RawJson(`${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}`),
  new RawJson(`${'[{"__proto__":'.repeat(DEPTH / 2)}null${'}]'.repeat(DEPTH / 2)}`),
  new RawJson(`${'['.repeat(DEPTH)}`),
);

/** JSON fragments that are not JSON, or JSON a lenient reader gets wrong. */
export const RAW_FRAGMENTS: readonly RawJson[] = ['NaN', 'Infinity', 'undefined', "'single'", '[1,]', '{"a":1,"a":2}', '"\\u0000"', '"\\ud800"', '"\\udfff\\ud800"', '"\\x41"', '0x10', '01', '.5', '"unterminated', '{}{}', '/* */ 1', '\ufeff{}'].map((t) => new RawJson(t));

/** Any hostile JSON value, for the place of a field's value or of the whole body. */
export const hostileValue: fc.Arbitrary<Hostile> = fc.oneof(
  { weight: 6, arbitrary: hostileText },
  { weight: 3, arbitrary: hostileNumber },
  { weight: 1, arbitrary: fc.constantFrom<Hostile>(true, false, null, [], {}, [null], [[]], ['a', 'a'], { '': '' }) },
  { weight: 1, arbitrary: fc.array(hostileText, { minLength: 1, maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom(100, 1_000, 50_000).map((n) => Array.from({ length: n }, (_, i) => `item-${i}`)) },
  { weight: 1, arbitrary: deepNesting },
  { weight: 1, arbitrary: fc.constantFrom(...RAW_FRAGMENTS) },
);
