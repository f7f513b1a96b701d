/**
 * What the demo runs against, all in this process and all on free ports: the sandbox EHR
 * (St Olaf's FHIR server, synthetic chart), a second sandbox instance as Lakeside's own FHIR
 * server (its record sets are pushed there), Northfield's notification receiver, and the service
 * with its embedded PGlite database in a fresh temp directory. The example network is copied to
 * that directory with `st-olaf` pointed at the sandbox, Lakeside set to `recordSet: push` with
 * its `fhir` block on the second sandbox (which registers the service's outbound client with
 * exactly the scope a push needs), and Northfield's `notify` URL at the receiver (a Subscription
 * may only notify an origin the clinic's systems have in the network file). `stop()` undoes
 * everything, whatever state start-up reached.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { createLogger } from '../../src/log/logger.ts';
import { outboundScope } from '../../src/outbound/outbound-scope.ts';
import { type RunningService, startService } from '../../src/service.ts';
import { defaultSandboxClients, SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE, SERVICE_OUTBOUND_PUBLIC_JWK } from '../../test/support/sandbox-ehr/clients.ts';
import type { ActiveFault } from '../../test/support/sandbox-ehr/faults.ts';
import { type SandboxEhr, startSandboxEhr } from '../../test/support/sandbox-ehr/server.ts';
import { writeSandboxNetwork } from '../../test/support/example-network.ts';
import { freePort } from '../../test/support/service.ts';
import { generateClientKey } from '../../test/support/tokens.ts';
import { EhrClient } from './http.ts';
import { type Receiver, startReceiver, WEBHOOK_PATH } from './receiver.ts';
import { FHIR_CONSULTANT } from './fhir-scenario.ts';
import { PUSH_CLINIC } from './scenario.ts';

const ROOT = path.join(import.meta.dirname, '..', '..');

/** The demo's own client at the sandbox EHR and at the clinic's server (to read them over FHIR). */
const EHR_VIEWER_CLIENT_ID = 'demo-viewer';

/** The clinic's own FHIR server (a second sandbox instance) and how the demo reads and steers it. */
export interface ClinicServer {
  /** The participant whose record sets are pushed there. */
  participant: string;
  sandbox: SandboxEhr;
  /** The demo reading that server over FHIR, as the clinic's own staff would. */
  client: EhrClient;
  /** The scope the clinic registered for the service's outbound client there. */
  scope: string;
  /** Drops the answer to the first transaction after storing it (a lost response), so the push is retried. */
  lostAnswer: ActiveFault;
}

export interface DemoEnvironment {
  root: string;
  dataDir: string;
  ehr: SandboxEhr;
  ehrClient: EhrClient;
  service: RunningService;
  config: Config;
  /** The FHIR-only clinic's own system: receives its Subscription's notifications. */
  receiver: Receiver;
  clinic: ClinicServer;
}

export interface Startable {
  /** Whatever has started so far (for cleanup after a failed start). */
  partial: Partial<DemoEnvironment>;
  start(): Promise<DemoEnvironment>;
  /** Stops the service, then the receiver and both sandboxes, then removes the temp directory; never throws. Reports each step. */
  stop(report: (line: string) => void): Promise<void>;
}

