/**
 * The consulting clinic's own system, as far as the demo needs it: a small HTTP server on a free
 * port that receives what the service sends it. Under `/fhir-notifications` the FHIR
 * Subscription's notification Bundles (Subscriptions R5 Backport, R4 form), kept in arrival
 * order; under `/webhook` the signed webhooks the network file's `notify` URL gets (answered
 * and counted: the FHIR walk is about the Subscription). Everything is answered 200.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bundle, Parameters, ParametersParameter } from '@medplum/fhirtypes';

export const NOTIFICATION_PATH = '/fhir-notifications';
export const WEBHOOK_PATH = '/webhook';
/** Largest body the receiver keeps (a notification is a few hundred bytes). */
const MAX_BODY_BYTES = 1_000_000;

/** One notification Bundle, read the way a receiver reads it. */
export interface ReceivedNotification {
  /** The Bundle's id: the same on every retry of one notification. */
  bundleId: string;
  /** `handshake`, `heartbeat` or `event-notification`. */
  type: string;
  /** The Subscription's status as the notification states it. */
  status: string;
  eventsSinceStart: string;
  /** One per `notification-event`: its number and, for id-only, the focus URL. */
  events: { number: number; focus?: string }[];
  /** The entries after the SubscriptionStatus: their URL and `response.etag`, and whether a resource came with them. */
  foci: { fullUrl?: string; etag?: string; hasResource: boolean }[];
  /** The body as received (to check that no patient data travelled). */
  raw: string;
  authorization?: string;
}

export interface Receiver {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Every notification received, de-duplicated by Bundle id, in arrival order. */
  readonly notifications: ReceivedNotification[];
  /** How many webhook POSTs arrived. */
  webhooks(): number;
  stop(): Promise<void>;
}

const part = (parameters: ParametersParameter[] | undefined, name: string) => parameters?.find((p) => p.name === name);

/** Reads a notification Bundle: its SubscriptionStatus (first entry) and the foci that follow. */
export function readNotification(raw: string, authorization?: string): ReceivedNotification {
  const bundle = JSON.parse(raw) as Bundle;
  const status = bundle.entry?.[0]?.resource as Parameters | undefined;
  const parameters = status?.parameter;
  return {
    bundleId: bundle.id ?? '',
    type: part(parameters, 'type')?.valueCode ?? '?',
    status: part(parameters, 'status')?.valueCode ?? '?',
    eventsSinceStart: part(parameters, 'events-since-subscription-start')?.valueString ?? '?',
    events: (parameters ?? [])
      .filter((p) => p.name === 'notification-event')
      .map((e) => {
        const focus = part(e.part, 'focus')?.valueReference?.reference;
        return { number: Number(part(e.part, 'event-number')?.valueString), ...(focus ? { focus } : {}) };
      }),
    foci: (bundle.entry ?? []).slice(1).map((e) => ({ ...(e.fullUrl ? { fullUrl: e.fullUrl } : {}), ...(e.response?.etag ? { etag: e.response.etag } : {}), hasResource: e.resource !== undefined })),
    raw,
    ...(authorization ? { authorization } : {}),
  };
}

export async function startReceiver(): Promise<Receiver> {
  const notifications: ReceivedNotification[] = [];
  let webhooks = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      if (req.method === 'POST' && path.endsWith(NOTIFICATION_PATH) && size <= MAX_BODY_BYTES) {
        try {
          const received = readNotification(Buffer.concat(chunks).toString('utf8'), req.headers.authorization);
          if (!notifications.some((n) => n.bundleId === received.bundleId)) notifications.push(received);
        } catch {
          res.writeHead(400).end();
          return;
        }
      } else if (req.method === 'POST' && path.endsWith(WEBHOOK_PATH)) {
        webhooks += 1;
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    notifications,
    webhooks: () => webhooks,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
