import { z } from 'zod';
import { invalidScopes, splitScopes } from '../auth/scopes.ts';

/**
 * The network file (NETWORK_FILE): the organizations the service works with, their roles,
 * the client systems they call us with (SMART Backend Services registrations) and the FHIR
 * endpoints we call them on.
 *
 * Objects are loose (unknown members are kept) so later capabilities can add fields such as
 * `fhir.tokenUrl` or `notify` without breaking older files. Rules that span fields or entries
 * (unique ids, exactly one of jwks/jwksUri, no private key material, referrers need a FHIR
 * endpoint, outbound key rotation dates in order) live in `checkNetworkRules`, which runs on the raw JSON so every bad entry is named
 * even when its neighbours are malformed too.
 */

export const ROLES = ['referrer', 'consultant', 'physician', 'auditor', 'admin', 'operator'] as const;
export const RoleSchema = z.enum(ROLES);
export type Role = z.infer<typeof RoleSchema>;

/** A Practitioner reference: `Practitioner/<id>` or an absolute URL ending so. */
export const PRACTITIONER_REFERENCE = /(^|\/)Practitioner\/[A-Za-z0-9\-.]{1,64}$/;

/** JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4). */
export const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

const SlugSchema = z
  .string()
  .regex(/^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/, 'must be a slug: lower-case letters, digits and hyphens (at most 64)');

/**
 * An identifier of the participant's organization that other systems know it by (a national
 * registry number, an NPI, an ODS code...): every EHR has its own ids for the organizations it
 * stores, so a participant is recognised in an EHR's resources by these, never by our own id.
 */
export const OrganizationIdentifierSchema = z.looseObject({
  system: z.string().regex(/^(https?:\/\/\S+|urn:(oid|uuid):\S+)$/, 'must be an absolute URI (http(s)://..., urn:oid:..., urn:uuid:...)'),
  value: z.string().min(1).max(256),
});

const CodingSchema = z.looseObject({
  system: z.url().optional(),
  code: z.string().min(1),
  display: z.string().min(1).optional(),
});

/**
 * A public JWK as SMART requires it: `kty` and `kid`, bare key members
 * (https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html#registering-a-client-communicating-public-keys).
 */
const PublicJwkSchema = z.looseObject({
  kty: z.enum(['RSA', 'EC']),
  kid: z.string().min(1),
  alg: z.enum(['RS384', 'ES384']).optional(),
  use: z.literal('sig').optional(),
  crv: z.string().optional(),
  x: z.string().optional(),
  y: z.string().optional(),
  n: z.string().optional(),
  e: z.string().optional(),
});

/**
 * A key date of the network file: an ISO 8601 date (`2027-03-01`, midnight UTC) or a date-time
 * with its offset (`2027-03-01T09:00:00+01:00`). Returns epoch milliseconds, or undefined when it is not one.
 */
