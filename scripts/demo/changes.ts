/**
 * "Which FHIR resources changed" for each step of the demo, found the way any client could:
 *
 * - on the service: `GET /fhir/{type}?_lastUpdated=ge{since}` as the referrer and as each
 *   consultant (each sees only what it may read; the union is what changed, and who saw it
 *   says who may read it), then `_history` to list every version written in the step; the
 *   disclosures among the AuditEvents, as the auditor (`AuditEvent?subtype=disclose`); the
 *   Subscriptions a step created, read by their owner (only the owner may see one);
 * - on the sandbox EHR: a FHIR search of the types the service may write or read there,
 *   compared with the previous snapshot; and the sandbox's request log, to say what the
 *   service asked of the EHR (the demo's own reads are left out).
 */
import type { AuditEvent, Bundle, Communication, Consent, DocumentReference, Provenance, Resource, ServiceRequest, Subscription, Task } from '@medplum/fhirtypes';
import { SYSTEM } from '../../src/fhir/constants.ts';
import type { SandboxEhr } from '../../test/support/sandbox-ehr/server.ts';
import { DEMO_USER_AGENT, DemoError, type EhrClient, outcomeText, type Reply, type ServiceClient } from './http.ts';
import { out } from './print.ts';

/** Types the service serves on /fhir that a referral touches (AuditEvents are handled apart). */
const SERVICE_TYPES = ['ServiceRequest', 'Task', 'Bundle', 'DocumentReference', 'DiagnosticReport', 'ImagingStudy', 'Provenance', 'Communication'] as const;
/** Types on the EHR the demo watches: the consent it records, and what the post-back writes. */
const EHR_TYPES = ['Consent', 'DocumentReference', 'Communication'] as const;

interface Seen {
  versions: Resource[];
  seenBy: Set<string>;
}

export interface TrackerOptions {
  service: ServiceClient;
  ehr: SandboxEhr;
  ehrClient: EhrClient;
  /** Participant id -> short name, for every participant whose view is searched. */
  viewers: Record<string, string>;
  /** The auditor participant (reads the disclosure AuditEvents). */
  auditor: string;
}

export class ChangeTracker {
  private readonly opts: TrackerOptions;
  private since = new Date();
  private readonly reported = new Set<string>();
  private readonly labels = new Map<string, string>();
  private ehrSnapshot = new Map<string, string>();
  private ehrRequestIndex = 0;
  /** Subscriptions to report: id -> owner and the state last reported. */
  private readonly subscriptions = new Map<string, { owner: string; reported?: string }>();

  constructor(opts: TrackerOptions) {
    this.opts = opts;
  }

  /** Starts watching: what exists now is the baseline. */
  async baseline(): Promise<void> {
    this.since = new Date();
    this.ehrSnapshot = new Map((await this.ehrResources()).map((r) => [`${r.resourceType}/${r.id}`, r.meta?.versionId ?? '']));
    this.ehrRequestIndex = this.opts.ehr.requests.length;
  }

  /** A name for a resource, shown next to it (e.g. "record set, revision 0"). */
  label(reference: string, text: string): void {
    this.labels.set(reference, text);
  }

  /** Reports Subscription/`id` (read as its `owner`) from now on: created, and each change of its status. */
  watchSubscription(owner: string, id: string): void {
    this.subscriptions.set(id, { owner });
  }

  /**
   * Prints what changed since the last report, on the service and on the EHR, and what the
   * service asked of the EHR. Everything is cut off at the moment the report starts: what
   * background jobs write while it runs belongs to the next report.
   */
  async report(): Promise<void> {
    const since = this.since;
    const cutoff = new Date();
    this.since = cutoff;
    const calls = this.ehrCalls();
    const ehrLines = await this.ehrChanges();
    const serviceLines = await this.serviceChanges(since, cutoff);
    const auditLines = [...(await this.subscriptionChanges()), ...(await this.disclosures(since, cutoff))];
    if (serviceLines.length + auditLines.length === 0) out('   FHIR resources changed on the service: none');
    else out('   FHIR resources changed on the service:');
    for (const l of [...serviceLines, ...auditLines]) out(`     ${l}`);
    if (calls.length) out(`   The service called St Olaf's EHR: ${calls.join(', ')}`);
    if (ehrLines.length) {
      out("   FHIR resources changed on St Olaf's EHR (sandbox):");
      for (const l of ehrLines) out(`     ${l}`);
    }
  }

