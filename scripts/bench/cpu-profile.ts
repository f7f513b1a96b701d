/**
 * Summarises a V8 .cpuprofile (from `--cpu-prof` or the inspector's Profiler) for the
 * benchmark: where the busy time of the service process went, by function (self time),
 * by package or source folder (self and inclusive), and for a few named steps of the intake
 * path (inclusive). Minified packages (e.g. @medplum/core) are mapped back to their original
 * source through their source maps, so functions are named.
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Share {
  label: string;
  ms: number;
  /** Share of the busy (non-idle) time, 0..1. */
  share: number;
}

export interface ProfileSummary {
  wallMs: number;
  busyMs: number;
  topSelf: Share[];
  byPackageSelf: Share[];
  byPackageInclusive: Share[];
  steps: Share[];
}

/** Named steps of the intake path, measured inclusive (the frame and everything it calls, synchronously). */
const STEPS: { label: string; fn: string; file: string }[] = [
  { label: 'FHIR validation: validator.validate (src/fhir/validator.ts validateWith)', fn: 'validateWith', file: 'src/fhir/validator.ts' },
  { label: '  of which Medplum validateTypedValue/validateResource', fn: 'medplumIssues', file: 'src/fhir/validator.ts' },
  { label: 'store.createMany, synchronous part (validation, rows)', fn: 'createMany', file: 'src/store/resource-store.ts' },
  { label: 'drizzle: building SQL + params (sqlToQuery)', fn: 'sqlToQuery', file: 'drizzle-orm/pg-core/dialect.js' },
  { label: 'pg: client.query (serialise, write to socket)', fn: 'query', file: 'pg/lib/client.js' },
  { label: 'zod: parseBody(IntakeRequestSchema)', fn: 'parseBody', file: 'src/http/parse-body.ts' },
  { label: 'bearer: verifyAccessToken', fn: 'verifyAccessToken', file: 'src/auth/access-token.ts' },
  { label: 'buildReferral (FHIR resources from the request)', fn: 'buildReferral', file: 'src/intake/build-referral.ts' },
  { label: 'hashRequest (canonical JSON + sha256)', fn: 'hashRequest', file: 'src/intake/create-second-opinion.ts' },
  { label: 'express.json body parser (jsonParser)', fn: 'jsonParser', file: 'body-parser/lib/types/json.js' },
  { label: 'res.json (serialise the 201 body)', fn: 'json', file: 'express/lib/response.js' },
  { label: 'request log/context (requestContext middleware)', fn: '', file: 'src/http/request-context.ts' },
];

const ROOT = process.cwd();
const sourceMaps = new Map<string, SourceMap | null>();

function sourceMapFor(url: string): SourceMap | null {
  if (sourceMaps.has(url)) return sourceMaps.get(url) ?? null;
  let map: SourceMap | null = null;
  try {
    const file = fileURLToPath(url);
    if (file.includes(`${path.sep}node_modules${path.sep}`) && existsSync(`${file}.map`)) {
      map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8')) as ConstructorParameters<typeof SourceMap>[0]);
    }
  } catch {
    map = null;
  }
  sourceMaps.set(url, map);
  return map;
}

/** `@scope/name` or `name` of a node_modules file, a `src/<folder>` of ours, or a V8/Node bucket. */
function bucketOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) {
    if (functionName.startsWith('(')) return functionName; // (program), (garbage collector), (idle), (root)
    return '(V8 builtins/native)';
  }
  if (url.startsWith('node:')) return 'node: core (http, net, streams, crypto…)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const rel = url.startsWith('file://') ? path.relative(ROOT, fileURLToPath(url)) : url;
  const parts = rel.split(path.sep);
  return parts[0] === 'src' && parts.length > 2 ? `src/${parts[1]}` : rel;
}

function shortLocation(url: string): string {
  if (!url) return '';
  if (url.startsWith('node:')) return url;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  return url.startsWith('file://') ? path.relative(ROOT, fileURLToPath(url)) : url;
}

