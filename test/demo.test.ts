import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = path.join(import.meta.dirname, '..');

interface DemoRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const running = new Set<ChildProcess>();

/**
 * Runs `scripts/demo.ts` exactly as `npm run demo` does (tsx on the project's Node, from the
 * repository root), with a clean environment: no DATABASE_URL (the demo always uses the
 * embedded store), nothing inherited from the test runner.
 */
function runDemo(env: Record<string, string> = {}): Promise<DemoRun> {
  const base: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' };
  if (process.env.TMPDIR) base.TMPDIR = process.env.TMPDIR;
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      // Let the pipes drain.
      setImmediate(() => resolve({ code, signal, stdout, stderr }));
    }),
  );
}

/** The temp directory the demo said it removed. */
function removedDir(stdout: string): string | undefined {
  return /^ {3}removed (\S+)$/m.exec(stdout)?.[1];
}

const UUID = '[0-9a-f-]{36}';

/** The text of step `n` (up to the next step). */
function stepText(stdout: string, n: number): string {
  const start = stdout.search(new RegExp(`^${n}\\. `, 'm'));
  if (start < 0) return '';
  const body = stdout.indexOf('\n', start);
  const next = stdout.slice(body).search(/^\d+\. /m);
  return stdout.slice(start, next < 0 ? undefined : body + next);
}

/**
 * The FHIR-only walk (steps 10-16): Northfield subscribes (handshake, active), St Olaf's EHR
 * posts a transaction Bundle (and replays it: nothing created), Northfield hears of its Task by
 * id-only events numbered in order, works it with PUT and PATCH (a change of owner refused with
 * 422 naming Task.owner), completes it with a contained consult note, the opinion is posted back
 * once, and the comparison holds the first read and Northfield's opinion.
 */