  /** Every match of a search, following `next` links; none when the participant's scopes do not cover the type (403). */
  private async search<T extends Resource>(participant: string, path: string): Promise<T[]> {
    const found: T[] = [];
    let next: string | undefined = path;
    while (next) {
      const reply: Reply<Bundle<T>> = await this.opts.service.call<Bundle<T>>(participant, 'GET', next);
      if (reply.status === 403) return [];
      if (reply.status !== 200) throw new DemoError(`GET ${next} as ${participant}: HTTP ${reply.status}: ${outcomeText(reply.body)}`);
      for (const e of reply.body.entry ?? []) if (e.search?.mode !== 'outcome' && e.resource) found.push(e.resource);
      const link: string | undefined = reply.body.link?.find((l) => l.relation === 'next')?.url;
      next = link ? link.slice(this.opts.service.url.length) : undefined;
    }
    return found;
  }

  private async serviceChanges(since: Date, cutoff: Date): Promise<string[]> {
    const seen = new Map<string, Seen>();
    for (const participant of Object.keys(this.opts.viewers)) {
      for (const type of SERVICE_TYPES) {
        for (const resource of await this.search(participant, `/fhir/${type}?_lastUpdated=ge${since.toISOString()}&_count=100`)) {
          const key = `${type}/${resource.id}`;
          const entry = seen.get(key) ?? { versions: [resource], seenBy: new Set<string>() };
          entry.seenBy.add(participant);
          seen.set(key, entry);
        }
      }
    }
    const lines: { type: number; at: number; text: string }[] = [];
    for (const [key, entry] of seen) {
      const current = entry.versions[0] as Resource;
      let versions = [current];
      if (Number(current.meta?.versionId) > 1) {
        const reader = [...entry.seenBy][0] as string;
        const history = await this.opts.service.expect<Bundle>(200, reader, 'GET', `/fhir/${key}/_history`);
        versions = (history.body.entry ?? []).map((e) => e.resource as Resource).reverse();
      }
      const fresh = versions.filter((v) => {
        const at = new Date(v.meta?.lastUpdated ?? 0);
        return !this.reported.has(`${key}/_history/${v.meta?.versionId}`) && at >= since && at < cutoff;
      });
      if (fresh.length === 0) continue;
      for (const v of fresh) this.reported.add(`${key}/_history/${v.meta?.versionId}`);
      const first = fresh[0] as Resource;
      const last = fresh[fresh.length - 1] as Resource;
      const created = first.meta?.versionId === '1';
      const span = fresh.length > 1 || !created ? `v${created ? 1 : Number(first.meta?.versionId) - 1}->v${last.meta?.versionId}` : 'v1';
      const states = fresh.map(stateOf).filter((st, i, all) => st && st !== all[i - 1]);
      const label = this.labels.get(key);
      const who = [...entry.seenBy].map((p) => this.opts.viewers[p]).join(', ');
      lines.push({
        type: SERVICE_TYPES.indexOf(key.split('/')[0] as (typeof SERVICE_TYPES)[number]),
        at: new Date(first.meta?.lastUpdated ?? 0).getTime(),
        text: `${created ? '+' : '~'} ${key} ${span}  ${states.join(' -> ')}${detailOf(last) ? `; ${detailOf(last)}` : ''}${label ? ` (${label})` : ''}  {${who}}`,
      });
    }
    // By type, then in the order they were written.
    return lines.sort((a, b) => a.type - b.type || a.at - b.at).map((l) => l.text);
  }

