import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderAccessTables } from './access-tables.ts';
import { mayView } from './resource-audiences.ts';
import { ruleFor } from './route-rules.ts';

describe('access rules as data', () => {
  it('docs/security.md shows the access tables exactly as the rules enforce them (npx tsx scripts/access-tables.ts prints them)', () => {
    const page = readFileSync(path.join(import.meta.dirname, '..', '..', 'docs', 'security.md'), 'utf8');
    expect(page).toContain(renderAccessTables());
  });

  it('a route is found by method and registered path; other methods fall to the catch-all rows only', () => {
    expect(ruleFor('GET', '/second-opinions/:id')?.access).toMatchObject({ kind: 'roles', roles: ['referrer', 'physician'] });
    expect(ruleFor('POST', '/second-opinions/:id')).toBeUndefined();
    expect(ruleFor('DELETE', '/fhir/{*rest}')?.access).toEqual({ kind: 'authenticated' });
    expect(ruleFor('GET', '/nowhere')).toBeUndefined();
  });

  it('blinding: the first opinion reaches an admitted clinic only when unblinded or after its own opinion', () => {
    expect(mayView('first-opinion', ['consultant'])).toBe(false);
    expect(mayView('first-opinion', ['consultant', 'consultant-unless-blinded'])).toBe(true);
    expect(mayView('first-opinion', ['consultant', 'consultant-after-opinion'])).toBe(true);
    expect(mayView('withheld-record-set', ['consultant', 'consultant-unless-blinded'])).toBe(false);
    expect(mayView('intake-provenance', ['consultant', 'owner'])).toBe(false);
    expect(mayView('audit-event', ['referrer', 'requester'])).toBe(false);
  });
});
