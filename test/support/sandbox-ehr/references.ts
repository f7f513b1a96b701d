/**
 * Reference checking on write, as servers that enforce referential integrity do (Medplum's
 * "Invalid reference (Not found)"): every `reference` in a created or updated resource must name
 * something this server holds. Logical references (identifier and/or display only), contained
 * `#id` references and a transaction's own `urn:uuid:` full URLs are fine.
 */
import { badRequest } from '@medplum/core';
import type { FhirRepository } from '@medplum/fhir-router';
import type { OperationOutcome, Resource } from '@medplum/fhirtypes';

/** One `reference` string found in a resource, with its FHIRPath-style location. */
export interface FoundReference {
  /** e.g. `DocumentReference.author[0]`. */
  expression: string;
  reference: string;
}

/** Every object with a string `reference`, at any depth (contained resources included). */
export function collectReferences(resource: Resource): FoundReference[] {
  const found: FoundReference[] = [];
  const walk = (value: unknown, path: string): void => {
    if (Array.isArray(value)) return value.forEach((v, i) => walk(v, `${path}[${i}]`));
    if (!value || typeof value !== 'object') return;
    const obj = value as Record<string, unknown>;
    if (typeof obj.reference === 'string') found.push({ expression: path, reference: obj.reference });
    for (const [key, child] of Object.entries(obj)) if (child && typeof child === 'object') walk(child, `${path}.${key}`);
  };
  walk(resource, resource.resourceType);
  return found;
}

/** The outcome Medplum answers for a reference it cannot resolve. */
export function invalidReference(expression: string): OperationOutcome {
  return badRequest('Invalid reference (Not found)', expression);
}

/**
 * The first reference of `resource` this server cannot resolve, as the 400 outcome to answer,
 * or undefined when all resolve. `baseUrl` is the server's own FHIR base (absolute references
 * on it count as local); `bundleUrls` are the full URLs of the transaction's entries.
 */
export async function checkReferences(repo: FhirRepository, resource: Resource, baseUrl: string, bundleUrls: ReadonlySet<string> = new Set()): Promise<OperationOutcome | undefined> {
  const contained = new Set((resource as { contained?: Resource[] }).contained?.map((c) => `#${c.id}`));
  for (const { expression, reference } of collectReferences(resource)) {
    if (reference.startsWith('#') && (reference === '#' || contained.has(reference))) continue;
    if (bundleUrls.has(reference)) continue;
    const local = reference.startsWith(`${baseUrl}/`) ? reference.slice(baseUrl.length + 1) : reference;
    const m = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(\/_history\/[A-Za-z0-9\-.]{1,64})?$/.exec(local);
    if (m && (await exists(repo, m[1]!, m[2]!))) continue;
    return invalidReference(expression);
  }
  return undefined;
}

async function exists(repo: FhirRepository, type: string, id: string): Promise<boolean> {
  try {
    await repo.readResource(type as Resource['resourceType'], id);
    return true;
  } catch {
    return false;
  }
}