  private async subscriptionChanges(): Promise<string[]> {
    const lines: string[] = [];
    for (const [id, watched] of this.subscriptions) {
      const sub = (await this.opts.service.expect<Subscription>(200, watched.owner, 'GET', `/fhir/Subscription/${id}`)).body;
      if (sub.status === watched.reported) continue;
      const filters = ((sub as { _criteria?: { extension?: { valueString?: string }[] } })._criteria?.extension ?? []).map((e) => e.valueString).join(' & ');
      const payload = (sub.channel as { _payload?: { extension?: { valueCode?: string }[] } })._payload?.extension?.[0]?.valueCode ?? 'id-only';
      const detail = watched.reported === undefined ? `; topic ${sub.criteria.split('/').at(-1)}${filters ? ` (${filters})` : ''}, ${payload}, to ${sub.channel.endpoint}` : '';
      lines.push(`${watched.reported === undefined ? '+' : '~'} Subscription/${id}  ${watched.reported ? `${watched.reported} -> ` : ''}${sub.status}${detail}  {${this.opts.viewers[watched.owner] ?? watched.owner} only}`);
      watched.reported = sub.status;
    }
    return lines;
  }

  private async disclosures(since: Date, cutoff: Date): Promise<string[]> {
    const events = await this.search<AuditEvent>(this.opts.auditor, `/fhir/AuditEvent?subtype=disclose&date=ge${since.toISOString()}&_count=100`);
    return events
      .filter((e) => !this.reported.has(`AuditEvent/${e.id}`) && new Date(e.recorded) < cutoff)
      .map((e) => {
        this.reported.add(`AuditEvent/${e.id}`);
        const agent = e.agent?.find((a) => a.who?.reference?.startsWith('Organization/'))?.who;
        const result = e.outcome === '0' ? 'success' : `outcome ${e.outcome}`;
        return `+ AuditEvent/${e.id} v1  disclose, ${result}; ${e.outcomeDesc ?? e.entity?.[0]?.description ?? ''}${agent ? ` [agent ${agent.display ?? agent.reference}]` : ''}`.replace(/; \[/, ' [');
      });
  }

  private async ehrResources(): Promise<Resource[]> {
    const all: Resource[] = [];
    for (const type of EHR_TYPES) {
      const bundle = await this.opts.ehrClient.get<Bundle>(`${type}?_count=500`);
      for (const e of bundle.entry ?? []) if (e.resource) all.push(e.resource);
    }
    return all;
  }

  private async ehrChanges(): Promise<string[]> {
    const now = await this.ehrResources();
    const lines: string[] = [];
    for (const r of now) {
      const key = `${r.resourceType}/${r.id}`;
      const before = this.ehrSnapshot.get(key);
      if (before === r.meta?.versionId) continue;
      lines.push(`${before === undefined ? '+' : '~'} ${key}  ${ehrDetailOf(r)}`);
    }
    this.ehrSnapshot = new Map(now.map((r) => [`${r.resourceType}/${r.id}`, r.meta?.versionId ?? '']));
    return lines;
  }

  /** The service's requests to the EHR since the last report, grouped: `GET Consent/consent-demo`, `POST DocumentReference ×2`. */
  private ehrCalls(): string[] {
    const requests = this.opts.ehr.requests.slice(this.ehrRequestIndex);
    this.ehrRequestIndex = this.opts.ehr.requests.length;
    const counts = new Map<string, number>();
    for (const r of requests) {
      if (r.headers['user-agent'] === DEMO_USER_AGENT) continue;
      const where = r.origin === 'storage' ? 'storage object' : r.path.split('?')[0]?.replace(/^\/fhir\/R4\//, '') ?? r.path;
      const what = `${r.method} ${where}${r.path.includes('?') && r.origin === 'ehr' ? '?…' : ''}${r.status && r.status >= 400 ? ` (HTTP ${r.status})` : ''}`;
      counts.set(what, (counts.get(what) ?? 0) + 1);
    }
    return [...counts].map(([what, n]) => (n > 1 ? `${what} ×${n}` : what));
  }
}

/** The headline state of one version: status and business status. */
function stateOf(r: Resource): string {
  switch (r.resourceType) {
    case 'Task': {
      const t = r as Task;
      const bs = t.businessStatus?.coding?.[0]?.code;
      return `${t.status}${bs ? `/${bs}` : ''}`;
    }
    case 'ServiceRequest':
      return (r as ServiceRequest).status;
    case 'DocumentReference':
      return (r as DocumentReference).status;
    case 'Bundle':
      return (r as Bundle).type;
    case 'Provenance':
      return (r as Provenance).activity?.coding?.[0]?.code ?? '';
    default:
      return (r as { status?: string }).status ?? '';
  }
}

/** What a version is, in a few words. */
function detailOf(r: Resource): string {
  switch (r.resourceType) {
    case 'Task':
      return `owner ${(r as Task).owner?.display ?? (r as Task).owner?.reference}`;
    case 'ServiceRequest': {
      const sr = r as ServiceRequest;
      const bundles = (sr.supportingInfo ?? []).filter((s) => s.reference?.startsWith('Bundle/')).length;
      return `${sr.code?.coding?.[0]?.display ?? sr.code?.coding?.[0]?.code ?? ''}, priority ${sr.priority}${bundles ? `, ${bundles} record set${bundles > 1 ? 's' : ''} in supportingInfo` : ''}`;
    }
    case 'Bundle':
      return plural((r as Bundle).entry?.length ?? 0, 'entry', 'entries');
    case 'DocumentReference': {
      const d = r as DocumentReference;
      if (d.identifier?.some((i) => i.system === SYSTEM.consultNoteId)) return 'consult note';
      return `copy of ${shortSource(r)} (${d.type?.coding?.[0]?.display ?? d.type?.text ?? 'document'})`;
    }
    case 'DiagnosticReport':
    case 'ImagingStudy':
      return `copy of ${shortSource(r)}`;
    case 'Communication': {
      const c = r as Communication;
      return c.inResponseTo?.length ? `follow-up answer to ${c.inResponseTo[0]?.reference}` : 'follow-up question';
    }
    case 'Provenance': {
      const p = r as Provenance;
      const targets = p.target.map((t) => t.reference ?? '');
      return `of ${targets[0]}${targets.length > 1 ? ` and ${targets.length - 1} more` : ''}, by ${p.agent[0]?.who?.display ?? p.agent[0]?.who?.reference ?? '?'}`;
    }
    default:
      return '';
  }
}

/** `meta.source` of a copy, relative to the EHR's FHIR base ("St Olaf EHR DocumentReference/<its id on the EHR>"). */
function shortSource(r: Resource): string {
  const source = r.meta?.source ?? '';
  const m = /\/fhir\/R4\/(.+)$/.exec(source);
  return m ? `EHR ${m[1]}` : source || 'an EHR record';
}

function ehrDetailOf(r: Resource): string {
  switch (r.resourceType) {
    case 'Consent': {
      const c = r as Consent;
      return `${c.status}, ${c.provision?.type} disclosure to ${(c.provision?.actor ?? []).map((a) => a.reference?.display ?? a.reference?.reference).join(' and ')} until ${c.provision?.period?.end?.slice(0, 10)}`;
    }
    case 'DocumentReference': {
      const d = r as DocumentReference;
      return `${d.status}, ${d.type?.coding?.[0]?.display ?? 'document'} for ${d.subject?.reference}, identifier ${d.identifier?.[0]?.value ?? '?'} (the posted-back opinion)`;
    }
    case 'Communication': {
      const c = r as Communication;
      if (c.identifier?.some((i) => i.system === SYSTEM.followUpId)) return `${c.status}, follow-up ${c.inResponseTo?.length ? `answer, inResponseTo ${c.inResponseTo[0]?.reference}` : 'question'}, from ${c.sender?.display ?? c.sender?.reference}`;
      return `${c.status}, to ${c.recipient?.map((x) => x.reference).join(', ')} about ${c.about?.map((x) => x.reference).join(', ')} ("the opinion is in")`;
    }
    default:
      return '';
  }
}

export function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}