export function parseKeyDate(value: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/.exec(value);
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  // Date.UTC rolls 2027-02-30 over to March: a day that does not exist is not a date.
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined;
  if (m[4] === undefined) return date.getTime();
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

const KeyDateSchema = z.string().refine((v) => parseKeyDate(v) !== undefined, 'must be a date (2027-03-01) or a date-time with its offset (2027-03-01T09:00:00Z)');

/**
 * One of our outbound private keys at an EHR (`fhir.keys`), for rotation: a new key is
 * published (at the client JWK Set URL) before it signs, and an old one stays published after
 * it stops signing, until `retireAfter`.
 */
export const OutboundKeyEntrySchema = z.looseObject({
  /** Path (relative to the network file) of the private key: a JWK JSON file or a PKCS#8 PEM; RS384 or ES384. */
  file: z.string().min(1),
  /** From when the key may sign; until then it is only published. Without it, from the start. */
  signFrom: KeyDateSchema.optional(),
  /** After this the key is neither published nor used. Without it, never retired. */
  retireAfter: KeyDateSchema.optional(),
});

const ScopeStringSchema = z.string().superRefine((value, ctx) => {
  const scopes = splitScopes(value);
  const bad = invalidScopes(scopes);
  if (scopes.length === 0) ctx.addIssue({ code: 'custom', message: 'must list at least one scope' });
  else if (bad.length > 0) ctx.addIssue({ code: 'custom', message: `not a SMART system scope: ${bad.join(', ')}` });
});

export const ClientRegistrationSchema = z.looseObject({
  /** OAuth client_id; unique across the whole network file. */
  clientId: z.string().regex(/^[A-Za-z0-9._~-]{1,128}$/, 'must be 1-128 characters of A-Z a-z 0-9 . _ ~ -'),
  /** The client's public keys, registered directly. */
  jwks: z.looseObject({ keys: z.array(PublicJwkSchema).min(1, 'must hold at least one key') }).optional(),
  /** Where the client publishes its public keys (preferred by SMART: lets the client rotate keys). */
  jwksUri: z.url({ protocol: /^https?$/ }).optional(),
  /** Space-separated SMART system scopes the client may be granted. */
  scope: ScopeStringSchema,
});

export const ParticipantSchema = z.looseObject({
  id: SlugSchema,
  name: z.string().min(1),
  roles: z.array(RoleSchema).min(1, 'must list at least one role'),
  organization: z.looseObject({
    reference: z.string().regex(/^Organization\/[A-Za-z0-9\-.]{1,64}$/, 'must be Organization/<id>'),
    display: z.string().min(1).optional(),
    /** How other systems identify it; at least one for a consultant (consents name it so). */
    identifier: z.array(OrganizationIdentifierSchema).optional(),
  }),
  specialties: z.array(CodingSchema).optional(),
  clients: z.array(ClientRegistrationSchema),
  /** The participant's FHIR server: records are pulled from it and opinions posted back to it. */
  fhir: z
    .looseObject({
      baseUrl: z.url({ protocol: /^https?$/ }),
      /** SMART Backend Services token endpoint; without it calls carry no token (sandboxes). */
      tokenUrl: z.url({ protocol: /^https?$/ }).optional(),
      /** Our client_id registered at that EHR. */
      clientId: z.string().min(1).optional(),
      /** Scopes to request, space-separated, in the EHR's own vocabulary. */
      scope: z.string().min(1).optional(),
      /** Path (relative to the network file) of our private key: a JWK JSON file or a PKCS#8 PEM; RS384 or ES384. */
      privateKeyFile: z.string().min(1).optional(),
      /** Our private keys, for rotation (instead of privateKeyFile); see OutboundKeyEntrySchema. */
      keys: z.array(OutboundKeyEntrySchema).min(1, 'must list at least one key').optional(),
      /** Timeout of each call to this EHR, in milliseconds. */
      timeoutMs: z.number().int().min(100).max(600_000).optional(),
      /**
       * `meta.profile` on what is posted to this EHR: `omit` (default) or `keep`. An EHR that
       * resolves every listed profile with the caller's rights (Medplum) refuses the write unless
       * it granted StructureDefinition read, so `keep` adds `system/StructureDefinition.rs` to
       * the scope the service needs there.
       */
      profiles: z.enum(['keep', 'omit']).optional(),
      /**
       * This EHR's own ids of other participants' organizations (`participant id` ->
       * `Organization/<id on this EHR>`), for an EHR whose Organization resources carry none of
       * the participant's identifiers.
       */
      aliases: z.record(SlugSchema, z.string().regex(/^Organization\/[A-Za-z0-9\-.]{1,64}$/, 'must be Organization/<id on this EHR>')).optional(),
    })
    .optional(),
  /**
   * How a consulting clinic receives its record set: `pull` (default: it reads the record set
   * from this service) or `push`: once the record set is assembled and consent allows, the
   * service also POSTs it, as a FHIR transaction, to the clinic's own server (`fhir.baseUrl`,
   * SMART Backend Services when `fhir.tokenUrl` is set). Needs the consultant role and a `fhir` block.
   */
  recordSet: z.enum(['pull', 'push']).optional(),
  /**
   * For a consulting clinic: how many follow-up questions a referrer may ask it after its
   * opinion; replaces the service's `FOLLOW_UP_LIMIT` for this clinic.
   */
  followUpLimit: z.number().int().min(0).max(50).optional(),
  /**
   * For a participant with the `physician` role (a primary physician's app or portal): whose
   * referrals it may read, and for which clinicians. It sees a referral only when the referral
   * was placed by `referrer` and its requester is one of `practitioners`.
   */
  actsFor: z
    .looseObject({
      /** The referrer participant (id) whose referrals these clinicians place. */
      referrer: SlugSchema,
      /** The clinicians, as the referrer's EHR knows them: `Practitioner/<id>` (on that EHR) or an absolute URL. */
      practitioners: z.array(z.string().regex(PRACTITIONER_REFERENCE, 'must be a Practitioner reference (Practitioner/<id> or an absolute URL)')).min(1, 'must list at least one practitioner'),
    })
    .optional(),
  /**
   * Webhook: on every change of a Task this participant may read, the service POSTs an id-only
   * JSON notification to `url`, signed with `secret` (Standard Webhooks: HMAC-SHA256).
   */
  notify: z
    .looseObject({
      url: z.url({ protocol: /^https?$/ }),
      /** Shared secret: `whsec_<base64>` (Standard Webhooks) or any string of at least 24 characters. */
      secret: z.string().min(24, 'must be at least 24 characters (a random shared secret)'),
    })
    .optional(),
});

export const NetworkFileSchema = z.looseObject({
  _comment: z.string().optional(),
  participants: z.array(ParticipantSchema).min(1, 'must list at least one participant'),
});

export type NetworkFile = z.infer<typeof NetworkFileSchema>;
export type Participant = z.infer<typeof ParticipantSchema>;
export type ClientRegistration = z.infer<typeof ClientRegistrationSchema>;
export type Coding = z.infer<typeof CodingSchema>;

export interface NetworkProblem {
  path: (string | number)[];
  message: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** Cross-field and cross-entry rules, checked on the raw JSON (see the module comment). */
export function checkNetworkRules(raw: unknown): NetworkProblem[] {
  const problems: NetworkProblem[] = [];
  if (!isObject(raw)) return problems;
  const participantIds = new Map<string, number>();
  const clientIds = new Map<string, string>();
  const organizations = new Map<string, number>();
  const identifiers = new Map<string, number>();
  const participantIdSet = new Set(asArray(raw.participants).flatMap((p) => (isObject(p) && typeof p.id === 'string' ? [p.id] : [])));

  asArray(raw.participants).forEach((p, pi) => {
    if (!isObject(p)) return;
    const at = (...rest: (string | number)[]) => ['participants', pi, ...rest];

    if (typeof p.id === 'string') {
      const first = participantIds.get(p.id);
      if (first !== undefined) problems.push({ path: at('id'), message: `duplicate participant id "${p.id}" (also participants[${first}])` });
      else participantIds.set(p.id, pi);
    }

    // Task.owner names the Organization: two participants with one Organization would share Tasks.
    if (isObject(p.organization) && typeof p.organization.reference === 'string') {
      const first = organizations.get(p.organization.reference);
      if (first !== undefined) problems.push({ path: at('organization', 'reference'), message: `duplicate organization "${p.organization.reference}" (also participants[${first}])` });
      else organizations.set(p.organization.reference, pi);
    }

    // A consultant must be recognisable in the referring EHRs' consents by an identifier.
    const roles = asArray(p.roles);
    const orgIdentifiers = isObject(p.organization) ? asArray(p.organization.identifier) : [];
    if (roles.includes('consultant') && orgIdentifiers.length === 0) {
      problems.push({ path: at('organization', 'identifier'), message: 'is required for a participant with the consultant role (EHRs name it in consents by their own ids; it is recognised by its identifiers)' });
    }
    orgIdentifiers.forEach((id, ii) => {
      if (!isObject(id) || typeof id.system !== 'string' || typeof id.value !== 'string') return;
      const key = `${id.system}|${id.value}`;
      const first = identifiers.get(key);
      if (first !== undefined && first !== pi) problems.push({ path: at('organization', 'identifier', ii), message: `identifier ${key} also names participants[${first}]` });
      else identifiers.set(key, pi);
    });
    if (isObject(p.fhir) && isObject(p.fhir.aliases)) {
      for (const key of Object.keys(p.fhir.aliases)) {
        if (!participantIdSet.has(key)) problems.push({ path: at('fhir', 'aliases', key), message: `"${key}" is not a participant of the network` });
      }
    }

    if (roles.includes('referrer') && !(isObject(p.fhir) && p.fhir.baseUrl !== undefined)) {
      problems.push({ path: at('fhir', 'baseUrl'), message: 'is required for a participant with the referrer role (records are pulled from it and opinions posted back to it)' });
    }

    if (p.recordSet === 'push') {
      if (!roles.includes('consultant')) problems.push({ path: at('recordSet'), message: 'push is for a participant with the consultant role (its record set is pushed to its own FHIR server)' });
      if (!(isObject(p.fhir) && p.fhir.baseUrl !== undefined)) problems.push({ path: at('fhir', 'baseUrl'), message: 'is required for recordSet push (the record set is pushed to this FHIR server)' });
    }

    // A physician-only participant sees referrals through the referrer it acts for.
    if (roles.includes('physician') && !roles.includes('referrer') && !isObject(p.actsFor)) {
      problems.push({ path: at('actsFor'), message: 'is required for a participant with the physician role (the referrer and the practitioners whose referrals it may read)' });
    }
    if (isObject(p.actsFor) && typeof p.actsFor.referrer === 'string') {
      const target = asArray(raw.participants).find((q) => isObject(q) && q.id === (p.actsFor as Record<string, unknown>).referrer);
      if (!isObject(target) || !asArray(target.roles).includes('referrer')) {
        problems.push({ path: at('actsFor', 'referrer'), message: `"${p.actsFor.referrer}" is not a participant with the referrer role` });
      }
    }

    // A token endpoint is useless without the client settings to sign an assertion for it.
    if (isObject(p.fhir) && p.fhir.tokenUrl !== undefined) {
      const missing = [p.fhir.clientId === undefined ? 'clientId' : '', p.fhir.privateKeyFile === undefined && p.fhir.keys === undefined ? 'privateKeyFile (or keys)' : ''].filter(Boolean);
      if (missing.length > 0) problems.push({ path: at('fhir'), message: `tokenUrl needs ${missing.join(' and ')} (SMART Backend Services client settings)` });
    }
    if (isObject(p.fhir)) problems.push(...outboundKeyProblems(p.fhir, (...rest) => at('fhir', ...rest)));

    asArray(p.clients).forEach((c, ci) => {
      if (!isObject(c)) return;
      if (typeof c.clientId === 'string') {
        const first = clientIds.get(c.clientId);
        if (first !== undefined) problems.push({ path: at('clients', ci, 'clientId'), message: `duplicate clientId "${c.clientId}" (also ${first})` });
        else clientIds.set(c.clientId, `participants[${pi}].clients[${ci}]`);
      }
      const hasJwks = c.jwks !== undefined;
      const hasUri = c.jwksUri !== undefined;
      if (hasJwks === hasUri) {
        problems.push({ path: at('clients', ci), message: hasJwks ? 'give either jwks or jwksUri, not both' : 'needs jwks or jwksUri (the client\'s public keys)' });
      }
      if (isObject(c.jwks)) {
        asArray(c.jwks.keys).forEach((k, ki) => {
          if (isObject(k) && PRIVATE_JWK_MEMBERS.some((m) => m in k)) {
            problems.push({ path: at('clients', ci, 'jwks', 'keys', ki), message: 'private key material is not allowed' });
          }
        });
      }
    });
  });
  return problems;
}

/**
 * The rotation rules of `fhir.keys`: one way of naming keys, no file listed twice, `retireAfter`
 * after `signFrom`. Whether each file loads and whether two keys share a `kid` is known once
 * the files are read (outbound/outbound-keys.ts), at start-up too.
 */
function outboundKeyProblems(fhir: Record<string, unknown>, at: (...rest: (string | number)[]) => (string | number)[]): NetworkProblem[] {
  const problems: NetworkProblem[] = [];
  if (fhir.privateKeyFile !== undefined && fhir.keys !== undefined) problems.push({ path: at('keys'), message: 'give either privateKeyFile or keys, not both' });
  const files = new Map<string, number>();
  asArray(fhir.keys).forEach((k, ki) => {
    if (!isObject(k)) return;
    if (typeof k.file === 'string') {
      const first = files.get(k.file);
      if (first !== undefined) problems.push({ path: at('keys', ki, 'file'), message: `"${k.file}" is also keys[${first}]` });
      else files.set(k.file, ki);
    }
    const from = typeof k.signFrom === 'string' ? parseKeyDate(k.signFrom) : undefined;
    const until = typeof k.retireAfter === 'string' ? parseKeyDate(k.retireAfter) : undefined;
    if (from !== undefined && until !== undefined && until <= from) problems.push({ path: at('keys', ki, 'retireAfter'), message: 'must be later than signFrom' });
  });
  return problems;
}

/** `participants[1] (lakeside-consults).clients[0].jwks.keys[0]`: the path with the participant's id when it has one. */
export function formatProblemPath(path: readonly PropertyKey[], raw: unknown): string {
  let out = '';
  path.forEach((seg, i) => {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
    if (i === 1 && path[0] === 'participants' && typeof seg === 'number' && isObject(raw)) {
      const p = asArray(raw.participants)[seg];
      if (isObject(p) && typeof p.id === 'string' && p.id !== '') out += ` (${p.id})`;
    }
  });
  return out || '(file)';
}
