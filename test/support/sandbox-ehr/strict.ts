/**
 * The sandbox EHR's strictness switches: each makes it refuse what a real hospital FHIR server
 * (Medplum, Epic, HAPI) refuses, so a flow test passes only when the service would also work
 * against one. Each can be switched off for a test that needs leniency:
 *
 *   await startSandboxEhr({ strict: { checkReferences: false } }); // one switch off
 *   await startSandboxEhr({ strict: false });                       // every switch off
 *   await startSandboxEhr({ strict: true });                        // every switch on
 *
 * - `serverIds`: everything stored gets a server-assigned UUID, the seed included; tests and
 *   scripts name seeded resources through `ehr.seeded`, never by a fixed id.
 * - `ownOrganizations`: the EHR's Organizations have ids of their own (UUIDs under `serverIds`)
 *   and carry registry identifiers (SANDBOX_ORGANIZATIONS in seed-resources.ts); Consents,
 *   `Patient.managingOrganization`, `DocumentReference.custodian` and
 *   `DiagnosticReport.performer` name them by those ids. Off: the same Organizations under the
 *   network file's ids (even with `serverIds`), still carrying their identifiers.
 * - `enforceScopes`: SMART scopes are enforced per interaction and resource type (v1 and v2
 *   syntax), as Medplum does; the token endpoint grants what is requested AND registered.
 * - `checkReferences`: a create, update, transaction or batch whose resource references
 *   something this server does not hold is refused 400 "Invalid reference (Not found)".
 * - `profileNeedsScope`: a create or update listing `meta.profile` needs StructureDefinition
 *   read (Medplum resolves each profile with the caller's rights), else 403.
 * - `signedLinks`: storage-origin links behave like S3 pre-signed URLs: they expire, a
 *   tampered or expired signature is 403, a request that also carries Authorization is 400.
 * - `jwksUriOnly`: client systems are accepted only when registered by JWK Set URL (as
 *   Medplum and most EHR vendors register backend clients); the assertion's `aud` must be the
 *   token URL exactly either way.
 *
 * {@link DEFAULT_STRICT} says which are on when nothing is given.
 */

/** One flag per real-server behaviour (see the module comment). */
export interface StrictSwitches {
  serverIds: boolean;
  ownOrganizations: boolean;
  enforceScopes: boolean;
  checkReferences: boolean;
  profileNeedsScope: boolean;
  signedLinks: boolean;
  jwksUriOnly: boolean;
}

/**
 * The switches `startSandboxEhr` uses when given none: every real-server behaviour but
 * `jwksUriOnly`, which needs the service's URL before the service exists (the JWK Set URL
 * flow test registers the service by URL and switches it on).
 */
export const DEFAULT_STRICT: Readonly<StrictSwitches> = Object.freeze({
  serverIds: true,
  ownOrganizations: true,
  enforceScopes: true,
  checkReferences: true,
  profileNeedsScope: true,
  signedLinks: true,
  jwksUriOnly: false,
});

/** `true`: every switch on; `false`: every switch off; an object: those switches over the defaults. */
export type StrictOption = boolean | Partial<StrictSwitches>;

/** The switches in force for `option`. */
export function resolveStrict(option: StrictOption | undefined): StrictSwitches {
  if (option === true || option === false) {
    return { serverIds: option, ownOrganizations: option, enforceScopes: option, checkReferences: option, profileNeedsScope: option, signedLinks: option, jwksUriOnly: option };
  }
  return { ...DEFAULT_STRICT, ...option };
}
