/**
 * Text the service cannot keep. PostgreSQL `text` and `jsonb` cannot hold U+0000 (the insert
 * fails), and a lone surrogate (U+D800 to U+DFFF without its pair, as JSON's `\ud800` escape
 * produces) is not Unicode: `jsonb` refuses its escape and UTF-8 cannot encode it. Both are
 * refused where they come in, naming where they were, instead of failing at the database.
 */
export function unstorableText(text: string): string | undefined {
  if (text.includes('\u0000')) return 'contains a NUL character (U+0000), which the service cannot store';
  if (!text.isWellFormed()) return 'contains a lone surrogate (U+D800 to U+DFFF without its pair), which is not Unicode text';
  return undefined;
}

/** C0 control characters other than tab, LF and CR (and NUL, refused above). */
const CONTROL = /[\u0001-\u0008\u000b\u000c\u000e-\u001f]/;

/**
 * Text a FHIR resource cannot hold: besides what the store refuses, the C0 control characters
 * other than tab, LF and CR (FHIR R4 `string`, https://hl7.org/fhir/R4/datatypes.html#string;
 * the validator every write goes through refuses them). Request bodies end up in FHIR resources
 * (a question, a reason, a note), so their text is held to this, at the edge, naming the field,
 * instead of failing validation after the use case built the resource (a 500).
 */
export function unfitForFhir(text: string): string | undefined {
  const unstorable = unstorableText(text);
  if (unstorable) return unstorable;
  const control = CONTROL.exec(text)?.[0];
  if (control) return `contains a control character (U+${control.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}), which FHIR text cannot hold`;
  return undefined;
}

export interface UnstorableField {
  /** Where: `['documents', 0, 'reference']`; empty for the top level. */
  path: PropertyKey[];
  reason: string;
}

/** More findings than this are not listed: the first ones tell the client what to fix. */
const MAX_FINDINGS = 20;

/** A value still to look at, and how it was reached (a linked path: no copies per level). */
interface Pending {
  value: unknown;
  key?: PropertyKey;
  parent?: Pending;
}

function pathOf(node: Pending): PropertyKey[] {
  const path: PropertyKey[] = [];
  for (let n: Pending | undefined = node; n?.parent; n = n.parent) path.push(n.key as PropertyKey);
  return path.reverse();
}

/**
 * Every string and field name in a parsed JSON value that `unfitForFhir` refuses (up to
 * MAX_FINDINGS), with its path. A bad field name is reported at the object holding it. The
 * walk is iterative: JSON.parse accepts nesting far deeper than the call stack.
 */
export function findUnstorableText(value: unknown): UnstorableField[] {
  const found: UnstorableField[] = [];
  const pending: Pending[] = [{ value }];
  while (pending.length && found.length < MAX_FINDINGS) {
    const node = pending.pop() as Pending;
    const v = node.value;
    if (typeof v === 'string') {
      const reason = unfitForFhir(v);
      if (reason) found.push({ path: pathOf(node), reason });
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) pending.push({ value: v[i], key: i, parent: node });
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, item] = entries[i] as [string, unknown];
        const reason = unfitForFhir(key);
        if (reason) found.push({ path: pathOf(node), reason: `has a field name that ${reason}` });
        else pending.push({ value: item, key, parent: node });
      }
    }
  }
  return found.slice(0, MAX_FINDINGS);
}
