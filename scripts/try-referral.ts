/**
 * A referral round trip against a running service (`npm start` in another terminal):
 * token -> POST /second-opinions -> GET summary -> FHIR read and search, as the referring
 * EHR and then as a consultant. Uses the EXAMPLE network's keys. The referral names the
 * synthetic chart of the sandbox EHR (`npm run sandbox` in a third terminal), found there by the
 * patient's identifier: the sandbox gives its records ids of its own.
 *
 *   npm run try            (SERVICE_URL defaults to http://localhost:8080, SANDBOX_URL to http://127.0.0.1:8090: the sandbox's token URL, exactly)
 *   npm run -s try -- --chart   only prints the sandbox chart's ids as shell variables
 *                               (PATIENT_ID, PRACTITIONER_ID, CONSENT_ID, OP_NOTE_ID), for `eval` and curl
 */
import { getAccessToken as tokenFor } from '../test/support/tokens.ts';
import { makeSecondOpinionRequest } from '../test/support/referrals.ts';
import { findSandboxChart } from '../test/support/sandbox-ehr/find-chart.ts';
import { fail, isUnreachable, SANDBOX_UNREACHABLE, SANDBOX_URL, SERVICE_UNREACHABLE, SERVICE_URL } from './cli-help.ts';

const USAGE = `Usage: npm run try [-- --chart]

With the sandbox EHR (npm run sandbox) and the service (npm start) running, makes one referral
as the EXAMPLE referrer st-olaf-ehr and reads it back, as the referrer and as a consultant.
  --chart   only print the sandbox chart's ids as shell variables (PATIENT_ID, PRACTITIONER_ID,
            CONSENT_ID, OP_NOTE_ID), for eval and curl: eval "$(npm run -s try -- --chart)"
SERVICE_URL: the service (now ${SERVICE_URL}); SANDBOX_URL: the sandbox EHR (now ${SANDBOX_URL}).
`;
const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const unknown = args.filter((a) => a !== '--chart');
if (unknown.length > 0) fail(`unexpected arguments: ${unknown.join(' ')}\n\n${USAGE}`, 2);

const base = SERVICE_URL;
// Any failure is one line: which server cannot be reached and what to start, or what went wrong.
process.on('uncaughtException', (err) => fail(isUnreachable(err) ? SERVICE_UNREACHABLE : `npm run try failed: ${err.message}`));
const chart = await findSandboxChart(SANDBOX_URL).catch((err: unknown) => fail(isUnreachable(err) ? SANDBOX_UNREACHABLE : `the sandbox EHR at ${SANDBOX_URL}: ${(err as Error).message}`));
const getAccessToken = (url: string, clientId: string) => tokenFor(url, clientId).catch((err: unknown) => fail(isUnreachable(err) ? SERVICE_UNREACHABLE : (err as Error).message));
if (process.argv.includes('--chart')) {
  process.stdout.write(`PATIENT_ID=${chart.patientId}\nPRACTITIONER_ID=${chart.practitionerId}\nCONSENT_ID=${chart.consentId}\nOP_NOTE_ID=${chart.documents.find((d) => d.key === 'op-note-2024')?.id ?? ''}\n`);
  process.exit(0);
}

async function call(token: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; location: string | null }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  }).catch((err: unknown) => fail(isUnreachable(err) ? SERVICE_UNREACHABLE : `${method} ${path}: ${(err as Error).message}`));
  return { status: res.status, json: await res.json(), location: res.headers.get('location') };
}

function show(step: string, value: unknown): void {
  process.stdout.write(`\n== ${step}\n${JSON.stringify(value, null, 2)}\n`);
}

const referrer = await getAccessToken(base, 'st-olaf-ehr');
show('1. token for st-olaf-ehr (referrer)', { access_token: `${referrer.slice(0, 24)}…` });

const request = makeSecondOpinionRequest({ consultants: ['lakeside-consults', 'riverside-imaging'] }, chart);
const created = await call(referrer, 'POST', '/second-opinions', request);
const body = created.json as { id: string; serviceRequest: { id: string }; tasks: { id: string; owner: { display: string }; status: string; restriction: { period: { end: string } } }[] };
show(`2. POST /second-opinions -> ${created.status} Location: ${created.location}`, {
  id: body.id,
  tasks: body.tasks?.map((t) => ({ id: t.id, owner: t.owner.display, status: t.status, due: t.restriction.period.end })),
});

const again = await call(referrer, 'POST', '/second-opinions', request);
show(`3. the same request again -> ${again.status} (idempotent)`, { id: (again.json as { id: string }).id });

const summary = await call(referrer, 'GET', `/second-opinions/${body.id}`);
show(`4. GET /second-opinions/${body.id} -> ${summary.status}`, summary.json);

const search = await call(referrer, 'GET', `/fhir/Task?focus=ServiceRequest/${body.id}`);
show(`5. GET /fhir/Task?focus=ServiceRequest/${body.id} -> ${search.status}`, {
  total: (search.json as { entry?: unknown[] }).entry?.length,
});

const consultant = await getAccessToken(base, 'lakeside-worklist');
const worklist = await call(consultant, 'GET', '/fhir/Task?owner=Organization/lakeside&status=requested&_count=5');
show(`6. as lakeside-worklist: GET /fhir/Task?owner=Organization/lakeside&status=requested -> ${worklist.status}`, {
  tasks: (worklist.json as { entry?: { resource: { id: string } }[] }).entry?.map((e) => e.resource.id),
});
const other = await call(consultant, 'GET', `/fhir/Task/${body.tasks[1]?.id}`);
show(`7. as lakeside-worklist: another clinic's Task -> ${other.status}`, other.json);
