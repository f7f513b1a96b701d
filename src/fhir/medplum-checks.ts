/**
 * The Medplum engine's additions to Medplum's validator (see validator.ts): our extensions'
 * contents validated against their definitions, and the codes bound (required) to our value
 * sets checked, neither of which Medplum does. The generated engine has both in its code.
 */
import { OperationOutcomeError, validateTypedValue, type TypedValueWithPath } from '@medplum/core';
import type { Coding, CodeableConcept, Extension, OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import type { ProfileRegistry } from './profile-registry.ts';

/** Runs a Medplum validation and returns its issues whether it threw or not. */
export function medplumIssues(run: () => OperationOutcomeIssue[]): OperationOutcomeIssue[] {
  try {
    return run();
  } catch (err) {
    if (err instanceof OperationOutcomeError) return err.outcome.issue ?? [];
    throw err;
  }
}

/**
 * Validates the contents of our own extensions on the resource root against their
 * definitions (value type, cardinality, binding). Medplum matches an extension slice by url
 * but then checks the value only as a plain Extension.
 */
export function validateOurExtensions(
  registry: ProfileRegistry,
  resource: Resource,
  tokens: Record<string, TypedValueWithPath[]>,
): OperationOutcomeIssue[] {
  const extensions: unknown = (resource as { extension?: unknown }).extension;
  const issues: OperationOutcomeIssue[] = [];
  // Not an array, or not objects: Medplum's own walk reports it.
  (Array.isArray(extensions) ? (extensions as (Extension | null)[]) : []).forEach((extension, index) => {
    if (typeof extension !== 'object' || extension === null) return;
    const definition = registry.extensions.get(extension.url);
    if (!definition) return;
    const at = `${resource.resourceType}.extension[${index}]`;
    const rebase = (p: string): string => (p.startsWith('Extension') ? at + p.slice('Extension'.length) : p);
    const extensionTokens: Record<string, TypedValueWithPath[]> = {};
    const found = medplumIssues(() =>
      validateTypedValue({ type: definition.schemaKey, value: extension }, { collect: { tokens: extensionTokens } }),
    );
    issues.push(...found.map((i) => ({ ...i, expression: i.expression?.map(rebase) })));
    for (const [valueSet, values] of Object.entries(extensionTokens)) {
      tokens[valueSet] = [...(tokens[valueSet] ?? []), ...values.map((v) => ({ ...v, path: rebase(v.path) }))];
    }
    // Bound values inside a complex extension's sub-extensions, which Medplum does not collect.
    (Array.isArray(extension.extension) ? extension.extension : []).forEach((sub: Extension | null, j) => {
      if (typeof sub !== 'object' || sub === null) return;
      const valueSet = definition.subExtensionBindings.get(sub.url);
      if (!valueSet) return;
      const path = `${at}.extension[${j}]`;
      const value: TypedValueWithPath | undefined = sub.valueCoding
        ? { type: 'Coding', value: sub.valueCoding, path: `${path}.valueCoding` }
        : sub.valueCodeableConcept
          ? { type: 'CodeableConcept', value: sub.valueCodeableConcept, path: `${path}.valueCodeableConcept` }
          : sub.valueCode !== undefined
            ? { type: 'code', value: sub.valueCode, path: `${path}.valueCode` }
            : undefined;
      if (value) tokens[valueSet] = [...(tokens[valueSet] ?? []), value];
    });
  });
  return issues;
}

/**
 * Required bindings to our value sets: every code must be one of ours. Medplum collects the
 * bound values (`collect.tokens`) but never checks them.
 */
export function checkBindings(registry: ProfileRegistry, tokens: Record<string, TypedValueWithPath[]>): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  for (const [binding, values] of Object.entries(tokens)) {
    const valueSetUrl = binding.split('|')[0] ?? binding;
    const allowed = registry.valueSets.get(valueSetUrl);
    if (!allowed) continue; // not ours: R4 value sets are enforced at the edge (zod)
    for (const value of values) {
      const codings = codingsOf(value);
      const inValueSet = (c: Coding): boolean => !!c.code && !!(c.system ? allowed.get(c.system)?.has(c.code) : false);
      const ok =
        value.type === 'code'
          ? [...allowed.values()].some((codes) => codes.has(String(value.value)))
          : codings.some(inValueSet);
      if (!ok) {
        const shown = value.type === 'code' ? String(value.value) : codings.map((c) => `${c.system ?? ''}#${c.code ?? ''}`).join(', ');
        issues.push(
          issue('error', 'code-invalid', `Code ${shown || '(none)'} is not in the required value set ${valueSetUrl}`, [value.path]),
        );
      }
    }
  }
  return issues;
}

function codingsOf(value: TypedValueWithPath): Coding[] {
  if (value.type === 'Coding') return [value.value as Coding];
  if (value.type === 'CodeableConcept') return (value.value as CodeableConcept).coding ?? [];
  return [];
}

export function issue(
  severity: OperationOutcomeIssue['severity'],
  code: OperationOutcomeIssue['code'],
  text: string,
  expression: string[],
): OperationOutcomeIssue {
  return { severity, code, details: { text }, expression };
}
