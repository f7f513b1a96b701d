import { describe, expect, it } from 'vitest';
import { notificationLeaseSeconds, QUEUE, queuePolicies } from './queues.ts';

describe('queue policies', () => {
  // Found by the soak: a replica SIGKILLed while it assembled a record set left the job active
  // for the fixed 15-minute lease, and the referral's records waited that long. The lease is
  // now a setting (ASSEMBLY_ATTEMPT_TIMEOUT_SECONDS), like the post-back's.
  it('the record assembly lease is ASSEMBLY_ATTEMPT_TIMEOUT_SECONDS (default 900 s); the post-back leases keep theirs', () => {
    const lease = (policies: ReturnType<typeof queuePolicies>, name: string) => policies.find((p) => p.name === name)?.expireInSeconds;
    expect(lease(queuePolicies(), QUEUE.assembleRecordSet)).toBe(900);
    const short = queuePolicies({ assemblyAttemptTimeoutSeconds: 30, deliveryAttemptTimeoutSeconds: 25 });
    expect(lease(short, QUEUE.assembleRecordSet)).toBe(30);
    expect(lease(short, QUEUE.deliverOpinion)).toBe(25);
    expect(lease(short, QUEUE.notifyWebhook)).toBe(30);
  });

  // Found by the soak: a replica SIGKILLed while it sent notifications left those jobs active
  // for a fixed 2-minute lease, though one attempt is a POST of at most WEBHOOK_TIMEOUT_MS; the
  // receivers heard of those Task changes two minutes late. The lease now follows the timeout.
  it('the notification leases are the webhook timeout plus 25 s (30 s by default)', () => {
    const lease = (policies: ReturnType<typeof queuePolicies>, name: string) => policies.find((p) => p.name === name)?.expireInSeconds;
    for (const name of [QUEUE.notifyWebhook, QUEUE.notifySubscription]) {
      expect(lease(queuePolicies(), name)).toBe(30);
      expect(lease(queuePolicies({ webhook: { retryLimit: 3, retryDelaySeconds: 1, timeoutMs: 20_000 } }), name)).toBe(45);
      expect(lease(queuePolicies({ webhook: { retryLimit: 3, retryDelaySeconds: 1, timeoutMs: 2_500 } }), name)).toBe(28);
    }
    expect(notificationLeaseSeconds()).toBe(30);
  });

  // Found by the soak: an EHR fault of five requests failed four attempts of one referral's
  // assembly in a row, and the fixed backoff (5 s doubling) then held its records for four and a
  // half minutes. The delays are settings now (ASSEMBLY_RETRY_*), like the post-back's.
  it('the record assembly retries after ASSEMBLY_RETRY_DELAY_SECONDS doubling up to ASSEMBLY_RETRY_MAX_DELAY_SECONDS (default 5 s and 3600 s, 12 retries)', () => {
    const assembly = (policies: ReturnType<typeof queuePolicies>) => policies.find((p) => p.name === QUEUE.assembleRecordSet);
    expect(assembly(queuePolicies())).toMatchObject({ retryLimit: 12, retryDelaySeconds: 5, retryDelayMaxSeconds: 3600 });
    expect(assembly(queuePolicies({ assemblyRetry: { retryDelaySeconds: 1, retryDelayMaxSeconds: 4 } }))).toMatchObject({ retryLimit: 12, retryDelaySeconds: 1, retryDelayMaxSeconds: 4 });
  });
});
