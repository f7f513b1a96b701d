/**
 * Prints an access token for one of the EXAMPLE clients (examples/keys), obtained the way a
 * real EHR would: a signed client assertion POSTed to the service's token endpoint.
 *
 *   TOKEN=$(npm run -s token -- st-olaf-ehr)
 *
 * SERVICE_URL (default http://localhost:8080) must equal the service's PUBLIC_URL.
 */
import { clientList, exampleClients, fail, isUnreachable, SERVICE_UNREACHABLE, SERVICE_URL } from './cli-help.ts';
import { getAccessToken } from '../test/support/tokens.ts';

const USAGE = `Usage: npm run -s token -- [client-id]

Prints an access token from the service at SERVICE_URL (now ${SERVICE_URL}; it must equal the
service's PUBLIC_URL) for a client of the EXAMPLE network, signed with its key in examples/keys/.
Default client id: st-olaf-ehr.

  TOKEN=$(npm run -s token -- st-olaf-ehr)
  curl -s ${SERVICE_URL}/participants -H "Authorization: Bearer $TOKEN"

Client ids:
${clientList()}
`;

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (args.length > 1 || args.some((a) => a.startsWith('-'))) fail(`unexpected arguments: ${args.join(' ')}\n\n${USAGE}`, 2);
const clientId = args[0] ?? 'st-olaf-ehr';
if (!exampleClients().some((c) => c.clientId === clientId)) fail(`unknown client id ${JSON.stringify(clientId)}; the example network's client ids:\n${clientList()}`, 2);

try {
  process.stdout.write(`${await getAccessToken(SERVICE_URL, clientId)}\n`);
} catch (err) {
  fail(isUnreachable(err) ? SERVICE_UNREACHABLE : (err as Error).message);
}