/** Rejects after `ms`, so a stuck shutdown cannot hang the demo. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function demoEnvironment(): Startable {
  const partial: Partial<DemoEnvironment> = {};
  let starting: Promise<DemoEnvironment> | undefined;
  let stopping: Promise<void> | undefined;

  function start(): Promise<DemoEnvironment> {
    starting ??= startAll();
    return starting;
  }

  async function startAll(): Promise<DemoEnvironment> {
    partial.root = await mkdtemp(path.join(tmpdir(), 'so-demo-'));
    partial.dataDir = path.join(partial.root, 'data');

    // The sandbox EHR, with the service's outbound client and the demo's viewer registered.
    const viewer = await generateClientKey('ES384', 'demo-viewer-key');
    const ehr = await startSandboxEhr({
      port: 0,
      storagePort: 0,
      clients: [...defaultSandboxClients(), { clientId: EHR_VIEWER_CLIENT_ID, jwks: { keys: [viewer.publicJwk] }, scope: 'system/*.rs' }],
      // Small key image: the demo is about the flow, not about moving megabytes.
      seed: { largeBytes: 200_000 },
    });
    partial.ehr = ehr;
    partial.ehrClient = new EhrClient({ baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: EHR_VIEWER_CLIENT_ID, privateJwk: viewer.privateJwk });

    // Lakeside's own FHIR server: the service's outbound client is registered there with exactly
    // the scope a push needs (no reads of records, no post-back), the demo's viewer to read it.
    const scope = outboundScope({ referrer: false, push: true });
    const clinicServer = await startSandboxEhr({
      port: 0,
      storagePort: 0,
      clients: [
        { clientId: SERVICE_OUTBOUND_CLIENT_ID, jwks: { keys: [{ ...SERVICE_OUTBOUND_PUBLIC_JWK }] }, scope },
        { clientId: EHR_VIEWER_CLIENT_ID, jwks: { keys: [viewer.publicJwk] }, scope: 'system/*.rs' },
      ],
      seed: { largeBytes: 200_000 },
      // The demo prints the transaction Bundle the service posted.
      recordBodies: true,
    });
    partial.clinic = {
      participant: PUSH_CLINIC,
      sandbox: clinicServer,
      client: new EhrClient({ baseUrl: clinicServer.baseUrl, tokenUrl: clinicServer.tokenUrl, clientId: EHR_VIEWER_CLIENT_ID, privateJwk: viewer.privateJwk }),
      scope,
      // The first transaction is stored, then its answer lost: the push job cannot know what was
      // stored and runs again; its conditional creates must find everything and create nothing twice.
      lostAnswer: clinicServer.faults.add({ path: /^\/fhir\/R4\/?$/, method: 'POST', dropResponse: true, times: 1 }),
    };

    // Northfield's own system, which its FHIR Subscription will notify.
    const receiver = await startReceiver();
    partial.receiver = receiver;

    // The network: the shipped example, with St Olaf's EHR being the sandbox and Northfield's
    // notify URL on the receiver's origin (its webhooks go there; so may its Subscriptions).
    const networkFile = await writeSandboxNetwork(ehr, {
      dir: partial.root,
      timeoutMs: 10_000,
      edit: (byId) => {
        byId(FHIR_CONSULTANT).notify = { url: `${receiver.url}/${FHIR_CONSULTANT}${WEBHOOK_PATH}`, secret: 'demo-only-webhook-secret-0123456789' };
        Object.assign(byId(PUSH_CLINIC), {
          recordSet: 'push',
          fhir: { baseUrl: clinicServer.baseUrl, tokenUrl: clinicServer.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: path.join(ROOT, SERVICE_OUTBOUND_KEY_FILE), timeoutMs: 10_000 },
        });
      },
    });

    // The service, configured as `npm start` would be from these variables (the embedded
    // default store: DATABASE_URL is deliberately not read from the environment).
    const port = await freePort();
    const config = loadConfig({
      NODE_ENV: 'development',
      HOST: '127.0.0.1',
      PORT: String(port),
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      DATA_DIR: partial.dataDir,
      NETWORK_FILE: networkFile,
      LOG_LEVEL: process.env.DEMO_LOG_LEVEL || 'warn',
      DELIVERY_RETRY_DELAY_SECONDS: '1',
      DELIVERY_RETRY_MAX_DELAY_SECONDS: '5',
      WEBHOOK_RETRY_DELAY_SECONDS: '1',
      SHUTDOWN_TIMEOUT_SECONDS: '3',
    });
    partial.config = config;
    // Service logs (warnings and worse by default) go to stderr, apart from the demo's story.
    const log = createLogger({ level: config.logLevel, destination: { write: (line: string) => void process.stderr.write(line) } });
    partial.service = await startService(config, log, { jobPollingIntervalSeconds: 0.5 });
    return partial as DemoEnvironment;
  }

  async function stop(report: (line: string) => void): Promise<void> {
    stopping ??= (async () => {
      // A start still in progress (a time-out or Ctrl-C during start-up) is let finish first, so nothing it opens is left behind.
      if (starting) await within(starting, 60_000, 'start-up').catch(() => undefined);
      if (partial.service) {
        try {
          await within(partial.service.stop(), 20_000, 'stopping the service');
          report('service stopped');
        } catch (err) {
          report(`service: ${(err as Error).message}`);
        }
      }
      if (partial.receiver) {
        try {
          await within(partial.receiver.stop(), 5_000, 'stopping the notification receiver');
          report('notification receiver stopped');
        } catch (err) {
          report(`notification receiver: ${(err as Error).message}`);
        }
      }
      if (partial.ehr) {
        try {
          await within(partial.ehr.stop(), 10_000, 'stopping the sandbox EHR');
          report('sandbox EHR stopped');
        } catch (err) {
          report(`sandbox EHR: ${(err as Error).message}`);
        }
      }
      if (partial.clinic) {
        try {
          await within(partial.clinic.sandbox.stop(), 10_000, "stopping Lakeside's FHIR server (sandbox)");
          report("Lakeside's FHIR server (sandbox) stopped");
        } catch (err) {
          report(`Lakeside's FHIR server (sandbox): ${(err as Error).message}`);
        }
      }
      if (partial.root) {
        try {
          await rm(partial.root, { recursive: true, force: true, maxRetries: 3 });
          report(`removed ${partial.root}`);
        } catch (err) {
          report(`could not remove ${partial.root}: ${(err as Error).message}`);
        }
      }
    })();
    return stopping;
  }

  return { partial, start, stop };
}

/** Records, on the sandbox EHR, the patient's consent to disclose records to both clinics (the seeded one names Lakeside only). */
export async function recordConsentForBothClinics(ehr: SandboxEhr): Promise<string> {
  return ehr.addConsent(['lakeside', 'northfield-pathology']);
}
