import { describe, expect, it } from 'vitest';
import { queryParams } from './query-params.ts';

describe('queryParams', () => {
  it('keeps every value of a repeated parameter, in order', () => {
    expect({ ...queryParams({ originalUrl: '/fhir/Task?status=a&owner=x&status=b,c' }) }).toEqual({ status: ['a', 'b,c'], owner: ['x'] });
  });

  it('takes names of Object.prototype members as plain names', () => {
    const params = queryParams({ originalUrl: '/fhir/Task?toString=1&constructor=2&__proto__=3&hasOwnProperty=4&toString=5' });
    expect(Object.entries(params)).toEqual([
      ['toString', ['1', '5']],
      ['constructor', ['2']],
      ['__proto__', ['3']],
      ['hasOwnProperty', ['4']],
    ]);
    expect(Object.getPrototypeOf(params)).toBeNull();
  });
});
