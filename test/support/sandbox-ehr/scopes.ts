/**
 * SMART system scopes as the sandbox EHR grants and enforces them, written apart from the
 * service's own scope code so that the sandbox stays an independent judge of it.
 *
 * v1 `system/Type.read` (r s), `.write` (c u d), `.*` (all); v2 `system/Type.cruds` letters.
 * `Type` may be `*`. Interactions: r read (also vread, history, raw Binary), s search (paging
 * links too), c create (a conditional create also needs s), u update, d delete.
 * Spec: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
 */
import { DEFAULT_OUTBOUND_SCOPE } from '../../../src/outbound/outbound-scope.ts';

export type Interaction = 'c' | 'r' | 'u' | 'd' | 's';

const LETTERS: readonly Interaction[] = ['c', 'r', 'u', 'd', 's'];
const V1: Record<string, readonly Interaction[]> = { read: ['r', 's'], write: ['c', 'u', 'd'], '*': LETTERS };

/** A granted scope: resource type (or `*`) and its interactions. */
export interface Grant {
  text: string;
  type: string;
  interactions: Set<Interaction>;
}

/** One interaction a request needs, e.g. `{ type: 'DocumentReference', interaction: 'c' }`. */
export interface Need {
  type: string;
  interaction: Interaction;
}

/**
 * What a hospital registers for this service by default: the service's own default outbound
 * scope plus Organization read and StructureDefinition read/search.
 */
export const DEFAULT_REGISTERED_SCOPE = `${DEFAULT_OUTBOUND_SCOPE} system/Organization.r system/StructureDefinition.rs`;

/** Parses one scope; undefined for anything that is not a `system/` resource scope. */
export function parseGrant(text: string): Grant | undefined {
  const m = /^system\/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)$/.exec(text);
  if (!m || m[2] === '') return undefined;
  const letters = V1[m[2]!] ?? (m[2]!.split('') as Interaction[]);
  return { text, type: m[1]!, interactions: new Set(letters) };
}

/** The scopes of a space-separated scope string that parse. */
export function parseGrants(scope: string): Grant[] {
  return scope.split(/\s+/).filter(Boolean).map(parseGrant).filter((g): g is Grant => g !== undefined);
}

/**
 * The scope string granted for `requested` under `registered`: each requested scope narrowed to
 * what a registered scope allows (`system/*.rs` under `system/Patient.r` gives
 * `system/Patient.r`), written in v2 letters unless granted as asked. No request: the
 * registration. Empty when nothing overlaps.
 */
export function grantScope(requested: string | null, registered: string): string {
  const allowed = parseGrants(registered);
  if (requested === null || requested.trim() === '') return allowed.map((g) => g.text).join(' ');
  const out: string[] = [];
  for (const r of parseGrants(requested)) {
    for (const a of allowed) {
      const type = r.type === '*' ? a.type : a.type === '*' || a.type === r.type ? r.type : undefined;
      if (!type) continue;
      const letters = LETTERS.filter((i) => r.interactions.has(i) && a.interactions.has(i));
      if (letters.length === 0) continue;
      const text = type === r.type && letters.length === r.interactions.size ? r.text : `system/${type}.${letters.join('')}`;
      if (!out.includes(text)) out.push(text);
    }
  }
  return out.join(' ');
}

/** Whether `grants` allow `need`. */
export function allows(grants: readonly Grant[], need: Need): boolean {
  return grants.some((g) => (g.type === '*' || g.type === need.type) && g.interactions.has(need.interaction));
}

/** The first need `grants` do not allow, written as the scope that would allow it. */
export function missingScope(grants: readonly Grant[], needs: readonly Need[]): string | undefined {
  const need = needs.find((n) => !allows(grants, n));
  return need && `system/${need.type}.${need.interaction}`;
}

interface BundleEntryRequest {
  request?: { method?: string; url?: string; ifNoneExist?: string };
}

/**
 * What a FHIR REST request needs (path below the FHIR base, with query). `[]` for what is
 * public or not a resource interaction. Batch and transaction entries are judged one by one.
 */
export function requestNeeds(method: string, path: string, headers: Record<string, string | string[] | undefined>, body: unknown): Need[] {
  const url = new URL(path, 'http://sandbox.invalid');
  const segments = url.pathname.split('/').filter(Boolean);
  const [type, id] = segments;
  if (!type) {
    if (method !== 'POST' || !body || typeof body !== 'object') return [];
    const entries = ((body as { entry?: BundleEntryRequest[] }).entry ?? []);
    return entries.flatMap((e) => (e.request?.method && e.request.url ? requestNeeds(e.request.method, e.request.url, { 'if-none-exist': e.request.ifNoneExist }, undefined) : []));
  }
  if (!/^[A-Z][A-Za-z]+$/.test(type)) return [];
  const need = (...letters: Interaction[]): Need[] => letters.map((interaction) => ({ type, interaction }));
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (id === '_search' || id === undefined) return need('s');
      return need('r');
    case 'POST':
      if (id === '_search') return need('s');
      return headers['if-none-exist'] ? need('c', 's') : need('c');
    case 'PUT':
    case 'PATCH':
      return id === undefined ? need('u', 's') : need('u');
    case 'DELETE':
      return id === undefined ? need('d', 's') : need('d');
    default:
      return [];
  }
}
