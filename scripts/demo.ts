/**
 * `npm run demo`: the whole system in one run. Starts the sandbox EHR (St Olaf Hospital's FHIR
 * server, synthetic chart), a second sandbox instance as Lakeside's own FHIR server,
 * Northfield's notification receiver and the service (embedded PGlite in a fresh temp directory,
 * on free ports), then walks two second-opinion referrals end to end over the service's public
 * API. Steps 2-9, the JSON API with two consulting clinics: intake, record assembly (one
 * required record missing, then supplied; each complete version pushed to Lakeside's server as
 * one transaction, retried after a lost answer without creating anything twice), a question and its answer, both
 * opinions, the post-back into the EHR, and the comparison. Steps 10-16, FHIR only: Northfield
 * subscribes to its Tasks, St Olaf's EHR posts a transaction Bundle, Northfield is notified,
 * works its Task with PUT/PATCH and completes it with a contained consult note, the opinion is
 * posted back, the referrer reads the comparison. Step 19: the concordance figures of the cases
 * run ($evaluate-measure). Each step prints what happened and which FHIR resources changed.
 *
 * Exits 0 when every step did what it should; otherwise 1 with what failed and the state the
 * referral was left in. The service, the sandbox and the temp directory are removed in every
 * case (also on Ctrl-C). Settings: DEMO_WAIT_SECONDS (longest wait for background work, default
 * 60), DEMO_TIMEOUT_SECONDS (the whole run, default 300), DEMO_LOG_LEVEL (service logs on
 * stderr, default warn). DATABASE_URL is ignored: the demo always uses the embedded store.
 */
import { clientIdOf } from '../test/support/example-network.ts';
import { ChangeTracker } from './demo/changes.ts';
import { demoEnvironment, recordConsentForBothClinics } from './demo/environment.ts';
import { DemoError, ServiceClient } from './demo/http.ts';
import { currentStep, fact, out, say, silence, step } from './demo/print.ts';
import { AUDITOR, CONSULTANT_A, CONSULTANT_B, CONSULTANT_C, REFERRER, SHORT_NAMES } from './demo/scenario.ts';
import { type FhirDemoContext, type FhirReferral, runFhirReferral } from './demo/fhir-steps.ts';
import { type DemoContext, describeReferral, type Referral, runReferral } from './demo/steps.ts';
import { runThirdOpinion } from './demo/third-opinion.ts';
import { runFollowUp } from './demo/follow-up-step.ts';
import { printConcordance } from './demo/concordance.ts';

function seconds(name: string, fallback: number): number {
  const raw = process.env[name];
  const value = raw ? Number(raw) : fallback;
  if (!Number.isFinite(value) || value <= 0) {
    process.stderr.write(`${name} must be a positive number of seconds, got ${JSON.stringify(raw)}\n`);
    process.exit(2);
  }
  return value * 1000;
}

const WAIT_MS = seconds('DEMO_WAIT_SECONDS', 60);
const TOTAL_MS = seconds('DEMO_TIMEOUT_SECONDS', 300);
const startedAt = performance.now();
const environment = demoEnvironment();
const referral: Partial<Referral> = {};
const fhirReferral: Partial<FhirReferral> = {};
let context: DemoContext | undefined;

