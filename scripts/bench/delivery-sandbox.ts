/**
 * The sandbox EHR of `npm run bench:delivery`, in its own process (so the EHR's work does not
 * share the event loop of the service under test), talking to the parent over Node IPC.
 *
 * It reports the moment each DocumentReference / Communication create finishes: the sandbox
 * records every request (`requests`) and sets `status` when the response has been written
 * (`res.on('finish')`), so a setter on that field sees the instant the 201 (or 200 for a
 * conditional create that found an existing resource) left the server. The identifier comes
 * from the `If-None-Exist` header (`identifier=system|value`), so no body is parsed twice.
 * Times are CLOCK_MONOTONIC (`process.hrtime`), the same clock in every process of the machine.
 *
 * With BENCH_EHR_INDEXED=1 the sandbox answers `If-None-Exist: identifier=system|value` from an
 * identifier index instead of fhir-router's MemoryRepository scan, which evaluates the search
 * on every stored resource of the type (~0.6 ms each: `matchesSearchRequest`), so a
 * conditional create costs O(stored documents). Same answers (one match: that resource, 200;
 * none: create, 201); it shows what the service does against an EHR that indexes identifiers,
 * as real ones do. Off by default: the sandbox as the flow tests use it.
 *
 * Child -> parent: {@link SandboxMessage}. Parent -> child: {@link SandboxCommand}.
 * The child exits when the parent disconnects (it never outlives the bench).
 */
import { allOk, created, Operator, parseSearchRequest, type SearchRequest } from '@medplum/core';
import type { MemoryRepository } from '@medplum/fhir-router';
import type { DocumentReference, Resource } from '@medplum/fhirtypes';
import type { RecordedRequest } from '../../test/support/sandbox-ehr/server.ts';
import type { SeededIds } from '../../test/support/sandbox-ehr/seed.ts';
import { startSandboxEhr } from '../../test/support/sandbox-ehr/server.ts';

/** One create of a DocumentReference or Communication, as the sandbox answered it. */
export interface Arrival {
  resourceType: 'DocumentReference' | 'Communication';
  /** From If-None-Exist; empty for a plain create. */
  system: string;
  value: string;
  status: number;
  /** CLOCK_MONOTONIC, ms (process.hrtime.bigint() / 1e6). */
  atMs: number;
}

export type SandboxMessage =
  | { type: 'ready'; pid: number; url: string; baseUrl: string; tokenUrl: string; startupMs: number; seeded: SeededIds }
  | { type: 'arrivals'; arrivals: Arrival[] }
  | { type: 'reply'; id: number; value?: unknown; error?: string };

export type SandboxCommand =
  | { type: 'identifiers'; id: number; resourceType: 'DocumentReference' | 'Communication' }
  | { type: 'document'; id: number; system: string; value: string }
  | { type: 'usage'; id: number }
  | { type: 'stop'; id: number };

/** What `identifiers` answers: how many resources of the type carry each `system|value`. */
export type IdentifierCounts = Record<string, number>;

const monoMs = () => Number(process.hrtime.bigint()) / 1e6;
const send = (message: SandboxMessage) => process.send?.(message);

