/**
 * `GET /consults`: the consulting clinic's worklist. Its Tasks that are ready for
 * it (the record set was disclosed to it, or it is already working on them), with what a
 * clinician triages by: patient, kind, question, priority, due date, overdue, the record set,
 * and the actions allowed now. The same Tasks are searchable over FHIR (`Task?owner=`).
 */
import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { EXTENSION } from '../fhir/constants.ts';
import { invalid, issue } from '../fhir/outcomes.ts';
import { CURSOR_REFUSED } from '../fhir-rest/search-parameters.ts';
import type { Caller } from '../access/caller.ts';
import { decodeCursor, type ResourceStore } from '../store/resource-store.ts';
import { allowedActions, isTerminal, type TaskStatus } from './task-transitions.ts';
import { readerOf } from '../access/reader.ts';
import { type FollowUpEntry, readFollowUpThreads } from '../followups/threads.ts';
import type { ReferralQuestion } from '../intake/intake-request.ts';
import { readReferralQuestions } from '../intake/referral-questions.ts';

export interface WorklistQuery {
  status?: TaskStatus[];
  overdue?: boolean;
  count: number;
  cursor?: string;
}

export interface WorklistItem {
  task: { id: string; status: TaskStatus; businessStatus?: string; businessStatusText?: string; statusReason?: string; due?: string; overdue: boolean; lastModified?: string; version?: string; url: string };
  referral: {
    id: string;
    kind?: string;
    kindDisplay?: string;
    question?: string;
    /** The patient's and the physician's own questions, by index: the opinion answers each. */
    questions: ReferralQuestion[];
    priority?: string;
    reviewType?: string;
    blinded: boolean;
    authoredOn?: string;
  };
  patient: { reference?: string; identifier?: { system?: string; value?: string }; display?: string };
  /** The record set to read: the newest Bundle on the Task's input. */
  recordSet?: string;
  /** Follow-up questions the referrer asked after the opinion and the clinic has not answered yet, each with its due date (`POST /consults/{id}/answers`). */
  followUps: FollowUpEntry[];
  /** What the clinic may do now (`POST /consults/{id}/{action}`). */
  actions: string[];
}

export interface Worklist {
  items: WorklistItem[];
  /** Opaque cursor for the next page, when there is one. */
  next?: string;
}

/** Tasks still waiting for their record set or consent are not the clinic's work yet. */
const NOT_YET_READY = new Set(['records-pending', 'awaiting-records', 'awaiting-consent', 'records-failed']);

const STATUSES: readonly TaskStatus[] = ['requested', 'received', 'accepted', 'rejected', 'ready', 'cancelled', 'in-progress', 'on-hold', 'failed', 'completed'];

/** Query parameters (each with all its values) -> a WorklistQuery; 400 naming the parameter. */
export function parseWorklistQuery(params: Record<string, string[]>): WorklistQuery {
  const problems = [];
  const query: WorklistQuery = { count: 20 };
  for (const [name, values] of Object.entries(params)) {
    const value = values[values.length - 1] ?? '';
    if (name === 'status') {
      const statuses = values.flatMap((v) => v.split(',')).filter(Boolean);
      const unknown = statuses.filter((s) => !STATUSES.includes(s as TaskStatus));
      if (unknown.length) problems.push(issue('value', `status must be one of ${STATUSES.join(', ')}`, 'status'));
      else query.status = statuses as TaskStatus[];
    } else if (name === 'overdue') {
      if (value !== 'true' && value !== 'false') problems.push(issue('value', 'overdue must be true or false', 'overdue'));
      else query.overdue = value === 'true';
    } else if (name === '_count') {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) problems.push(issue('value', '_count must be a positive integer', '_count'));
      else query.count = Math.min(n, 100);
    } else if (name === '_cursor') {
      if (decodeCursor(value)) query.cursor = value;
      else problems.push(issue('value', CURSOR_REFUSED, '_cursor'));
    } else {
      problems.push(issue('not-supported', `Unknown parameter '${name}' (status, overdue, _count, _cursor)`, name));
    }
  }
  if (problems.length) throw invalid(problems);
  return query;
}