async function run(): Promise<void> {
  out('Second-opinion referrals over FHIR R4: two referrals, end to end, in one run: one over the JSON API, one FHIR only.');
  out('All clinical data is synthetic (the sandbox EHR\'s chart of "Alex Example"). In the lists of');
  out('changed resources: + created, ~ updated, vN = meta.versionId, {...} = the participants whose view includes it.');

  step(1, 'Start the sandbox EHR (St Olaf Hospital\'s FHIR server) and the service');
  const env = await environment.start();
  fact('sandbox EHR', `${env.ehr.baseUrl} (token endpoint ${env.ehr.tokenUrl}); patient Patient/${env.ehr.seeded.patientId}, ${env.ehr.seeded.documents.length} documents`);
  fact('service', `${env.service.url} (store: ${env.service.database.kind} in ${env.dataDir})`);
  fact('network', `${env.root}/network.json: the example network with st-olaf's EHR = the sandbox, Northfield's notify URL = the receiver`);
  fact('receiver', `${env.receiver.url}: Northfield's own system (receives its FHIR Subscription's notifications, step 10 on)`);
  fact('clinic server', `${env.clinic.sandbox.baseUrl}: Lakeside's own FHIR server (a second sandbox instance); Lakeside has recordSet push, so its record sets go there (step 4 on)`);
  const clientIds = Object.fromEntries([REFERRER, CONSULTANT_A, CONSULTANT_B, CONSULTANT_C, AUDITOR].map((p) => [p, clientIdOf(p)]));
  const api = new ServiceClient(env.service.url, clientIds);
  await api.authenticate();
  fact('tokens', `${Object.values(clientIds).join(', ')}: each signed a SMART client assertion with its example key and POSTed it to /auth/token`);
  fact('roles', `referrer ${REFERRER}; consultant A ${CONSULTANT_A}; consultant B ${CONSULTANT_B}; consultant C ${CONSULTANT_C} (a third opinion, step 17); auditor ${AUDITOR} (reads the AuditEvents)`);
  const viewers = Object.fromEntries([REFERRER, CONSULTANT_A, CONSULTANT_B].map((p) => [p, SHORT_NAMES[p] as string]));
  const tracker = new ChangeTracker({ service: api, ehr: env.ehr, ehrClient: env.ehrClient, viewers, auditor: AUDITOR });
  await tracker.baseline();
  const consentId = await recordConsentForBothClinics(env.ehr);
  fact('consent', `St Olaf's EHR records the patient's consent to disclose to both clinics: Consent/${consentId}`);
  await tracker.report();

  context = { api, ehrClient: env.ehrClient, ehrBaseUrl: env.ehr.baseUrl, tracker, chart: env.ehr.seeded, consentId, waitMs: WAIT_MS, clinic: env.clinic };
  await runReferral(context, referral);
  const fhirContext: FhirDemoContext = { ...context, receiver: env.receiver };
  await runFhirReferral(fhirContext, fhirReferral);
  await runThirdOpinion(context, referral, await env.ehr.addConsent(['riverside-imaging']));
  await runFollowUp(context, referral);
  await printConcordance(context, 20);
}

let failed = false;

/** Prints why the demo failed and where the referral stands (only the first failure: what follows from it is noise). */
async function explainFailure(err: unknown): Promise<void> {
  if (failed) return;
  failed = true;
  const { n, title } = currentStep();
  process.stderr.write(`\nDEMO FAILED in step ${n} (${title}):\n  ${err instanceof Error ? err.message : String(err)}\n`);
  if (!(err instanceof DemoError)) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
  let state = err instanceof DemoError ? err.state : undefined;
  const id = fhirReferral.id ?? referral.id;
  if (state === undefined && context && id) {
    try {
      state = await describeReferral(context, id);
    } catch {
      state = undefined;
    }
  }
  if (state) process.stderr.write(`State of the referral:\n${state}\n`);
}

let finished: Promise<never> | undefined;

/** Cleans up (once) and exits with `code`. */
function finish(code: number): Promise<never> {
  finished ??= (async () => {
    silence();
    say();
    say('Cleaning up:');
    await environment.stop((line) => say(`   ${line}`));
    process.exit(code);
  })();
  return finished;
}

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => {
    failed = true;
    process.stderr.write(`\nDEMO INTERRUPTED (${signal}) in step ${currentStep().n}\n`);
    void finish(code);
  });
}

const overall = setTimeout(() => {
  void (async () => {
    await explainFailure(new DemoError(`the demo did not finish within ${TOTAL_MS / 1000} s (DEMO_TIMEOUT_SECONDS)`));
    await finish(1);
  })();
}, TOTAL_MS);

try {
  await run();
  clearTimeout(overall);
  // The overall time-out (or a signal) may have fired while the last step finished: that run has failed.
  if (failed) await finish(1);
  out();
  out(`DEMO OK: two referrals (JSON API, FHIR only), four opinions (one a third opinion added later), each delivered to St Olaf's EHR exactly once, compared, in ${((performance.now() - startedAt) / 1000).toFixed(1)} s.`);
  await finish(0);
} catch (err) {
  clearTimeout(overall);
  await explainFailure(err);
  await finish(1);
}
