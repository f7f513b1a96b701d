/**
 * The checks the strictness switches (strict.ts) add in front of the FHIR API: SMART scopes per
 * interaction, StructureDefinition read for `meta.profile`, and references on write. Each
 * answers the OperationOutcome a real server answers, or undefined to let the request through.
 */
import type { FhirRepository } from '@medplum/fhir-router';
import type { OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { ApiRequest } from './fhir-api.ts';
import { checkReferences } from './references.ts';
import { allows, missingScope, parseGrants, requestNeeds } from './scopes.ts';
import type { StrictSwitches } from './strict.ts';

export interface GateContext {
  repo: FhirRepository;
  strict: StrictSwitches;
  baseUrl: string;
  /** The granted scope of the request's token; undefined when the sandbox runs without auth. */
  scope: string | undefined;
}

/** A 403 naming the scope that is missing (Medplum answers `forbidden`). */
export function forbiddenScope(text: string): OperationOutcome {
  return { resourceType: 'OperationOutcome', id: 'forbidden', issue: [{ severity: 'error', code: 'forbidden', details: { text } }] };
}

interface WriteEntry {
  resource: Resource;
}

/** The resources a request writes: its body on create/update, each entry's on a batch or transaction. */
function writtenResources(req: ApiRequest): WriteEntry[] {
  const body = req.body as (Resource & { type?: string; entry?: { resource?: Resource; request?: { method?: string } }[] }) | undefined;
  if (!body || typeof body !== 'object' || !('resourceType' in body)) return [];
  const isRoot = new URL(req.path, 'http://sandbox.invalid').pathname.split('/').filter(Boolean).length === 0;
  if (req.method === 'POST' && isRoot && body.resourceType === 'Bundle' && (body.type === 'transaction' || body.type === 'batch')) {
    return (body.entry ?? []).filter((e) => e.resource && (e.request?.method === 'POST' || e.request?.method === 'PUT')).map((e) => ({ resource: e.resource! }));
  }
  if ((req.method === 'POST' && !req.path.includes('/_search')) || req.method === 'PUT') return [{ resource: body }];
  return [];
}

/** Runs the gates the switches turn on; the first refusal wins. */
export async function strictGate(req: ApiRequest, ctx: GateContext): Promise<{ outcome: OperationOutcome; status: number } | undefined> {
  const grants = ctx.scope === undefined ? undefined : parseGrants(ctx.scope);
  if (ctx.strict.enforceScopes && grants) {
    const missing = missingScope(grants, requestNeeds(req.method, req.path, req.headers, req.body));
    if (missing) return { status: 403, outcome: forbiddenScope(`Forbidden: the access token's scope does not include ${missing}`) };
  }
  const written = writtenResources(req);
  if (ctx.strict.profileNeedsScope && grants && !allows(grants, { type: 'StructureDefinition', interaction: 'r' })) {
    const profiled = written.find((w) => w.resource.meta?.profile?.length);
    if (profiled) {
      return { status: 403, outcome: forbiddenScope(`Forbidden: resolving meta.profile ${profiled.resource.meta!.profile![0]} needs system/StructureDefinition.r`) };
    }
  }
  if (ctx.strict.checkReferences && written.length > 0) {
    const body = req.body as { entry?: { fullUrl?: string }[] };
    const bundleUrls = new Set((body.entry ?? []).map((e) => e.fullUrl).filter((u): u is string => typeof u === 'string'));
    for (const { resource } of written) {
      const outcome = await checkReferences(ctx.repo, resource, ctx.baseUrl, bundleUrls);
      if (outcome) return { status: 400, outcome };
    }
  }
  return undefined;
}
