/**
 * Valid shapes with hostile values: a valid request body, changed by a few mutations. A
 * mutation is data (printable, replayable from fast-check's seed and path); it picks its place
 * by an index taken modulo the places the body has at that point, so any index is meaningful.
 */
import fc from 'fast-check';
import { type Hostile, hostileKey, hostileText, hostileValue, RawJson, storableText } from './hostile.ts';

export type Mutation =
  /** Replace the value at place `at` (the whole body included) with `value`. */
  | { op: 'set'; at: number; value: Hostile }
  /** Put hostile text before, after or inside the string at `at`: the field keeps its type. */
  | { op: 'affix'; at: number; text: string; where: 'prefix' | 'suffix' | 'infix' }
  /** Add a field named `key` to the object at `at`. */
  | { op: 'addKey'; at: number; key: string; value: Hostile }
  /** Remove the field or array item at `at`. */
  | { op: 'drop'; at: number };

type Json = Hostile;
type Place = (string | number)[];

/** Every place in `value`: the root, then each field and item, depth first. */
function places(value: Json, at: Place = [], out: Place[] = []): Place[] {
  out.push(at);
  if (value instanceof RawJson || value === null || typeof value !== 'object') return out;
  if (Array.isArray(value)) value.forEach((v, i) => places(v, [...at, i], out));
  else for (const k of Object.keys(value)) places(value[k] as Json, [...at, k], out);
  return out;
}

function get(value: Json, at: Place): Json {
  return at.reduce<Json>((v, k) => (v as Record<string | number, Json>)[k] as Json, value);
}

/** Sets an own property, `__proto__` included (plain assignment would change the prototype instead). */
function define(target: object, key: string | number, value: Json): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function put(root: Json, at: Place, value: Json): Json {
  if (at.length === 0) return value;
  define(get(root, at.slice(0, -1)) as object, at[at.length - 1] as string | number, value);
  return root;
}

/** A deep copy; raw fragments are immutable and shared. Mutations never touch the values fast-check generated. */
function copy(value: Json): Json {
  if (value instanceof RawJson || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(copy);
  const out = {};
  for (const k of Object.keys(value)) define(out, k, copy(value[k] as Json));
  return out;
}

function isObject(v: Json): v is { [key: string]: Hostile } {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof RawJson);
}

/** Applies `mutations` in order to a copy of `base`. */
export function mutate(base: Json, mutations: readonly Mutation[]): Json {
  let body = copy(base);
  for (const m of mutations) {
    const all = places(body);
    if (m.op === 'set') {
      body = put(body, all[m.at % all.length] as Place, copy(m.value));
    } else if (m.op === 'affix') {
      const strings = all.filter((p) => typeof get(body, p) === 'string');
      if (!strings.length) continue;
      const at = strings[m.at % strings.length] as Place;
      const s = get(body, at) as string;
      const half = Math.floor(s.length / 2);
      body = put(body, at, m.where === 'prefix' ? m.text + s : m.where === 'suffix' ? s + m.text : s.slice(0, half) + m.text + s.slice(half));
    } else if (m.op === 'addKey') {
      const objects = all.filter((p) => isObject(get(body, p)));
      if (!objects.length) continue;
      define(get(body, objects[m.at % objects.length] as Place) as object, m.key, copy(m.value));
    } else {
      const inner = all.filter((p) => p.length > 0);
      if (!inner.length) continue;
      const at = inner[m.at % inner.length] as Place;
      const parent = get(body, at.slice(0, -1));
      const key = at[at.length - 1] as string | number;
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete (parent as Record<string, Json>)[key];
    }
  }
  return body;
}

/** JSON text of a value that may hold raw fragments; lone surrogates come out as `\udXXX` escapes, as JSON.stringify writes them. */
export function toJsonText(value: Json): string {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJsonText).join(',')}]`;
  if (value !== null && typeof value === 'object') return `{${Object.keys(value).map((k) => `${JSON.stringify(k)}:${toJsonText(value[k] as Json)}`).join(',')}}`;
  return JSON.stringify(value);
}

/**
 * One or two mutations, field names drawn from the base's own (`known`) for look-alikes. Text the
 * store can hold, put into a field that keeps its type, is the most frequent: those cases pass
 * the schema and reach the use case, the validator and the store.
 */
export function mutations(known: readonly string[]): fc.Arbitrary<Mutation[]> {
  const at = fc.nat({ max: 10_000 });
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ op: fc.constant('set' as const), at, value: hostileValue }) },
    { weight: 5, arbitrary: fc.record({ op: fc.constant('affix' as const), at, text: fc.oneof({ weight: 3, arbitrary: storableText }, { weight: 1, arbitrary: hostileText }), where: fc.constantFrom('prefix' as const, 'suffix' as const, 'infix' as const) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('addKey' as const), at, key: hostileKey(known), value: hostileValue }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('drop' as const), at }) },
  );
  return fc.array(mutation, { minLength: 1, maxLength: 2 });
}

/** Every field name in `value` (for look-alike keys). */
export function fieldNames(value: unknown, out = new Set<string>()): string[] {
  if (Array.isArray(value)) for (const v of value) fieldNames(v, out);
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      out.add(k);
      fieldNames(v, out);
    }
  }
  return [...out];
}
