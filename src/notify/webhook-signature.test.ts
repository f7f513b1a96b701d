import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhook, webhookKey } from './webhook-signature.ts';

describe('webhook signatures (Standard Webhooks)', () => {
  const body = '{"id":"n1","type":"task.status-changed"}';
  const now = new Date('2026-11-30T12:00:00Z');
  const ts = Math.floor(now.getTime() / 1000);

  it('signs "<id>.<timestamp>.<body>" with HMAC-SHA256, base64, prefixed v1', () => {
    const expected = createHmac('sha256', 'a-plain-shared-secret-of-24+').update(`n1.${ts}.${body}`).digest('base64');
    expect(signWebhook('a-plain-shared-secret-of-24+', 'n1', ts, body)).toBe(`v1,${expected}`);
  });

  it('decodes whsec_ secrets as base64 key bytes, other secrets as UTF-8', () => {
    expect(webhookKey(`whsec_${Buffer.from([1, 2, 3]).toString('base64')}`)).toEqual(Buffer.from([1, 2, 3]));
    expect(webhookKey('plain')).toEqual(Buffer.from('plain', 'utf8'));
  });

  it('verifies the signature, refuses a changed body, another secret, a stale timestamp and missing headers', () => {
    const secret = 'a-plain-shared-secret-of-24+';
    const signature = signWebhook(secret, 'n1', ts, body);
    const headers = { id: 'n1', timestamp: String(ts), signature };
    expect(verifyWebhook(secret, headers, body, now)).toBe(true);
    // Several signatures (key rotation): one match is enough.
    expect(verifyWebhook(secret, { ...headers, signature: `v1,bm9wZQ== ${signature}` }, body, now)).toBe(true);
    expect(verifyWebhook(secret, headers, `${body} `, now)).toBe(false);
    expect(verifyWebhook('another-secret-of-24-characters', headers, body, now)).toBe(false);
    expect(verifyWebhook(secret, { ...headers, id: 'n2' }, body, now)).toBe(false);
    expect(verifyWebhook(secret, headers, body, new Date(now.getTime() + 301_000))).toBe(false);
    expect(verifyWebhook(secret, { ...headers, timestamp: undefined }, body, now)).toBe(false);
    expect(verifyWebhook(secret, { ...headers, timestamp: 'soon' }, body, now)).toBe(false);
  });
});
