import { describe, expect, it } from 'vitest';
import { QUEUE, queuePolicies } from './queues.ts';

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
    expect(lease(short, QUEUE.notifyWebhook)).toBe(120);
  });
});
