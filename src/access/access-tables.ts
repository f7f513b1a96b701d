/**
 * The access rules as docs/security.md shows them, rendered from the data that enforces them
 * (`ROUTE_RULES`, `FHIR_TYPE_ACCESS`, `RESOURCE_AUDIENCES`), so the documentation cannot drift:
 * a test fails when the copy in docs/security.md differs (`npx tsx scripts/access-tables.ts` prints it).
 */
import { RESOURCE_AUDIENCES, type Viewer } from './resource-audiences.ts';
import { FHIR_TYPE_ACCESS, ROUTE_RULES, type RouteAccess } from './route-rules.ts';

const VIEWER_TEXT: Record<Viewer, string> = {
  referrer: 'the referrer',
  requester: 'the requesting clinician',
  consultant: 'each admitted clinic',
  'consultant-unless-blinded': 'each admitted clinic (unless blinded)',
  owner: 'the admitted clinic that owns it',
  'consultant-after-opinion': 'an admitted clinic after its own opinion',
  author: 'the clinic that wrote it',
  'later-consultant': 'a clinic of the referral that comes after it: when admitted (unless blinded), or once its own opinion is in (blinded)',
  auditor: 'auditors',
};

function who(access: RouteAccess): string {
  switch (access.kind) {
    case 'public':
      return 'anyone (no token)';
    case 'authenticated':
      return 'any participant';
    case 'fhir':
      return 'per resource type, below';
    case 'roles':
      return `${access.roles.join(' or ')}${access.scope ? `, \`system/${access.scope.type}.${access.scope.interaction}\`` : ''}${access.audit ? '; refusals audited' : ''}`;
  }
}

/** The two Markdown tables: who may call each route, and who sees each kind of resource. */
export function renderAccessTables(): string {
  const routes = ROUTE_RULES.map((r) => `| ${r.method === 'ALL' ? `other methods on \`${r.path}\`` : `\`${r.method} ${r.path}\``} | ${who(r.access)} | ${r.what} |`);
  const restricted = Object.entries(FHIR_TYPE_ACCESS).map(
    ([type, rule]) => `${type}: ${rule.roles === 'any' ? `any participant${'directory' in rule && rule.directory ? ', no scope needed (the network directory)' : ''}` : `${rule.roles.join(' or ')} only, every one`}`,
  );
  const kinds = Object.values(RESOURCE_AUDIENCES).map((a) => `| ${a.resources} | ${a.viewers.map((v) => VIEWER_TEXT[v]).join('; ')} |`);
  return [
    '| route | who may call it | what |',
    '|---|---|---|',
    ...routes,
    '',
    `FHIR reads (\`/fhir/{type}...\`) need \`system/{type}.r\` (read, vread, history) or \`.s\` (search), and return only what the caller sees (below); ${restricted.join('; ')}.`,
    '',
    '| resource | who sees it (everyone else: 404, or absent from searches) |',
    '|---|---|',
    ...kinds,
  ].join('\n');
}
