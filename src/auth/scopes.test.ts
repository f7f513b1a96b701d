import { describe, expect, it } from 'vitest';
import { grantScopes, hasScope, invalidScopes, parseScope, splitScopes } from './scopes.ts';

describe('parseScope', () => {
  it('reads v1 scopes', () => {
    expect(parseScope('system/Patient.read')).toEqual({ text: 'system/Patient.read', resourceType: 'Patient', interactions: new Set(['r', 's']) });
    expect(parseScope('system/Patient.write')?.interactions).toEqual(new Set(['c', 'u', 'd']));
    expect(parseScope('system/*.*')).toEqual({ text: 'system/*.*', resourceType: '*', interactions: new Set(['c', 'r', 'u', 'd', 's']) });
  });

  it('reads v2 scopes', () => {
    expect(parseScope('system/Task.rs')).toEqual({ text: 'system/Task.rs', resourceType: 'Task', interactions: new Set(['r', 's']) });
    expect(parseScope('system/*.cruds')?.interactions).toEqual(new Set(['c', 'r', 'u', 'd', 's']));
    expect(parseScope('system/ServiceRequest.c')?.interactions).toEqual(new Set(['c']));
  });

  it.each([
    'system/Task.sr', // v2 letters out of order
    'system/Task.rr',
    'system/Task.',
    'system/Task.x',
    'patient/Task.rs', // only system/ scopes for backend services
    'user/*.read',
    'system/task.rs', // resource types start upper-case
    'system/Task.rs?category=x', // granular scopes are not supported
    'openid',
    '',
  ])('refuses %j', (scope) => {
    expect(parseScope(scope)).toBeUndefined();
  });
});

describe('splitScopes / invalidScopes', () => {
  it('splits on any whitespace and names the bad ones', () => {
    expect(splitScopes('  system/Task.rs\tsystem/*.read\n')).toEqual(['system/Task.rs', 'system/*.read']);
    expect(splitScopes(undefined)).toEqual([]);
    expect(invalidScopes(['system/Task.rs', 'launch', 'system/Task.sr'])).toEqual(['launch', 'system/Task.sr']);
  });
});

describe('grantScopes', () => {
  const allowed = ['system/*.rs', 'system/ServiceRequest.c', 'system/Task.rs'];

  it('grants the allowed set when nothing is requested, without redundant entries', () => {
    expect(grantScopes(undefined, allowed)).toEqual(['system/*.rs', 'system/ServiceRequest.c']);
    expect(grantScopes([], allowed)).toEqual(['system/*.rs', 'system/ServiceRequest.c']);
  });

  it('grants a requested scope that an allowed scope covers, in the client wording', () => {
    expect(grantScopes(['system/Task.rs'], allowed)).toEqual(['system/Task.rs']);
    expect(grantScopes(['system/Patient.read'], allowed)).toEqual(['system/Patient.read']);
    expect(grantScopes(['system/ServiceRequest.c', 'system/Task.r'], allowed)).toEqual(['system/ServiceRequest.c', 'system/Task.r']);
  });

  it('narrows a wider request to what is allowed', () => {
    expect(grantScopes(['system/*.cruds'], allowed)).toEqual(['system/*.rs', 'system/ServiceRequest.c']);
    expect(grantScopes(['system/Task.cruds'], allowed)).toEqual(['system/Task.rs']);
    expect(grantScopes(['system/ServiceRequest.write'], allowed)).toEqual(['system/ServiceRequest.c']);
    expect(grantScopes(['system/*.*'], ['system/Task.rus'])).toEqual(['system/Task.rus']);
  });

  it('drops what is not allowed and returns nothing when nothing overlaps', () => {
    expect(grantScopes(['system/Task.u', 'system/Task.rs'], allowed)).toEqual(['system/Task.rs']);
    expect(grantScopes(['system/Task.d'], allowed)).toEqual([]);
    expect(grantScopes(['system/Patient.c'], allowed)).toEqual([]);
    expect(grantScopes(['nonsense'], allowed)).toEqual([]);
  });
});

describe('hasScope', () => {
  const granted = ['system/*.rs', 'system/ServiceRequest.c', 'system/Task.write'];

  it('checks resource type and interaction', () => {
    expect(hasScope(granted, 'Patient', 'r')).toBe(true);
    expect(hasScope(granted, 'Patient', 's')).toBe(true);
    expect(hasScope(granted, 'Patient', 'c')).toBe(false);
    expect(hasScope(granted, 'ServiceRequest', 'c')).toBe(true);
    expect(hasScope(granted, 'ServiceRequest', 'u')).toBe(false);
    expect(hasScope(granted, 'Task', 'u')).toBe(true);
    expect(hasScope(granted, 'Task', 'd')).toBe(true);
    expect(hasScope([], 'Task', 'r')).toBe(false);
  });
});
