/**
 * References in what the service posts to an EHR.
 *
 * An EHR that checks references on write refuses a resource pointing at anything it does not
 * hold ("Invalid reference (Not found)"), and one that does not check would store a dangling
 * link. So everything posted references only what exists there: the EHR's own resources (the
 * patient, the requesting practitioner, the document just created there) as relative
 * references, and everything else (the consulting clinic, anything of this service's or of
 * another server) as a logical reference: the participant's identifier and name, never an id
 * of ours.
 *
 * Rule for the resource as the service built it: an absolute reference on the EHR's FHIR base
 * becomes relative; a contained (`#id`) or already logical one stays; any other reference
 * (relative = in this service's namespace, or absolute elsewhere) becomes logical.
 */
import type { Identifier, Reference, Resource } from '@medplum/fhirtypes';
import { isOnFhirBase, parseResourceReference } from '../fhir/references.ts';

export interface EhrReferenceContext {
  /** The EHR's FHIR base URL. */
  ehrBaseUrl: string;
  /** A participant organization by this service's reference (`Organization/lakeside`): how to name it logically. */
  organization(reference: string): { identifier?: readonly Identifier[]; display?: string } | undefined;
}

/** One reference found in a resource: where it is (FHIRPath-like) and its value. */
export interface FoundReference {
  path: string;
  reference: Reference;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every Reference (an object with a string `reference` or a logical `identifier` beside `display`/`type`) in `resource`, with its path. */
export function findReferences(resource: Resource): FoundReference[] {
  const found: FoundReference[] = [];
  const walk = (value: unknown, path: string): void => {
    if (Array.isArray(value)) return value.forEach((v, i) => walk(v, `${path}[${i}]`));
    if (!isObject(value)) return;
    if (isReference(value)) found.push({ path, reference: value as Reference });
    for (const [key, child] of Object.entries(value)) {
      if (key === 'contained') continue;
      walk(child, `${path}.${key}`);
    }
  };
  walk(resource, resource.resourceType);
  return found;
}

function isReference(value: Record<string, unknown>): boolean {
  if (typeof value.reference === 'string') return true;
  // A logical reference: an identifier beside what a Reference may hold, and nothing else.
  return isObject(value.identifier) && Object.keys(value).every((k) => ['identifier', 'display', 'type', 'id', 'extension'].includes(k));
}

/** `resource` with every reference made fit for the EHR (see the module comment). Does not change its argument. */
export function referencesForEhr<T extends Resource>(resource: T, ctx: EhrReferenceContext): T {
  const rewrite = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rewrite);
    if (!isObject(value)) return value;
    if (typeof value.reference === 'string') return rewriteReference(value as Reference, ctx);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, k === 'contained' ? v : rewrite(v)]));
  };
  return rewrite(structuredClone(resource)) as T;
}

function rewriteReference(ref: Reference, ctx: EhrReferenceContext): Reference {
  const literal = ref.reference as string;
  if (literal.startsWith('#')) return ref;
  const parsed = parseResourceReference(literal);
  if (parsed && parsed.base !== '' && isOnFhirBase(ctx.ehrBaseUrl, literal)) return { ...ref, reference: parsed.typeAndId };
  const { reference: _ours, ...rest } = ref;
  const type = parsed?.typeAndId.split('/')[0];
  const participant = parsed && parsed.base === '' ? ctx.organization(parsed.typeAndId) : undefined;
  const identifier = rest.identifier ?? participant?.identifier?.[0];
  const display = rest.display ?? participant?.display;
  return {
    ...rest,
    ...(type && !rest.type ? { type: type as Reference['type'] } : {}),
    ...(identifier ? { identifier: { ...identifier } as Identifier } : {}),
    ...(display ? { display } : {}),
  };
}
