/**
 * The generated R4 validator (src/fhir/generated/r4-validators.ts, from
 * scripts/generate-validators.ts): the same issues as Medplum's `validateResource` for the
 * resource types the service emits or accepts, without walking a generic schema at run time.
 * Other resource types go to Medplum.
 */
import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { CONSTRAINTS, EXTENSION_VALIDATORS, PROFILE_VALIDATORS, RESOURCE_VALIDATORS, ROOT_CONSTRAINTS } from './generated/r4-validators.ts';
import { inv, linked, validatorOf } from './generated-runtime.ts';

linked.resources = RESOURCE_VALIDATORS;
linked.constraints = CONSTRAINTS;

type Generated = (v: any, p: string, o: OperationOutcomeIssue[], r: any) => void; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The generated function of one of our resource profiles (R4 base included), by canonical URL. */
export function profileValidatorOf(url: string): Generated | undefined {
  return Object.hasOwn(PROFILE_VALIDATORS, url) ? PROFILE_VALIDATORS[url] : undefined;
}

/** The generated function of one of our extension definitions, by canonical URL. */
export function extensionValidatorOf(url: unknown): Generated | undefined {
  return typeof url === 'string' && Object.hasOwn(EXTENSION_VALIDATORS, url) ? EXTENSION_VALIDATORS[url] : undefined;
}

/** Whether the generated validator covers this resource type. */
export function isGenerated(resourceType: string): boolean {
  return validatorOf(resourceType) !== undefined;
}

/**
 * Validates against R4 base, as `validateResource(resource)` would: returns the warnings,
 * throws OperationOutcomeError when there is an error.
 */
export function validateGenerated(resource: Resource): OperationOutcomeIssue[] {
  const fn = validatorOf(resource.resourceType);
  if (!fn) return validateResource(resource);
  const issues: OperationOutcomeIssue[] = [];
  for (const index of ROOT_CONSTRAINTS[resource.resourceType] ?? []) inv(index, resource.resourceType, resource, resource.resourceType, issues, resource);
  fn(resource, resource.resourceType, issues, resource);
  if (issues.some((i) => i.severity === 'error')) throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: issues });
  return issues;
}
