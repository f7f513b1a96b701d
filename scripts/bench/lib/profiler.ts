/**
 * The V8 sampling profiler of this process through the inspector: what `--cpu-prof` of the
 * benches records (bench:delivery in its own process, the children of bench:intake on command).
 */
import { Session } from 'node:inspector/promises';
import type { CpuProfile } from '../cpu-profile.ts';

/** Starts sampling every `intervalUs` µs; `stop()` ends it and returns the profile. */
export async function startProfiler(intervalUs = 500): Promise<{ stop(): Promise<CpuProfile> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: intervalUs });
  await session.post('Profiler.start');
  return {
    async stop() {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      return profile as unknown as CpuProfile;
    },
  };
}
