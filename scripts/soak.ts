/**
 * The soak under faults: N referrals through the whole loop on two service processes sharing
 * one PostgreSQL cluster of the soak's own, while a seeded schedule makes the sandbox EHR fail,
 * kills a replica, restarts PostgreSQL and terminates its connections. At the end it checks every
 * referral against the service's store and the EHR and prints one table; it exits 1 on any lost
 * or duplicated clinical document, unaudited disclosure, record supplied later that never reached
 * the clinic, unexplained 5xx or dead letter.
 *
 *   npm run soak                      # 1000 referrals
 *   npm run soak -- --quick           # 100 referrals
 *   npm run soak -- --seed 42 --referrals 300 --concurrency 8
 */
import { parseArgs } from 'node:util';
import { drain, gatherFindings, rssOf } from './soak/checks.ts';
import { drive, SoakClient } from './soak/driver.ts';
import { runSchedule } from './soak/faults.ts';
import { writeLaterRecord } from './soak/later-records.ts';
import { createSubscription, gatherNotifications, startNotificationReceiver } from './soak/notifications.ts';
import { gatherPushes, startPushClinic } from './soak/push-clinic.ts';
import { formatTable, verdict } from './soak/report.ts';
import { buildSchedule, describeSchedule, FAULT_KINDS } from './soak/schedule.ts';
import { keepEvidence } from './soak/evidence.ts';
import { startTopology } from './soak/topology.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seed: { type: 'string' },
    referrals: { type: 'string' },
    concurrency: { type: 'string' },
    faults: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('npm run soak [-- --quick] [--seed N] [--referrals N] [--concurrency N] [--faults N]');
  process.exit(0);
}

const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
const referrals = Number(values.referrals ?? (values.quick ? 100 : 1000));
const concurrency = Number(values.concurrency ?? (values.quick ? 6 : 10));
// The driver's expected duration, over which the faults are spread (about 3 s per referral per worker on a 2-core machine, with the notifications and the push clinic), so they land under load.
const durationMs = Math.max(20_000, Math.round((referrals * 3_000) / concurrency));
const faultCount = Number(values.faults ?? Math.max(FAULT_KINDS.length, Math.round(referrals / 25)));
if (!Number.isInteger(seed) || !(referrals > 0) || !(concurrency > 0)) {
  console.error('--seed, --referrals and --concurrency take whole numbers');
  process.exit(2);
}

const log = (line: string) => console.log(`[soak] ${line}`);
const schedule = buildSchedule(seed, { durationMs, count: faultCount });
log(`seed ${seed}: ${referrals} referrals, concurrency ${concurrency}, ${schedule.length} faults over ${(durationMs / 1000).toFixed(0)} s`);
log(`schedule:\n${describeSchedule(schedule)}`);

const t0 = Date.now();
const receiver = await startNotificationReceiver();
const pushClinic = await startPushClinic();
const topology = await startTopology({
  editNetwork: (byId) => {
    receiver.editNetwork(byId);
    pushClinic.editNetwork(byId);
  },
});
log(`PostgreSQL on port ${topology.postgres.port}, sandbox EHR at ${topology.ehr.baseUrl}, replicas at ${topology.replicas.map((r) => r.current?.url).join(' and ')}, notification receiver at ${receiver.origin}, push clinic's server at ${pushClinic.server.baseUrl}`);
const peakRss: Record<string, number> = {};
const sampler = setInterval(() => {
  for (const r of topology.replicas) peakRss[`replica ${r.index}`] = Math.max(peakRss[`replica ${r.index}`] ?? 0, rssOf(r.current?.pid));
  peakRss['driver + EHR'] = Math.max(peakRss['driver + EHR'] ?? 0, process.memoryUsage.rss());
}, 1_000);

let exitCode = 1;
let client: SoakClient | undefined;
try {
  client = new SoakClient(topology.replicas);
  const subscription = await createSubscription(client, receiver, log);
  if (subscription.error) log(`Subscription: ${subscription.error}`);
  const faults = runSchedule(topology, schedule, log, { receiver, pushClinic });
  const chart = topology.ehr.seeded;
  const supplyRecord = (label: string) => writeLaterRecord(topology.ehr, label);
  const driven = await drive(client, { referrals, concurrency, seed, chart, consents: topology.consents, supplyRecord }, (done) => {
    if (done % Math.max(1, Math.round(referrals / 10)) === 0) log(`${done}/${referrals} referrals driven (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  });
  log('driver done; waiting for the rest of the fault schedule');
  await faults.finish();
  log('waiting for the queues to drain');
  const drained = await drain(topology, 180_000);
  if (!drained) log('the queues did not drain within 180 s');
  const findings = await gatherFindings(topology, driven, client.calls, faults.windows, { seed, peakRss, durationMs: Date.now() - t0 });
  findings.notifications = await gatherNotifications(topology.postgres, client, receiver, subscription);
  findings.pushes = await gatherPushes(topology.postgres, pushClinic);
  console.log(`\n${formatTable(findings)}\n`);
  const result = verdict(findings);
  if (result.ok) log(`PASS (seed ${seed})`);
  else {
    log(`FAIL (seed ${seed}; reproduce with: npm run soak -- --seed ${seed} --referrals ${referrals} --concurrency ${concurrency})`);
    for (const f of result.failures) console.log(`  - ${f}`);
    log(`the evidence is in ${await keepEvidence(topology, client.calls, faults.windows)}`);
  }
  exitCode = result.ok ? 0 : 1;
} catch (err) {
  console.error(`[soak] aborted: ${(err as Error).stack ?? err}`);
} finally {
  clearInterval(sampler);
  client?.close();
  await topology.stop();
  await receiver.stop();
  await pushClinic.stop();
}
process.exit(exitCode);
