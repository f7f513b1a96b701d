/**
 * Webhook signatures as Standard Webhooks defines them (https://www.standardwebhooks.com/):
 *
 *   webhook-id:        the notification id (receivers de-duplicate on it)
 *   webhook-timestamp: seconds since the epoch when this attempt was sent
 *   webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">
 *
 * The key is the shared secret from the network file: a `whsec_<base64>` secret is decoded
 * (what Standard Webhooks libraries expect), any other string is used as its UTF-8 bytes.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export function webhookKey(secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret, 'utf8');
}

export function signWebhook(secret: string, id: string, timestampSeconds: number, body: string): string {
  const mac = createHmac('sha256', webhookKey(secret)).update(`${id}.${timestampSeconds}.${body}`).digest('base64');
  return `v1,${mac}`;
}

/**
 * A receiver's check (tests, and the example in docs/consults.md, Webhooks): one of the space-separated signatures
 * matches, and the timestamp is within `toleranceSeconds` of `now` (replay protection).
 */
export function verifyWebhook(
  secret: string,
  headers: { id: string | undefined; timestamp: string | undefined; signature: string | undefined },
  body: string,
  now: Date = new Date(),
  toleranceSeconds = 300,
): boolean {
  const { id, timestamp, signature } = headers;
  if (!id || !timestamp || !signature || !/^\d+$/.test(timestamp)) return false;
  if (Math.abs(now.getTime() / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const expected = Buffer.from(signWebhook(secret, id, Number(timestamp), body));
  return signature.split(' ').some((candidate) => {
    const given = Buffer.from(candidate);
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
