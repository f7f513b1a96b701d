/**
 * The URL and header parts of a fuzz case: path ids, query strings and headers, each a mix of
 * real values (so cases reach the code behind the edge checks) and hostile ones. Everything here
 * is as sent on the wire: already percent-encoded, or deliberately not.
 */
import fc from 'fast-check';
import { confusable, HOSTILE_TEXT, hostileText, storableText } from './hostile.ts';

/**
 * Percent-encodes text as a URL component. A lone surrogate has no UTF-8 form: it is written as
 * the three bytes its code unit would take (`%ED%A0%80`), which a strict decoder refuses.
 */
export function encodeLoose(text: string): string {
  let out = '';
  for (const ch of text) {
    const unit = ch.charCodeAt(0);
    if (ch.length === 1 && unit >= 0xd800 && unit <= 0xdfff) {
      out += [0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
    } else {
      out += encodeURIComponent(ch);
    }
  }
  return out;
}

/** Path segments that are not ids: NULs, dot segments, bad encodings, look-alikes, prototype names, huge and odd numbers. */
const HOSTILE_SEGMENTS: readonly string[] = [
  '%00',
  'a%00b',
  '..',
  '.',
  '%2e%2e',
  '%2E%2E%2F%2E%2E%2Fetc%2Fpasswd',
  '%2F',
  'a%2Fb',
  '%5C..%5C',
  '%25',
  '%',
  '%zz',
  '%E0%A4%A',
  '%ED%A0%80',
  '%C0%AE%C0%AE',
  '%EF%BF%BF',
  '%E2%80%AE',
  '%20',
  '+',
  '~',
  '*',
  ';',
  '@',
  ':',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  '-1',
  '0',
  '1e308',
  '99999999999999999999',
  '0x10',
  'null',
  'undefined',
  'x'.repeat(4_000),
];

/** A path segment: one of `real` (mostly, so cases get past the path checks), a real one with hostile text around it, or a hostile one. */
export function segment(real: readonly string[]): fc.Arbitrary<string> {
  const known = real.length ? real : ['none'];
  return fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...known) },
    { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_SEGMENTS) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...known), fc.constantFrom('%00', '%E2%80%AE', '%20', '.json', '%2F..', '/', encodeLoose(confusable('a')), '%ED%A0%80')).map(([id, extra]) => `${id}${extra}`) },
    { weight: 1, arbitrary: fc.constantFrom(...known).map((id) => encodeLoose(confusable(id)) || id.toUpperCase()) },
    { weight: 2, arbitrary: fc.oneof(storableText, hostileText).filter((t) => t.length < 2_000).map(encodeLoose).map((t) => t || '%20') },
  );
}

/** Query values by what the parameter means. */
export const QUERY_VALUES = {
  count: fc.constantFrom('1', '2', '0', '-1', '100', '101', '1e308', '9007199254740993', '99999999999999999999', 'NaN', 'Infinity', '-0', '0x10', '1.5', '', '%205', '1e2', '%2B1'),
  date: fc.tuple(
    fc.constantFrom('', 'eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap', 'xx', 'GE'),
    fc.constantFrom('2026', '2026-01', '2026-01-01', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00.123456789%2B14:00', '0000', '0000-01-01', '0001-01-01', '9999-12-31T23:59:59Z', '2026-13-01', '2026-02-30', '2026-01-01T25:00:00Z', '2026-01-01T00:00:00%2B99:99', '1e308', 'now', '', '%2B275760-09-13'),
  ).map(([p, d]) => p + d),
  token: fc.constantFrom('requested', 'in-progress,completed', 'active', 'R', '4', 'read', 'http://hl7.org/fhir/restful-interaction|read', ',', ',,', 'a,', '|', '||', 'Requested'),
  reference: fc.constantFrom('Organization/lakeside', 'lakeside', 'Organization/', '/', 'Organization/lakeside/_history/1', 'https://ehr.example/fhir/Patient/pat-1', 'Patient/pat-1', '..%2F..', 'Organization%2Flakeside'),
  identifier: fc.constantFrom('urn:system|REQ-1', 'REQ-1', '|', '||', '|x', 'x|', '%7C%7C%7C'),
  role: fc.constantFrom('consultant', 'referrer', 'physician', 'auditor', 'admin', 'Consultant', '', 'admin%20', 'consultant,referrer'),
  overdue: fc.constantFrom('true', 'false', 'TRUE', '1', '', 'yes'),
  format: fc.constantFrom('json', 'application/fhir%2Bjson', 'xml', 'html', 'text/html', ''),
  hostile: fc.oneof({ weight: 3, arbitrary: storableText }, { weight: 1, arbitrary: hostileText }).filter((t) => t.length < 3_000).map(encodeLoose),
};

/** A forged paging cursor: base64url JSON [time, id] with edge times and ids, or not even that. */
export const forgedCursor: fc.Arbitrary<string> = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('0000-01-01T00:00:00.000Z', '-000001-01-01T00:00:00.000Z', '+275760-09-13T00:00:00.000Z', '-271821-04-20T00:00:00.000Z', '1', '2026', 'Tue, 01 Jan 2026 00:00:00 GMT', '9999-12-31T23:59:59.999Z', '2026-01-01T00:00:00.000Z'),
      fc.constantFrom('a', '00000000-0000-0000-0000-000000000000', '..', 'x'.repeat(64)),
    )
    .map((pair) => Buffer.from(JSON.stringify(pair)).toString('base64url')),
  fc.constantFrom('garbage', '', '%00', Buffer.from('[]').toString('base64url'), Buffer.from('{}').toString('base64url'), Buffer.from('["2026-01-01T00:00:00Z",1]').toString('base64url')),
);