export async function getWorklist(caller: Caller, query: WorklistQuery, deps: { store: ResourceStore; network: { get(id: string): { organization: { reference: string } } | undefined }; now: () => Date; publicUrl: string }): Promise<Worklist> {
  const organization = deps.network.get(caller.participantId)?.organization.reference;
  if (!organization) return { items: [] };
  const reader = readerOf(caller);
  const now = deps.now().getTime();
  const selected: Task[] = [];
  let cursor = query.cursor;
  // Filters the store cannot express (not yet ready, overdue) are applied per page; pages are
  // read until the requested count is met, so `next` continues exactly after the last Task seen.
  let next: string | undefined;
  do {
    const page = await deps.store.search<Task>(
      { resourceType: 'Task', contains: [[{ owner: { reference: organization } }], ...(query.status ? [query.status.map((status) => ({ status }))] : [])], lastUpdated: [], count: query.count, ...(cursor ? { cursor } : {}) },
      reader,
    );
    for (const task of page.resources) {
      if (task.status === 'requested' && NOT_YET_READY.has(task.businessStatus?.coding?.[0]?.code ?? 'records-pending')) continue;
      if (query.overdue !== undefined && isOverdue(task, now) !== query.overdue) continue;
      selected.push(task);
    }
    next = page.next;
    cursor = page.next;
  } while (selected.length < query.count && next);

  const serviceRequests = await deps.store.readMany<ServiceRequest>('ServiceRequest', [...new Set(selected.map((t) => (t.focus?.reference ?? '').replace(/^ServiceRequest\//, '')))], reader);
  const byId = new Map(serviceRequests.map((sr) => [sr.id, sr]));
  const openFollowUps = await readFollowUpThreads(deps.store, selected.map((t) => t.id as string), reader, deps.now(), { openOnly: true });
  return {
    items: selected.map((task) => {
      const sr = byId.get((task.focus?.reference ?? '').replace(/^ServiceRequest\//, ''));
      const kind = sr?.code?.coding?.[0];
      const bundle = task.input?.find((i) => i.valueReference?.reference?.startsWith('Bundle/'))?.valueReference?.reference;
      return {
        task: {
          id: task.id as string,
          status: task.status,
          ...(task.businessStatus?.coding?.[0]?.code ? { businessStatus: task.businessStatus.coding[0].code } : {}),
          ...(task.businessStatus?.text ? { businessStatusText: task.businessStatus.text } : {}),
          ...(task.statusReason?.text ? { statusReason: task.statusReason.text } : {}),
          ...(task.restriction?.period?.end ? { due: task.restriction.period.end } : {}),
          overdue: isOverdue(task, now),
          ...(task.lastModified ? { lastModified: task.lastModified } : {}),
          ...(task.meta?.versionId ? { version: task.meta.versionId } : {}),
          url: `${deps.publicUrl}/fhir/Task/${task.id}`,
        },
        referral: {
          id: sr?.id ?? '',
          ...(kind?.code ? { kind: kind.code } : {}),
          ...(kind?.display ? { kindDisplay: kind.display } : {}),
          ...(task.description ? { question: task.description } : {}),
          questions: sr ? readReferralQuestions(sr) : [],
          ...(task.priority ? { priority: task.priority } : {}),
          ...(sr?.extension?.find((e) => e.url === EXTENSION.reviewType)?.valueCoding?.code ? { reviewType: sr.extension.find((e) => e.url === EXTENSION.reviewType)?.valueCoding?.code } : {}),
          blinded: sr?.extension?.find((e) => e.url === EXTENSION.blinded)?.valueBoolean ?? false,
          ...(sr?.authoredOn ? { authoredOn: sr.authoredOn } : {}),
        },
        patient: {
          ...(task.for?.reference ? { reference: task.for.reference } : {}),
          ...(task.for?.identifier ? { identifier: { system: task.for.identifier.system, value: task.for.identifier.value } } : {}),
          ...(task.for?.display ? { display: task.for.display } : {}),
        },
        ...(bundle ? { recordSet: `${deps.publicUrl}/fhir/${bundle}` } : {}),
        followUps: openFollowUps.get(task.id as string) ?? [],
        actions: [
          ...allowedActions(task.status, 'consultant').filter((a) => a !== 'confirm-cancellation' || task.businessStatus?.coding?.[0]?.code === 'cancellation-requested'),
          ...(openFollowUps.has(task.id as string) ? ['answers'] : []),
        ],
      };
    }),
    ...(next ? { next } : {}),
  };
}

export function isOverdue(task: Task, now: number): boolean {
  const due = task.restriction?.period?.end;
  return !!due && !isTerminal(task.status) && new Date(due).getTime() < now;
}