async function main(): Promise<void> {
  if (!process.send) throw new Error('delivery-sandbox.ts runs as an IPC child of scripts/bench-delivery.ts');
  const ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: 100_000 } });
  if (process.env.BENCH_EHR_INDEXED === '1') indexIdentifiers(ehr.repo);

  // Arrivals are sent in small batches (every 5 ms) so IPC costs little per request.
  let pending: Arrival[] = [];
  let flushTimer: NodeJS.Timeout | undefined;
  const flush = () => {
    flushTimer = undefined;
    if (pending.length === 0) return;
    send({ type: 'arrivals', arrivals: pending });
    pending = [];
  };
  const requests = ehr.requests;
  const push = requests.push.bind(requests);
  requests.push = (...items: RecordedRequest[]) => {
    for (const record of items) {
      const match = /^\/fhir\/R4\/(DocumentReference|Communication)\/?(\?|$)/.exec(record.path);
      if (record.method !== 'POST' || !match) continue;
      const resourceType = match[1] as Arrival['resourceType'];
      const header = record.headers['if-none-exist'];
      const query = new URLSearchParams(Array.isArray(header) ? header[0] : (header ?? ''));
      const identifier = query.get('identifier') ?? '';
      const bar = identifier.indexOf('|');
      const system = bar >= 0 ? identifier.slice(0, bar) : '';
      const value = bar >= 0 ? identifier.slice(bar + 1) : identifier;
      let status: number | undefined;
      Object.defineProperty(record, 'status', {
        enumerable: true,
        configurable: true,
        get: () => status,
        set: (code: number) => {
          status = code;
          pending.push({ resourceType, system, value, status: code, atMs: monoMs() });
          flushTimer ??= setTimeout(flush, 5);
        },
      });
    }
    // Keep memory flat: nothing else reads the recorded requests here.
    const n = push(...items);
    if (requests.length > 10_000) requests.splice(0, requests.length - 1_000);
    return n;
  };

  const cpu0 = process.cpuUsage();
  process.on('message', (raw: SandboxCommand) => {
    void (async () => {
      try {
        switch (raw.type) {
          case 'identifiers': {
            const all = (await ehr.repo.searchResources(parseSearchRequest(`${raw.resourceType}?_count=100000`))) as Resource[];
            const counts: IdentifierCounts = {};
            for (const r of all) {
              for (const i of (r as { identifier?: { system?: string; value?: string }[] }).identifier ?? []) {
                const key = `${i.system ?? ''}|${i.value ?? ''}`;
                counts[key] = (counts[key] ?? 0) + 1;
              }
            }
            send({ type: 'reply', id: raw.id, value: { total: all.length, counts } });
            break;
          }
          case 'document': {
            const found = (await ehr.repo.searchResources(parseSearchRequest(`DocumentReference?identifier=${encodeURIComponent(`${raw.system}|${raw.value}`)}`))) as DocumentReference[];
            send({ type: 'reply', id: raw.id, value: found[0] });
            break;
          }
          case 'usage': {
            const cpu = process.cpuUsage(cpu0);
            send({ type: 'reply', id: raw.id, value: { cpuMs: (cpu.user + cpu.system) / 1000, rss: process.memoryUsage().rss } });
            break;
          }
          case 'stop': {
            flush();
            await ehr.stop();
            send({ type: 'reply', id: raw.id, value: true });
            process.disconnect();
            break;
          }
        }
      } catch (err) {
        send({ type: 'reply', id: raw.id, error: (err as Error).message });
      }
    })();
  });
  process.on('disconnect', () => {
    void ehr.stop().finally(() => process.exit(0));
  });
  send({ type: 'ready', pid: process.pid, url: ehr.url, baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, startupMs: ehr.startupMs, seeded: ehr.seeded });
}

/**
 * Conditional creates on a single `identifier=system|value` answered from a map kept by
 * wrapping `createResource` (every create, conditional or not, passes there). Other searches
 * fall through to the repository's own conditional create. Updates that change identifiers
 * are not tracked (nothing in the bench does that).
 */
function indexIdentifiers(repo: MemoryRepository): void {
  // Key -> the stored resource; set synchronously with the create, so two concurrent
  // conditional creates of one identifier cannot both miss.
  const index = new Map<string, Promise<Resource>>();
  const indexed = new Set<string>();
  const keysOf = (r: Resource) => ((r as { identifier?: { system?: string; value?: string }[] }).identifier ?? []).map((i) => `${r.resourceType}|${i.system ?? ''}|${i.value ?? ''}`);
  const add = (r: Resource, stored: Promise<Resource>) => {
    for (const key of keysOf(r)) if (!index.has(key)) index.set(key, stored);
  };
  const ensureType = (type: string) => {
    if (indexed.has(type)) return;
    indexed.add(type);
    // MemoryRepository searches synchronously (searchSync); no filter, so no per-resource match cost.
    const scan = (repo as unknown as { searchSync(s: SearchRequest): { entry?: { resource?: Resource }[] } }).searchSync(parseSearchRequest(`${type}?_count=100000`));
    for (const r of scan.entry ?? []) if (r.resource) add(r.resource, Promise.resolve(r.resource));
  };
  const createResource = repo.createResource.bind(repo) as (r: Resource, ...a: unknown[]) => Promise<Resource>;
  repo.createResource = ((resource: Resource, ...rest: unknown[]) => {
    const stored = createResource(resource, ...rest);
    if (indexed.has(resource.resourceType)) add(resource, stored);
    return stored;
  }) as typeof repo.createResource;
  const conditionalCreate = repo.conditionalCreate.bind(repo) as (r: Resource, s: SearchRequest, o?: unknown) => Promise<unknown>;
  repo.conditionalCreate = (async (resource: Resource, search: SearchRequest, options?: unknown) => {
    const filter = search.filters?.length === 1 ? search.filters[0] : undefined;
    const value = filter?.value ?? '';
    if (search.resourceType !== resource.resourceType || filter?.code !== 'identifier' || filter.operator !== Operator.EQUALS || !value.includes('|') || value.includes(',')) {
      return conditionalCreate(resource, search, options);
    }
    ensureType(resource.resourceType);
    const existing = index.get(`${resource.resourceType}|${value}`);
    if (existing) {
      const found = await existing;
      return { resource: await repo.readResource(found.resourceType, found.id as string), outcome: allOk };
    }
    return { resource: await repo.createResource(resource, options as never), outcome: created };
  }) as typeof repo.conditionalCreate;
}

main().catch((err: unknown) => {
  process.stderr.write(`delivery sandbox failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
