import { describe, expect, it } from 'vitest';
import { splitScopes } from '../auth/scopes.ts';
import { DEFAULT_OUTBOUND_SCOPE, missingOutboundScopes, outboundScope } from './outbound-scope.ts';

describe('outbound scope', () => {
  it('the default asks for every read and write the service makes on an EHR, the post-back included', () => {
    expect(DEFAULT_OUTBOUND_SCOPE).toBe('system/DocumentReference.crs system/DiagnosticReport.rs system/ImagingStudy.rs system/Consent.r system/Patient.r system/Organization.r system/Binary.r system/Communication.cs');
    expect(missingOutboundScopes(splitScopes(DEFAULT_OUTBOUND_SCOPE))).toEqual([]);
  });

  it('names each need a scope leaves out; wildcards and v1 scopes count', () => {
    // The service's earlier default: reads only, so every post-back was refused by a scope-enforcing EHR.
    const readsOnly = 'system/DocumentReference.rs system/DiagnosticReport.rs system/ImagingStudy.rs system/Consent.r system/Patient.r system/Organization.r system/Binary.r';
    expect(missingOutboundScopes(splitScopes(readsOnly))).toEqual(['system/DocumentReference.c', 'system/Communication.c', 'system/Communication.s']);
    expect(missingOutboundScopes(['system/*.read', 'system/*.write'])).toEqual([]);
    expect(missingOutboundScopes(['system/*.rs'])).toEqual(['system/DocumentReference.c', 'system/Communication.c']);
    expect(missingOutboundScopes([])).toHaveLength(13);
  });

  it('an EHR that keeps meta.profile also needs StructureDefinition read and search (it resolves profiles with our rights)', () => {
    expect(outboundScope({ profiles: 'omit' })).toBe(DEFAULT_OUTBOUND_SCOPE);
    expect(outboundScope({ profiles: 'keep' })).toBe(`${DEFAULT_OUTBOUND_SCOPE} system/StructureDefinition.rs`);
    expect(missingOutboundScopes(splitScopes(DEFAULT_OUTBOUND_SCOPE), { profiles: 'keep' })).toEqual(['system/StructureDefinition.r', 'system/StructureDefinition.s']);
    expect(missingOutboundScopes(splitScopes(outboundScope({ profiles: 'keep' })), { profiles: 'keep' })).toEqual([]);
  });

  it('a consulting clinic that receives pushed record sets is asked for the push only: conditional creates, and the Task read and updated', () => {
    const push = outboundScope({ referrer: false, push: true });
    expect(push).toBe('system/DocumentReference.cs system/DiagnosticReport.cs system/ImagingStudy.cs system/ServiceRequest.cs system/Task.crus');
    expect(missingOutboundScopes(splitScopes(push), { referrer: false, push: true })).toEqual([]);
    expect(missingOutboundScopes(['system/*.rs'], { referrer: false, push: true })).toEqual([
      'system/DocumentReference.c', 'system/DiagnosticReport.c', 'system/ImagingStudy.c', 'system/ServiceRequest.c', 'system/Task.c', 'system/Task.u',
    ]);
    // A referrer that is also pushed to needs both.
    expect(outboundScope({ push: true })).toBe(`${DEFAULT_OUTBOUND_SCOPE} ${push}`);
  });
});