function expectFhirWalk(stdout: string): void {
  const subscribe = stepText(stdout, 10);
  expect(subscribe).toMatch(new RegExp(`response {7}201 Created, Location: http://127\\.0\\.0\\.1:\\d+/fhir/Subscription/(${UUID}); status requested`));
  const subscriptionId = new RegExp(`/fhir/Subscription/(${UUID})`).exec(subscribe)?.[1];
  expect(subscribe).toContain('received       handshake: Subscription requested, 0 event(s) since it started (with its channel header Authorization: Bearer northfield-receiver-token)');
  expect(subscribe).toContain(`$status        GET /fhir/Subscription/${subscriptionId}/$status -> active`);
  expect(subscribe).toMatch(new RegExp(`^ {5}\\+ Subscription/${subscriptionId} {2}active; topic task-status \\(Task\\?owner=Organization/northfield-pathology\\), id-only, to http://127\\.0\\.0\\.1:\\d+/northfield-pathology/fhir-notifications {2}\\{Northfield only\\}$`, 'm'));

  const intake = stepText(stdout, 11);
  expect(intake).toContain('response       200 transaction-response, one entry per request entry:');
  const created = [...intake.matchAll(new RegExp(`^ {18}201 Created {2}http://127\\.0\\.0\\.1:\\d+/fhir/(\\w+)/(${UUID})/_history/1 {2}ETag W/"1"$`, 'gm'))];
  expect(created.map((m) => m[1])).toEqual(['ServiceRequest', 'Task', 'ClinicalImpression']);
  const [referralId, taskId] = [created[0]?.[2], created[1]?.[2]];
  expect(intake).toContain('replay         the same Bundle again (an EHR retrying) -> 200, entries 200 OK, 200 OK, 200 OK, the same ids: nothing created');
  expect(intake).toMatch(new RegExp(`^ {5}\\+ ServiceRequest/${referralId} v1 {2}active; Pathology second read, priority routine \\(the FHIR referral\\) {2}\\{St Olaf`, 'm'));
  expect(intake).toMatch(new RegExp(`^ {5}\\+ Task/${taskId} v1 {2}requested/records-pending; owner Northfield`, 'm'));

  const notified = stepText(stdout, 12);
  expect(notified).toContain(`received       event #1: focus Task/${taskId} at W/"2" (id-only: the URL and version, no resource)`);
  expect(notified).toMatch(new RegExp(`GET focus {6}http://127\\.0\\.0\\.1:\\d+/fhir/Task/${taskId} as Northfield -> 200, Task requested / records-ready \\(v2\\)`));
  expect(notified).toMatch(/^ {3}Task\.input {5}Bundle\/\S+ v1 \(collection, \d+ entries\):/m);
  // The disclosure is listed in the report of the step in which assembly ran (11 or 12).
  expect(stdout).toMatch(new RegExp(`\\+ AuditEvent/\\S+ v1 {2}disclose, success; Record set of ServiceRequest/${referralId} made available to the consultant \\[agent Organization/northfield-pathology\\]`));

  const worked = stepText(stdout, 13);
  expect(worked).toContain(`accept         PUT /fhir/Task/${taskId} (the Task as read, status accepted, If-Match W/"2") -> 200, Task accepted / records-ready (v3), ETag W/"3"`);
  expect(worked).toContain('guard          PATCH replace /owner/reference -> 422 OperationOutcome naming Task.owner');
  expect(worked).toContain('start          PATCH [test /status accepted, replace /status in-progress] (If-Match W/"3") -> 200, Task in-progress / records-ready (v4)');
  expect(worked).toContain(`received       event #2: focus Task/${taskId} at W/"3"`);
  expect(worked).toContain(`received       event #3: focus Task/${taskId} at W/"4"`);

  const completed = stepText(stdout, 14);
  expect(completed).toMatch(/complete {7}PUT status completed, output #opinion, contained DocumentReference .* -> 200, Task completed \/ records-ready \(v5\)/);
  const noteId = new RegExp(`output DocumentReference/(${UUID}): the service built and stored its own consult note`).exec(completed)?.[1];
  expect(noteId).toBeDefined();
  expect(completed).toContain(`referral       GET /fhir/ServiceRequest/${referralId} as St Olaf -> completed`);
  expect(completed).toContain(`received       event #4: focus Task/${taskId} at W/"5"`);

  const delivered = stepText(stdout, 15);
  expect(delivered).toContain(`Task           GET /fhir/Task/${taskId} as St Olaf -> completed / opinion-delivered (v6)`);
  expect(delivered).toContain(`received       event #5: focus Task/${taskId} at W/"6"`);
  expect(delivered).toMatch(new RegExp(`^ {3}Northfield {5}opinion DocumentReference/${noteId} delivered: on the EHR DocumentReference/${UUID} and Communication/${UUID} \\(to Practitioner/${UUID}\\)$`, 'm'));
  expect(delivered).toContain('check          read back from the EHR over FHIR by identifier: exactly one DocumentReference and one Communication');
  expect(delivered).toContain('notifications  6 received (handshake + events #1, #2, #3, #4, #5), each id-only: no resource, no patient data');
  // The post-back of this opinion, on the EHR (in step 14's or 15's report, as the job ran).
  expect(stdout).toMatch(new RegExp(`^ {5}\\+ DocumentReference/${UUID} {2}current, Consult note for Patient/${UUID}, identifier ${noteId} \\(the posted-back opinion\\)$`, 'm'));

  const compared = stepText(stdout, 16);
  expect(compared).toMatch(/^ {23}First read \(St Olaf\) +Northfield$/m);
  expect(compared).toMatch(/^ {3}vs first plan +disagree$/m);
  expect(compared).toContain(`consult note   GET /fhir/DocumentReference/${noteId} as St Olaf -> 200, Consult note, attachments text/html, text/plain`);
}

/**
 * The third opinion (steps 17-18): Riverside added to the completed referral gets its Task and
 * the very record set the others had, sees no other opinion before its own, then does; the
 * referral completes again and the comparison has three opinions.
 */
function expectThirdOpinion(stdout: string): void {
  const added = stepText(stdout, 17);
  expect(added).toMatch(new RegExp(`response {7}201 Created: ServiceRequest/${UUID} completed -> active \\(v\\d+\\), performers Lakeside[^,]*, Northfield[^,]*, Riverside`));
  expect(added).toMatch(new RegExp(`work item {6}Task/${UUID} for Riverside[^:]*: requested / records-pending \\(v1\\), due \\d{4}-\\d{2}-\\d{2}`));
  expect(added).toContain('guard          the same post again -> 422: Riverside is already on the referral (nothing added)');
  expect(added).toMatch(/record set     Task input Bundle\/\S+: the very record set Lakeside and Northfield had/);
  expect(added).toMatch(/blinding       before its own opinion Riverside reads neither Lakeside's opinion nor the first opinion: GET DocumentReference\/\S+ -> 404, GET Bundle\/\S+ -> 404/);
  const answered = stepText(stdout, 18);
  expect(answered).toMatch(/released       GET DocumentReference\/\S+ -> 200, GET Bundle\/\S+ -> 200 \(one disclosure AuditEvent\)/);
  expect(answered).toMatch(/referral       ServiceRequest\/\S+ completed again/);
  expect(answered).toMatch(/post-back      delivered after \d+ attempt\(s\): on the EHR DocumentReference\/\S+/);
  expect(answered).toMatch(/First opinion \(St Olaf\) +Lakeside +Northfield +Riverside/);
}

/**
 * The push of Lakeside's record sets to its own FHIR server (a second sandbox), steps 4 and 5:
 * the transaction Bundle as posted (conditional creates of 4 record copies, the referral and the
 * Task, by our identifiers), the first answer lost and the retry with the same Bundle, what the
 * clinic's server holds (each by its id there, attachments linking to our Binary URLs), counted
 * there (each exactly once), and the next revision's push updating the Task with If-Match.
 */
function expectPush(stdout: string): void {
  const servicePort = /^ {3}service {8}http:\/\/127\.0\.0\.1:(\d+) /m.exec(stdout)?.[1];
  expect(servicePort).toBeDefined();
  const clinicBase = /^ {3}clinic server  (http:\/\/127\.0\.0\.1:\d+\/fhir\/R4): Lakeside's own FHIR server \(a second sandbox instance\); Lakeside has recordSet push/m.exec(stdout)?.[1];
  expect(clinicBase).toBeDefined();
  const referralId = new RegExp(`Location: http://127\\.0\\.0\\.1:\\d+/second-opinions/(${UUID})`).exec(stdout)?.[1];
  const ready = stepText(stdout, 4);
  const taskA = new RegExp(`^ {3}Task {11}Task/(${UUID}) \\(Lakeside Clinic \\(example\\)\\): requested / records-ready$`, 'm').exec(ready)?.[1];
  expect(taskA).toBeDefined();

  expect(ready).toContain(`posted         POST ${clinicBase} by the service's push job: Bundle transaction, 6 entries, all or nothing:`);
  const entries = [...ready.matchAll(new RegExp(`^ {20}POST (\\w+) +If-None-Exist identifier=…/([a-z-]+)\\|(${UUID})  `, 'gm'))].map((m) => [m[1], m[2], m[3]]);
  expect(entries.map(([type, system]) => `${type} ${system}`)).toEqual([...Array(4).fill('DocumentReference record-copy-id'), 'ServiceRequest service-request-id', 'Task task-id']);
  expect(entries.slice(4).map((e) => e[2])).toEqual([referralId, taskA]);
  expect(ready).toContain("lost answer    attempt 1: the clinic's server stored the transaction, then the connection dropped before its answer");
  expect(ready).toContain('retry          attempt 2: the job ran again with the same Bundle, byte for byte -> HTTP 200; every conditional create found its resource by identifier');
  const operator = new RegExp(`operator {7}GET /admin/record-pushes as the audit office: pushed after 2 attempt\\(s\\); there ServiceRequest/(${UUID}), Task/(${UUID}), 4 records`).exec(ready);
  expect(operator).not.toBeNull();
  const [remoteRequest, remoteTask] = [operator?.[1], operator?.[2]];
  // What the clinic's server holds, by its own ids: the copies point at each other, the attachments at our Binary URLs.
  expect(ready).toMatch(new RegExp(`^ {20}ServiceRequest/${remoteRequest}  active; copy of our ServiceRequest/${referralId}, `, 'm'));
  expect(ready).toMatch(new RegExp(`^ {20}Task/${remoteTask}  requested; copy of our Task/${taskA}, focus ServiceRequest/${remoteRequest}, owner Lakeside Clinic \\(example\\), input 4 records$`, 'm'));
  const docs = [...ready.matchAll(new RegExp(`^ {20}DocumentReference/(${UUID})  [^>]+ -> http://127\\.0\\.0\\.1:${servicePort}/fhir/Binary/[0-9a-f]{64} \\(application/pdf, \\d+ bytes, SHA-1 \\S+=\\)$`, 'gm'))].map((m) => m[1]);
  expect(docs).toHaveLength(4);
  expect(new Set(docs).size).toBe(4);
  for (const id of docs) expect(entries.map((e) => e[2])).not.toContain(id);
  expect(ready).toContain("counted        on Lakeside's server: 1 ServiceRequest, 1 Task, 4 DocumentReferences carrying our identifiers, each exactly once: the retry created nothing twice");
  // Both attempts audited as disclosures, in the step's report.
  expect(ready).toMatch(/\+ AuditEvent\/\S+ v1 {2}disclose, outcome 8; Record set push attempt 1 failed \[agent Organization\/lakeside\]/);
  expect(ready).toMatch(/\+ AuditEvent\/\S+ v1 {2}disclose, success; Record set Bundle\/\S+ of ServiceRequest\/\S+ pushed to the consultant's FHIR server \(attempt 2\) \[agent Organization\/lakeside\]/);

  const next = stepText(stdout, 5);
  expect(next).toContain("push           records revision 2 pushed to Lakeside's server as one more transaction (attempt 1): 5 new record copies, 4 naming the copy it replaces (relatesTo replaces)");
  expect(next).toContain(`PUT Task/${remoteTask} with If-Match on the version the server had: 2 versions in its history now (the earlier input kept)`);
}

/** Step 19: St Olaf asks Lakeside a follow-up question, Lakeside answers, the answer reaches the EHR once. */
function expectFollowUp(stdout: string): void {
  const followUp = stepText(stdout, 19);
  expect(followUp).toMatch(new RegExp(`question {7}POST /second-opinions/\\S+/consultants/lakeside-consults/questions -> 201, Communication/(${UUID}) \\(question 1 of 3\\), answer due \\d{4}-\\d{2}-\\d{2}`));
  expect(followUp).toMatch(/worklist {7}GET \/consults as Lakeside: Task\/\S+ completed, 1 open follow-up question\(s\), this one due \d{4}-\d{2}-\d{2}; actions \[answers\]/);
  expect(followUp).toMatch(new RegExp(`answer {9}POST /consults/\\S+/answers -> 201, Communication/${UUID} inResponseTo Communication/${UUID}`));
  expect(followUp).toContain('guard          answering the same question again -> 409 (nothing changes)');
  expect(followUp).toMatch(new RegExp(`post-back {6}delivered after 1 attempt\\(s\\): on the EHR Communication/${UUID} \\(the question\\) and Communication/${UUID} \\(inResponseTo Communication/${UUID}, about DocumentReference/${UUID}\\)`));
  expect(followUp).toContain('check          read back from the EHR over FHIR by identifier: exactly one question and one answer');
  // On the EHR, in this step's report: the question and the answer, each once.
  expect(followUp.match(/^ {5}\+ Communication\/\S+ {2}completed, follow-up question, from /gm)).toHaveLength(1);
  expect(followUp.match(/^ {5}\+ Communication\/\S+ {2}completed, follow-up answer, inResponseTo Communication\//gm)).toHaveLength(1);
}

/**
 * The concordance figures of the four opinions the demo ran (step 20), as the audit office reads
 * them with $evaluate-measure: each classified against its referral's first opinion (two agree
 * with the first diagnosis with modifications; three disagree with the plan, the third opinion
 * modifies it), per kind; the referrer's own figures are the same.
 */
function expectConcordance(stdout: string): void {
  const text = stepText(stdout, 20);
  expect(text).toMatch(/request {8}GET \/fhir\/Measure\/second-opinion-concordance\/\$evaluate-measure\?periodStart=\d{4}-\d{2}-\d{2}&periodEnd=\d{4}-\d{2}-\d{2} as the audit office -> 200 MeasureReport complete, summary, all organizations/);
  expect(text).toContain("opinions       4 returned, 4 classified against the referral's first opinion");
  expect(text).toContain('diagnosis      major discrepancy 0 of 4 (0.0 %); minor discrepancy 2 of 4 (50.0 %)');
  expect(text).toContain('plan           changed 3 of 4 (75.0 %); modified 1 of 4 (25.0 %)');
  expect(text).toContain('by kind        Revision after a prior procedure: 3 opinion(s), plan changed 66.7 %; Pathology second read: 1 opinion(s), plan changed 100.0 %');
  expect(text).toContain('referrer       St Olaf asks for its own organization (subject=Organization/st-olaf): 4 opinion(s) on its referrals, the same figures');
}

/** Lakeside's FHIR server as step 1 printed it. */
function clinicUrl(stdout: string): string | undefined {
  return /^ {3}clinic server  (http:\/\/127\.0\.0\.1:\d+\/fhir\/R4):/m.exec(stdout)?.[1];
}

describe('npm run demo', () => {
  // A test that timed out leaves no demo behind: SIGTERM makes it clean up and exit.
  afterEach(() => {
    for (const child of running) child.kill('SIGTERM');
  });

  it('walks a JSON referral with two consultants (one with its record sets pushed to its own FHIR server) and a FHIR-only one, exits 0 and cleans up', { timeout: 180_000 }, async () => {
    // The demo's own deadline comes before the test's, so a slow machine still gets its clean-up and message.
    const run = await runDemo({ DEMO_TIMEOUT_SECONDS: '170', DEMO_WAIT_SECONDS: '90' });
    const output = `${run.stdout}\n--- stderr ---\n${run.stderr}`;
    expect(run.code, output).toBe(0);
    expect(run.stderr, output).not.toContain('DEMO FAILED');

    // Every step, in order.
    const steps = [...run.stdout.matchAll(/^(\d+)\. /gm)].map((m) => Number(m[1]));
    expect(steps, output).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(run.stdout).toMatch(/store: pglite in /);
    expect(run.stdout).toMatch(/\+ Consent\/[0-9a-f-]{36}/);

    // Intake, then assembly waiting for the operative note, then complete once it is supplied.
    expect(run.stdout).toMatch(/response {7}201 Created, Location: http:\/\/127\.0\.0\.1:\d+\/second-opinions\/\S+/);
    expect(run.stdout).toMatch(/^ {5}\+ ServiceRequest\/\S+ v1 {2}active/m);
    expect(run.stdout).toMatch(/result {9}record set awaiting-records/);
    expect(run.stdout).toContain('missing        Surgical operation note (LOINC 11504-8)');
    expect(run.stdout).toContain('businessStatus.text "Missing required records: Surgical operation note"');
    expect(run.stdout).toMatch(/guard {10}Lakeside tries to accept now: 404 .*a clinic sees nothing of the case until its record set is complete and the consent covers it/);
    expect(run.stdout).toMatch(/response {7}202 Accepted: records revision 1, added DocumentReference\/[0-9a-f-]{36} \(operative note\)/);
    expect(run.stdout).toContain('record set records-ready: nothing required is missing');
    const opNote = /added DocumentReference\/([0-9a-f-]{36}) \(operative note\)/.exec(run.stdout)?.[1];
    expect(run.stdout).toContain(`copy of EHR DocumentReference/${opNote}`);
    expect(run.stdout).toMatch(new RegExp(`The service called St Olaf's EHR: .*GET DocumentReference/${opNote}`));

    // The question and its answer.
    expect(run.stdout).toMatch(/request-info {3}POST \/consults\/\S+\/request-info -> 200, Task on-hold \/ information-requested/);
    expect(run.stdout).toMatch(/referrer sees {2}GET \/second-opinions\/\S+: Lakeside on-hold \/ information-requested, asking "Was the knee ever aspirated/);
    expect(run.stdout).toMatch(/resumed {8}Task\/\S+ in-progress/);

    // Both opinions (and the third one of step 18), blinding lifted for each after its own answer, the referral completed.
    expect(run.stdout.match(/^ {3}opinion {8}POST \/consults\/\S+\/opinion -> 200, Task completed/gm)).toHaveLength(3);
    expect(run.stdout).toMatch(/is now released to Northfield: GET -> 200/);
    expect(run.stdout).toMatch(/is now released to Lakeside: GET -> 200/);
    expect(run.stdout).toMatch(/referral {7}ServiceRequest\/\S+ completed \(v\d+\): every Task has ended/);

    // Post-back: one DocumentReference and one Communication on the EHR per opinion.
    for (const clinic of ['Lakeside', 'Northfield']) {
      expect(run.stdout).toMatch(new RegExp(`^ {3}${clinic} +opinion DocumentReference/\\S+ delivered after \\d+ attempt\\(s\\): on the EHR DocumentReference/\\S+ and Communication/\\S+ \\(to Practitioner/[0-9a-f-]{36}\\)$`, 'm'));
    }
    expect(run.stdout).toContain('exactly one DocumentReference and one Communication per opinion');
    // Two opinions of the JSON walk, one of the FHIR walk and the third opinion: each posted back once.
    expect(run.stdout.match(/^ {5}\+ DocumentReference\/\S+ {2}current, Consult note for Patient\/[0-9a-f-]{36}/gm)).toHaveLength(4);
    expect(run.stdout.match(/^ {5}\+ Communication\/\S+ {2}completed, to Practitioner\/[0-9a-f-]{36}/gm)).toHaveLength(4);

    // The comparison.
    expect(run.stdout).toMatch(/First opinion \(St Olaf\) +Lakeside +Northfield/);
    expect(run.stdout).toContain('Where the consultants agree and differ:');
    expect(run.stdout).toMatch(/AGREE {3}planAgreement {7}All: Disagree/);
    expect(run.stdout).toMatch(/DIFFER {2}diagnosisAgreement/);
    expect(run.stdout).toMatch(/as HTML {8}the same with Accept: text\/html -> text\/html/);

    expectPush(run.stdout);
    expectFhirWalk(run.stdout);
    expectThirdOpinion(run.stdout);
    expectFollowUp(run.stdout);
    expectConcordance(run.stdout);
    expect(run.stdout).toMatch(/DEMO OK: two referrals \(JSON API, FHIR only\), four opinions \(one a third opinion added later\), each delivered to St Olaf's EHR exactly once, compared, in [\d.]+ s\./);

    // Clean-up: service and sandbox stopped, temp directory gone.
    expect(run.stdout).toContain('service stopped');
    expect(run.stdout).toContain('notification receiver stopped');
    expect(run.stdout).toContain('sandbox EHR stopped');
    expect(run.stdout).toContain("Lakeside's FHIR server (sandbox) stopped");
    await expect(fetch(`${clinicUrl(run.stdout)}/metadata`)).rejects.toThrow();
    const dir = removedDir(run.stdout);
    expect(dir, output).toMatch(/so-demo-/);
    expect(existsSync(dir as string)).toBe(false);
  });

  it('fails with exit code 1 and a clear message when it runs out of time, and still cleans up', { timeout: 120_000 }, async () => {
    const run = await runDemo({ DEMO_TIMEOUT_SECONDS: '1' });
    const output = `${run.stdout}\n--- stderr ---\n${run.stderr}`;
    expect(run.code, output).toBe(1);
    expect(run.stderr).toMatch(/DEMO FAILED in step \d \(.+\):\n {2}the demo did not finish within 1 s \(DEMO_TIMEOUT_SECONDS\)/);
    expect(run.stdout).not.toContain('DEMO OK');
    expect(run.stdout).toContain('service stopped');
    expect(run.stdout).toContain('sandbox EHR stopped');
    // Start-up is let finish before clean-up, so the clinic's server was started and is stopped too.
    expect(run.stdout).toContain("Lakeside's FHIR server (sandbox) stopped");
    const dir = removedDir(run.stdout);
    expect(dir, output).toMatch(/so-demo-/);
    expect(existsSync(dir as string)).toBe(false);
  });
});