function describeFrame(frame: CallFrame): string {
  const map = frame.url ? sourceMapFor(frame.url) : null;
  if (map) {
    const entry = map.findEntry(frame.lineNumber, frame.columnNumber) as { originalSource?: string; originalLine?: number; name?: string };
    if (entry.originalSource) {
      const src = entry.originalSource.replace(/^(\.\.\/)+/, '').replace(/^webpack:\/\//, '');
      const name = entry.name ?? (frame.functionName || '(anonymous)');
      return `${name}  [${bucketOf(frame)}: ${src}:${(entry.originalLine ?? 0) + 1}]`;
    }
  }
  return `${frame.functionName || '(anonymous)'}  [${shortLocation(frame.url)}:${frame.lineNumber + 1}]`;
}

export function summariseProfile(profile: CpuProfile, top = 20): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const selfByFrame = new Map<string, number>();
  const selfByBucket = new Map<string, number>();
  const inclByBucket = new Map<string, number>();
  const inclByStep = new Map<string, number>();
  const frameKey = new Map<number, string>();
  let busy = 0;
  let idle = 0;

  const stepOf = (frame: CallFrame): string[] =>
    STEPS.filter((s) => (s.fn === '' || frame.functionName === s.fn) && frame.url.includes(s.file)).map((s) => s.label);

  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    const dt = (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0) / 1000;
    const node = byId.get(id);
    if (!node) continue;
    if (node.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    busy += dt;
    let key = frameKey.get(id);
    if (key === undefined) {
      key = describeFrame(node.callFrame);
      frameKey.set(id, key);
    }
    selfByFrame.set(key, (selfByFrame.get(key) ?? 0) + dt);
    const bucket = bucketOf(node.callFrame);
    selfByBucket.set(bucket, (selfByBucket.get(bucket) ?? 0) + dt);

    const buckets = new Set<string>();
    const steps = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = byId.get(cur)!.callFrame;
      buckets.add(bucketOf(frame));
      for (const s of stepOf(frame)) steps.add(s);
    }
    for (const b of buckets) inclByBucket.set(b, (inclByBucket.get(b) ?? 0) + dt);
    for (const s of steps) inclByStep.set(s, (inclByStep.get(s) ?? 0) + dt);
  }

  const shares = (m: Map<string, number>, n: number): Share[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([label, ms]) => ({ label, ms, share: busy > 0 ? ms / busy : 0 }));
  return {
    wallMs: busy + idle,
    busyMs: busy,
    topSelf: shares(selfByFrame, top),
    byPackageSelf: shares(selfByBucket, 14),
    // Node core and V8 builtins are at the bottom of nearly every stack: inclusive, they say nothing.
    byPackageInclusive: shares(inclByBucket, 17).filter((s) => !s.label.startsWith('(') && !s.label.startsWith('node:')),
    steps: STEPS.map((s) => ({ label: s.label, ms: inclByStep.get(s.label) ?? 0, share: busy > 0 ? (inclByStep.get(s.label) ?? 0) / busy : 0 })),
  };
}

export function formatSummary(summary: ProfileSummary, requests: number): string {
  const pct = (s: number) => `${(s * 100).toFixed(1).padStart(5)}%`;
  const perReq = (ms: number) => (requests > 0 ? `${((ms * 1000) / requests).toFixed(0).padStart(5)} µs/req` : '');
  const lines: string[] = [];
  lines.push(
    `service CPU profile: busy ${(summary.busyMs / 1000).toFixed(1)} s of ${(summary.wallMs / 1000).toFixed(1)} s sampled ` +
      `(${((summary.busyMs / summary.wallMs) * 100).toFixed(0)}% of one core), ${requests} intake requests ` +
      `-> ${requests > 0 ? ((summary.busyMs * 1000) / requests).toFixed(0) : '?'} µs of service CPU (main thread) per request`,
  );
  lines.push('', 'intake steps (inclusive, % of busy time):');
  for (const s of summary.steps) lines.push(`  ${pct(s.share)}  ${perReq(s.ms)}  ${s.label}`);
  lines.push('', 'by package / folder (self time):');
  for (const s of summary.byPackageSelf) lines.push(`  ${pct(s.share)}  ${perReq(s.ms)}  ${s.label}`);
  lines.push('', 'by package / folder (inclusive: on the stack):');
  for (const s of summary.byPackageInclusive) lines.push(`  ${pct(s.share)}  ${perReq(s.ms)}  ${s.label}`);
  lines.push('', 'top functions by self time:');
  for (const s of summary.topSelf) lines.push(`  ${pct(s.share)}  ${perReq(s.ms)}  ${s.label}`);
  return lines.join('\n');
}

/**
 * The samples of a V8 CPU profile that fall within any of `windows` (CLOCK_MONOTONIC µs, the
 * clock of .cpuprofile timestamps), as a profile of its own; undefined when none does.
 */
export function profileWindow(profile: CpuProfile, windows: readonly (readonly [number, number])[]): CpuProfile | undefined {
  const samples: number[] = [];
  const deltas: number[] = [];
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (!windows.some(([a, b]) => t >= a && t <= b)) continue;
    samples.push(profile.samples[i] as number);
    // Each sample keeps its own interval: the gaps between windows count for nothing.
    deltas.push(profile.timeDeltas[i] ?? 0);
  }
  if (samples.length === 0) return undefined;
  return { ...profile, samples, timeDeltas: deltas, startTime: windows[0]?.[0] ?? profile.startTime, endTime: windows[windows.length - 1]?.[1] ?? profile.endTime };
}
