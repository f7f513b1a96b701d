/**
 * Reference helpers shared by intake, record assembly and consent checks. References to the
 * referrer's EHR arrive relative (`Patient/123`) or absolute, with or without `_history`.
 */

/** Makes a reference on the referrer's EHR absolute, so it never resolves against this service. */
export function absoluteReference(baseUrl: string, reference: string): string {
  return /^https?:\/\//i.test(reference) ? reference : `${baseUrl.replace(/\/+$/, '')}/${reference.replace(/^\/+/, '')}`;
}

/** A scheme (`https:`, `urn:`, `file:`) or a network-path reference (`//host/...`): not relative to any base. */
const NOT_RELATIVE = /^(?:[a-z][a-z0-9+.-]*:|\/\/)/i;

/**
 * Whether a reference a participant sent stays on its own FHIR server at `baseUrl`, once made
 * absolute as `absoluteReference` does: an http(s) URL with the base's origin (scheme, host,
 * port; case-insensitive) whose path continues the base's path (trailing slashes ignored; dot
 * segments resolved first, so `../` cannot climb out), without credentials, query or fragment.
 * Anything else points at another server, or at this service's neighbours
 * (`http://127.0.0.1:...`, `169.254.169.254`), and must never be fetched.
 */
export function isOnFhirBase(baseUrl: string, reference: string): boolean {
  const trimmed = reference.trim();
  let url: URL;
  let base: URL;
  try {
    url = new URL(NOT_RELATIVE.test(trimmed) ? trimmed : absoluteReference(baseUrl, trimmed));
    base = new URL(baseUrl);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  if (url.username || url.password || url.search || url.hash) return false;
  if (url.origin !== base.origin) return false;
  return url.pathname.startsWith(`${base.pathname.replace(/\/+$/, '')}/`);
}

const ABSOLUTE = /^[a-z][a-z0-9+.-]*:\/\//i;
const TYPE_ID = /(?:^|\/)([A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64})$/;

/**
 * Parses a literal reference into its server base ('' when relative) and `Type/id`, dropping
 * `_history/{v}`, query and fragment. Undefined when it is not a literal `Type/id` reference
 * (e.g. `urn:uuid:` or `#contained`).
 */
export function parseResourceReference(reference: string): { base: string; typeAndId: string } | undefined {
  const trimmed = reference.trim().replace(/[?#].*$/, '').replace(/\/_history\/[^/]+$/, '').replace(/\/+$/, '');
  const match = TYPE_ID.exec(trimmed);
  if (!match?.[1]) return undefined;
  const base = ABSOLUTE.test(trimmed) ? trimmed.slice(0, trimmed.length - match[1].length).replace(/\/+$/, '') : '';
  return { base, typeAndId: match[1] };
}

/**
 * Whether two references name the same resource: same `Type/id`, ignoring `_history`. A
 * relative reference matches an absolute one with the same `Type/id` (EHR references arrive
 * both ways); two absolute references must also have the same server base.
 */
export function sameResourceReference(a: string, b: string): boolean {
  const left = parseResourceReference(a);
  const right = parseResourceReference(b);
  if (!left || !right) return a.trim() !== '' && a.trim() === b.trim();
  if (left.typeAndId !== right.typeAndId) return false;
  return left.base === '' || right.base === '' || normalizeBase(left.base) === normalizeBase(right.base);
}

/** Scheme and host are case-insensitive, the path is not. */
function normalizeBase(base: string): string {
  try {
    return new URL(base).href.replace(/\/+$/, '');
  } catch {
    return base;
  }
}