/** Parameter names nobody declared: prototype keys, bracket and dot syntax, modifiers, undecodable. */
const HOSTILE_NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'a[b]', 'a[__proto__]', 'a.b', '_sort', '_include', '_elements', '_summary', 'status:missing', 'owner:not', '%00', '%E0%A4%A', '', 'x'.repeat(1_000)];

/**
 * A query string (without `?`): known parameters with values of their kind, repeated or not,
 * and unknown or hostile names; sometimes text that is not a query string at all.
 */
export function queryString(known: Record<string, fc.Arbitrary<string>>): fc.Arbitrary<string> {
  const names = Object.keys(known);
  const maxPairs = Math.min(6, names.length + 2);
  const pair = fc.oneof(
    ...(names.length ? [{ weight: 6, arbitrary: fc.constantFrom(...names).chain((n) => fc.oneof({ weight: 3, arbitrary: known[n] as fc.Arbitrary<string> }, { weight: 1, arbitrary: QUERY_VALUES.hostile }).map((v) => `${n}=${v}`)) }] : []),
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...HOSTILE_NAMES), QUERY_VALUES.hostile).map(([n, v]) => `${n}=${v}`) },
    { weight: 1, arbitrary: fc.constantFrom('%', '%zz', '&&&', '=', '==', 'a', 'a=1=2', '?', '#frag', 'a=%E0%A4%A', 'a=%00') },
  );
  // A route that reads no parameter gets one only now and then: the edge checks of query strings are the same everywhere.
  return fc.oneof({ weight: names.length ? 1 : 3, arbitrary: fc.constant('') }, { weight: 2, arbitrary: fc.array(pair, { minLength: 1, maxLength: maxPairs }).map((pairs) => pairs.join('&')) });
}

/** Authorization headers that are not a valid bearer token. */
const BAD_AUTHORIZATION = ['Bearer', 'Bearer ', 'bearer  x', 'Basic Zm9vOmJhcg==', 'Bearer a.b.c', 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', `Bearer ${'a'.repeat(3_000)}`, 'Bearer %00', 'Bearer a b', 'Digest x', 'Bearer \u00e9'];

/** Header values of Latin-1 bytes only (what Node sends): raw UTF-8 of hostile text is written byte by byte. */
const asBytes = (text: string) => Buffer.from(text.replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, ''), 'utf8').toString('latin1');

/** One hostile header: a name and its value. */
const header: fc.Arbitrary<[string, string | string[]]> = fc.oneof(
  fc.tuple(fc.constant('accept'), fc.constantFrom('application/json', 'application/fhir+json', 'text/html', '*/*', 'garbage', '', 'application/json;q=0', ';;;,,,', 'text/html;q=1.0, application/json;q=0.9', 'application/xml', 'application/fhir+json; fhirVersion=9.9', 'x/'.repeat(1_000))),
  fc.tuple(fc.constant('content-type'), fc.constantFrom('application/json', 'application/fhir+json', 'application/json; charset=utf-8', 'application/json; charset=UTF-16', 'application/json; charset="utf-8"', 'application/json; charset=latin1', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', 'application/json;;', '', 'application/*', 'application/json; charset=')),
  fc.tuple(fc.constant('content-encoding'), fc.constantFrom('identity', 'gzip', 'deflate', 'br', 'x-unknown', 'gzip, gzip', 'IDENTITY', '')),
  fc.tuple(fc.constant('if-match'), fc.constantFrom('W/"1"', '"1"', '1', 'W/"2"', 'W/"999"', '*', 'W/""', 'garbage', 'W/"1e308"', 'W/"-1"', '"99999999999999999999"', '   ', 'W/"1", W/"2"')),
  fc.tuple(fc.constant('if-match'), fc.constant<string[]>(['W/"1"', 'W/"2"'])),
  fc.tuple(fc.constant('if-none-match'), fc.constantFrom('W/"1"', '*', 'garbage', '"', 'W/"1", *')),
  fc.tuple(fc.constant('prefer'), fc.constantFrom('handling=strict', 'handling=lenient', 'return=minimal', 'handling=strict, handling=lenient', 'garbage', 'handling=STRICT')),
  fc.tuple(fc.constant('traceparent'), fc.constantFrom('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', '00-00000000000000000000000000000000-0000000000000000-00', 'ff-zz', '', 'x'.repeat(4_000), '00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01')),
  fc.tuple(fc.constant('range'), fc.constantFrom('bytes=0-0', 'bytes=-0', 'bytes=0-', 'bytes=-1', 'bytes=99999999999999999999-', 'bytes=-99999999999999999999', 'bytes=5-1', 'bytes=0-1,2-3', 'bytes=', 'items=0-1', 'bytes=1e3-2e3', 'bytes=0x10-')),
  fc.tuple(fc.constant('if-range'), fc.constantFrom('"x"', 'W/"x"', 'Tue, 01 Jan 2026 00:00:00 GMT', '')),
  fc.tuple(fc.constant('authorization'), fc.constantFrom(...BAD_AUTHORIZATION)),
  fc.tuple(fc.constant('x-forwarded-for'), fc.constantFrom('127.0.0.1', '::1, evil', '')),
  fc.tuple(fc.constant('x-fuzz'), fc.oneof(fc.constantFrom(...HOSTILE_TEXT.filter((t) => t.length < 100)), fc.constant('v'.repeat(4_000))).map(asBytes)),
);

/** None (half the cases), or one to three hostile headers (the later of two with the same name wins). */
export const hostileHeaders: fc.Arbitrary<Record<string, string | string[]>> = fc.oneof(
  { weight: 1, arbitrary: fc.constant({}) },
  { weight: 1, arbitrary: fc.array(header, { minLength: 1, maxLength: 3 }).map((pairs) => Object.fromEntries(pairs)) },
);
