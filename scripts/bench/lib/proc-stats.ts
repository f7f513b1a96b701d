/**
 * RSS and CPU sampling of other processes from /proc (Linux): the service under test, its
 * PostgreSQL backends. Figures are bytes and milliseconds.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

/** VmRSS and VmHWM of a process, bytes. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

const CLOCK_TICKS = 100; // USER_HZ on Linux
/** utime + stime of a process, ms; 0 once it is gone. */
export function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/**
 * CPU (ms) of PostgreSQL's processes by pid: the backends serving `database` (their process
 * title names it) and, apart, the server-wide writers (walwriter, checkpointer, background
 * writer), which other databases on the server share.
 */
function postgresCpu(database: string): Map<number, { cpuMs: number; shared: boolean }> {
  const out = new Map<number, { cpuMs: number; shared: boolean }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let title: string;
    try {
      title = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!title.startsWith('postgres: ')) continue;
    const mine = title.includes(` ${database} `);
    const shared = /: (walwriter|checkpointer|background writer)/.test(title);
    if (mine || shared) out.set(Number(entry), { cpuMs: cpuMsOf(Number(entry)), shared });
  }
  return out;
}

/** Accumulates PostgreSQL CPU over a run from snapshots (backends come and go with the pool). */
export function postgresCpuTracker(database: string): { sample(): void; total(): { backends: number; writers: number } } {
  const start = postgresCpu(database);
  const latest = new Map(start);
  const sample = () => {
    for (const [pid, v] of postgresCpu(database)) latest.set(pid, v);
  };
  return {
    sample,
    total() {
      sample();
      let backends = 0;
      let writers = 0;
      for (const [pid, v] of latest) {
        const used = v.cpuMs - (start.get(pid)?.cpuMs ?? 0);
        if (v.shared) writers += used;
        else backends += used;
      }
      return { backends, writers };
    },
  };
}

export interface RssPeak {
  /** Largest VmRSS sampled. */
  peakRss: number;
  /** VmHWM at the end: the kernel's own peak since the sampler started. */
  hwm: number;
  samples: number;
  /** Largest gap between two samples (a busy event loop here delays them). */
  maxGapMs: number;
}

/**
 * Samples a process's VmRSS every `everyMs` until `stop()`; resets its VmHWM first
 * (/proc/<pid>/clear_refs), so the HWM read at the end is the peak of this span alone.
 */
export function sampleRss(pid: number, everyMs: number): { stop(): RssPeak } {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
  let peakRss = memoryOf(pid).rss;
  let samples = 0;
  let last = performance.now();
  let maxGapMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    samples++;
    try {
      peakRss = Math.max(peakRss, memoryOf(pid).rss);
    } catch {
      // the process is gone: the caller finds out
    }
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      let hwm = NaN;
      try {
        hwm = memoryOf(pid).hwm;
      } catch {
        // gone
      }
      return { peakRss, hwm, samples, maxGapMs };
    },
  };
}
