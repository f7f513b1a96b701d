/**
 * Fuzz cases of the token endpoint (`POST /auth/token`): a valid SMART Backend Services form
 * (a freshly signed client assertion) with hostile claims, header members and form fields.
 * The plan is data; the assertion is signed when the case is sent.
 */
import fc from 'fast-check';
import type { JWK } from 'jose';
import { HOSTILE_TEXT, hostileText } from './hostile.ts';
import { encodeLoose, QUERY_VALUES } from './request-parts.ts';
import { CLIENT_ASSERTION_TYPE, loadExamplePrivateJwk, signClientAssertion } from '../tokens.ts';

type Claim = string | number | boolean | null | string[] | Record<string, never>;

export interface TokenFormPlan {
  /** Whose key signs (a registered client), and the `iss`/`sub` unless a claim says otherwise. */
  client: string;
  /** Claims to override; `undefined` removes the claim. */
  claims: Record<string, Claim | undefined>;
  /** Protected header members to override. */
  header: Record<string, Claim>;
  /** `signed` as the client would; `garbage`: not a JWT at all; `resigned`: signed by another client's key. */
  assertion: 'signed' | 'garbage' | 'resigned';
  /** Form edits, in order: set a field (first occurrence), add one (a repeat), or drop it. Values as sent (percent-encoded or not). */
  fields: { op: 'set' | 'add' | 'drop'; name: string; value: string }[];
}

export const TOKEN_CLIENTS = ['st-olaf-ehr', 'lakeside-worklist', 'audit-office-siem', 'st-olaf-physician-portal'] as const;

const claimValue: fc.Arbitrary<Claim> = fc.oneof(
  { weight: 3, arbitrary: hostileText.filter((t) => t.length < 4_096) },
  { weight: 2, arbitrary: fc.constantFrom<Claim>(1e308, -0, 2 ** 53 + 1, -1, 0, 1.5, true, null, [], {}, ['a', 'b']) },
);

const claims = fc.dictionary(fc.constantFrom('jti', 'exp', 'iat', 'nbf', 'iss', 'sub', 'aud'), fc.oneof({ weight: 4, arbitrary: claimValue }, { weight: 1, arbitrary: fc.constant(undefined) }), { maxKeys: 2 });
const header = fc.dictionary(fc.constantFrom('kid', 'alg', 'typ', 'jku', 'crit', 'x5u'), claimValue, { maxKeys: 1 });

const FIELD_VALUES: Record<string, fc.Arbitrary<string>> = {
  grant_type: fc.constantFrom('client_credentials', 'authorization_code', 'CLIENT_CREDENTIALS', '', 'client_credentials%00'),
  client_assertion_type: fc.constantFrom(encodeURIComponent(CLIENT_ASSERTION_TYPE), 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer', ''),
  client_assertion: fc.constantFrom('', 'a.b.c', 'eyJhbGciOiJub25lIn0.e30.', 'x'.repeat(20_000), '%00'),
  scope: fc.constantFrom('system%2F*.rs', 'system%2FTask.rus', 'patient%2F*.read', 'system%2F*.*', 'openid', '%20', 'system%2FServiceRequest.c+system%2FFoo.r', `${'system%2F*.rs+'.repeat(500)}`),
  practitioner: fc.constantFrom('Practitioner%2Fdr-nilsen', 'Practitioner%2Fdr-other', 'Practitioner%2F', 'Patient%2Fpat-1', 'https%3A%2F%2Fevil.example%2FPractitioner%2Fx'),
  client_id: fc.constantFrom(...TOKEN_CLIENTS, 'someone-else', ''),
};

const field = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...Object.keys(FIELD_VALUES)).chain((name) => fc.tuple(fc.constantFrom('set' as const, 'add' as const, 'drop' as const), fc.constant(name), fc.oneof({ weight: 2, arbitrary: FIELD_VALUES[name] as fc.Arbitrary<string> }, { weight: 1, arbitrary: QUERY_VALUES.hostile }))) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('add' as const), fc.constantFrom('__proto__', 'constructor', 'toString', '%E0%A4%A', 'a[b]', ''), QUERY_VALUES.hostile) },
).map(([op, name, value]) => ({ op, name, value }));

export const tokenFormPlan: fc.Arbitrary<TokenFormPlan> = fc.record({
  client: fc.constantFrom(...TOKEN_CLIENTS),
  claims,
  header,
  assertion: fc.constantFrom('signed', 'signed', 'signed', 'garbage', 'resigned'),
  fields: fc.array(field, { maxLength: 3 }),
});

const keys = new Map<string, JWK>();
async function keyOf(clientId: string): Promise<JWK> {
  if (!keys.has(clientId)) keys.set(clientId, await loadExamplePrivateJwk(clientId));
  return keys.get(clientId) as JWK;
}

/** `jwt` with header members and claims changed after signing: its signature no longer holds. */
function tampered(jwt: string, header: Record<string, Claim>, claims: Record<string, Claim | undefined>): string {
  const [h = '', p = '', signature = ''] = jwt.split('.');
  const edit = (part: string, changes: Record<string, unknown>) => {
    const json = { ...(JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>), ...changes };
    for (const [k, v] of Object.entries(changes)) if (v === undefined) delete json[k];
    return Buffer.from(JSON.stringify(json)).toString('base64url');
  };
  return `${edit(h, header)}.${edit(p, claims)}.${signature}`;
}

/**
 * The client assertion of `plan`: signed with the hostile claims and header members where jose
 * signs them; where it refuses (an `alg` that is not the key's, a claim it will not write), the
 * same values are written into a signed assertion afterwards, which the service must refuse.
 */
async function assertionOf(plan: TokenFormPlan, tokenUrl: string): Promise<string> {
  if (plan.assertion === 'garbage') return encodeLoose(HOSTILE_TEXT[plan.fields.length] ?? 'garbage');
  const signer = plan.assertion === 'resigned' ? (TOKEN_CLIENTS.find((c) => c !== plan.client) as string) : plan.client;
  const base = { clientId: plan.client, privateJwk: await keyOf(signer), tokenUrl };
  const { alg, ...header } = plan.header;
  try {
    const signed = await signClientAssertion({ ...base, claims: plan.claims, header });
    return alg === undefined ? signed : tampered(signed, { alg }, {});
  } catch {
    return tampered(await signClientAssertion(base), plan.header, plan.claims);
  }
}

/** The form body of `plan`, with an assertion signed now for `tokenUrl`. */
export async function tokenFormBody(plan: TokenFormPlan, tokenUrl: string): Promise<string> {
  const assertion = await assertionOf(plan, tokenUrl);
  const form: [string, string][] = [
    ['grant_type', 'client_credentials'],
    ['client_assertion_type', encodeURIComponent(CLIENT_ASSERTION_TYPE)],
    ['client_assertion', assertion],
  ];
  for (const { op, name, value } of plan.fields) {
    const at = form.findIndex(([n]) => n === name);
    if (op === 'drop') {
      if (at >= 0) form.splice(at, 1);
    } else if (op === 'set' && at >= 0) {
      form[at] = [name, value];
    } else {
      form.push([name, value]);
    }
  }
  return form.map(([n, v]) => `${n}=${v}`).join('&');
}
