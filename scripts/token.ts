/**
 * Prints an access token for one of the EXAMPLE clients (examples/keys), obtained the way a
 * real EHR would: a signed client assertion POSTed to the service's token endpoint.
 *
 *   TOKEN=$(npm run -s token -- st-olaf-ehr)
 *
 * SERVICE_URL (default http://localhost:8080) must equal the service's PUBLIC_URL.
 */
import { getAccessToken } from '../test/support/tokens.ts';

const clientId = process.argv[2] ?? 'st-olaf-ehr';
const serviceUrl = (process.env.SERVICE_URL ?? 'http://localhost:8080').replace(/\/+$/, '');
try {
  process.stdout.write(`${await getAccessToken(serviceUrl, clientId)}\n`);
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
