/**
 * SMART on FHIR system scopes: parsing, granting (requested ∩ allowed) and checking.
 *
 * Both syntaxes are understood (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
 * - v1: `system/Task.read` (= r+s), `system/Task.write` (= c+u+d), `system/Task.*` (= all);
 * - v2: `system/Task.rs`, `system/Task.cruds`: letters c r u d s, each at most once, in that order.
 * The resource type may be `*` (every resource type). Only the `system/` context is used by
 * SMART Backend Services; `patient/` and `user/` scopes are refused as unsupported, and v2
 * granular scopes (`?category=...`) are not supported.
 */

export type Interaction = 'c' | 'r' | 'u' | 'd' | 's';

const ALL_INTERACTIONS: readonly Interaction[] = ['c', 'r', 'u', 'd', 's'];

export interface SmartScope {
  /** The scope as written. */
  readonly text: string;
  /** A FHIR resource type, or `*`. */
  readonly resourceType: string;
  readonly interactions: ReadonlySet<Interaction>;
}

const SCOPE_PATTERN = /^system\/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)$/;

const V1: Record<string, readonly Interaction[]> = {
  read: ['r', 's'],
  write: ['c', 'u', 'd'],
  '*': ALL_INTERACTIONS,
};

/** Parses one scope; `undefined` when it is not a supported SMART system scope. */
export function parseScope(text: string): SmartScope | undefined {
  const m = SCOPE_PATTERN.exec(text);
  if (!m) return undefined;
  const resourceType = m[1] as string;
  const perms = m[2] as string;
  const letters = V1[perms] ?? (perms.split('') as Interaction[]);
  if (letters.length === 0) return undefined;
  return { text, resourceType, interactions: new Set(letters) };
}

/** Splits a space-delimited OAuth `scope` string (RFC 6749 §3.3) into its scopes. */
export function splitScopes(scope: string | undefined): string[] {
  return (scope ?? '').split(/\s+/).filter((s) => s.length > 0);
}

/** The scopes of `scopes` that are not supported SMART system scopes. */
export function invalidScopes(scopes: readonly string[]): string[] {
  return scopes.filter((s) => parseScope(s) === undefined);
}

/** Writes a scope in v2 syntax (`system/Task.rs`). */
export function formatScope(resourceType: string, interactions: ReadonlySet<Interaction>): string {
  return `system/${resourceType}.${ALL_INTERACTIONS.filter((i) => interactions.has(i)).join('')}`;
}

function covers(outer: SmartScope, inner: SmartScope): boolean {
  if (outer.resourceType !== '*' && outer.resourceType !== inner.resourceType) return false;
  for (const i of inner.interactions) if (!outer.interactions.has(i)) return false;
  return true;
}

/** The part of `requested` that `allowed` permits, or undefined when they do not overlap. */
function intersect(requested: SmartScope, allowed: SmartScope): SmartScope | undefined {
  let resourceType: string;
  if (allowed.resourceType === '*' || allowed.resourceType === requested.resourceType) resourceType = requested.resourceType;
  else if (requested.resourceType === '*') resourceType = allowed.resourceType;
  else return undefined;
  const interactions = new Set([...requested.interactions].filter((i) => allowed.interactions.has(i)));
  if (interactions.size === 0) return undefined;
  // Keep the client's own wording when it is granted in full (a v1 client gets v1 scopes back).
  const whole = resourceType === requested.resourceType && interactions.size === requested.interactions.size;
  const text = whole ? requested.text : formatScope(resourceType, interactions);
  return { text, resourceType, interactions };
}

/**
 * Grants the requested scopes as far as the client's registration allows: each requested scope
 * is intersected with every allowed scope (so `system/*.cruds` requested against an allowed
 * `system/Task.rs` yields `system/Task.rs`). With no requested scopes the allowed set is granted,
 * as RFC 6749 §3.3 lets a server apply a pre-defined default. Unparseable scopes on either side
 * are ignored; the caller refuses them first (see `invalidScopes`). An empty result means the
 * request must fail with `invalid_scope`.
 */
export function grantScopes(requested: readonly string[] | undefined, allowed: readonly string[]): string[] {
  const allowedParsed = allowed.map(parseScope).filter((s): s is SmartScope => s !== undefined);
  if (requested === undefined || requested.length === 0) return dedupe(allowedParsed);
  const granted: SmartScope[] = [];
  for (const r of requested.map(parseScope)) {
    if (!r) continue;
    for (const a of allowedParsed) {
      const g = intersect(r, a);
      if (g) granted.push(g);
    }
  }
  return dedupe(granted);
}

/** Removes duplicates and scopes another granted scope already covers; keeps first-seen order. */
function dedupe(scopes: readonly SmartScope[]): string[] {
  const kept: SmartScope[] = [];
  scopes.forEach((s, idx) => {
    const coveredByOther = scopes.some((o, j) => j !== idx && covers(o, s) && (!covers(s, o) || j < idx));
    if (!coveredByOther) kept.push(s);
  });
  return kept.map((s) => s.text);
}

/**
 * Whether the granted scopes permit `interaction` on `resourceType`
 * (c create, r read, u update, d delete, s search).
 */
export function hasScope(granted: readonly string[], resourceType: string, interaction: Interaction): boolean {
  for (const text of granted) {
    const s = parseScope(text);
    if (s && (s.resourceType === '*' || s.resourceType === resourceType) && s.interactions.has(interaction)) return true;
  }
  return false;
}
