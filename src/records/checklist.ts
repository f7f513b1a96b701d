/**
 * Completeness checklist of a record set (the question depends on the
 * records). For each kind of second opinion, the records that are required
 * (the case waits for them) and recommended (named, but the case goes ahead without them).
 *
 * Kept as data in one table; `checklistMarkdown()` renders it for docs/workflow.md (Record sets).
 */
import type { DiagnosticReport, DocumentReference, ImagingStudy } from '@medplum/fhirtypes';
import { KIND_DISPLAY, KINDS, LOINC_DOC, REPORT_CATEGORY, SYSTEM, type Kind } from '../fhir/constants.ts';

/** One way of satisfying a checklist item. */
export type RecordMatcher =
  /** A document (DocumentReference.type, or DiagnosticReport.code) of this LOINC type. */
  | { match: 'loinc'; code: string; display: string }
  /** A resource of this type, with one of these category codes when given. */
  | { match: 'resource'; code: string; display: string; resourceType: 'DiagnosticReport' | 'ImagingStudy'; categories?: readonly string[] };

/** A checklist item: satisfied by any one of its alternatives. */
export interface ChecklistItem {
  /** Stable code of the item: the code of its first alternative. */
  code: string;
  display: string;
  anyOf: readonly RecordMatcher[];
}

export interface KindChecklist {
  required: readonly ChecklistItem[];
  recommended: readonly ChecklistItem[];
}

const doc = (d: { code: string; display: string }): RecordMatcher => ({ match: 'loinc', code: d.code, display: d.display });

const PATHOLOGY_REPORT: RecordMatcher = {
  match: 'resource',
  code: 'DiagnosticReport:pathology',
  display: 'Pathology DiagnosticReport',
  resourceType: 'DiagnosticReport',
  categories: [REPORT_CATEGORY.pathologyV2, REPORT_CATEGORY.pathologyLoinc],
};
const IMAGING_REPORT: RecordMatcher = {
  match: 'resource',
  code: 'DiagnosticReport:imaging',
  display: 'Imaging DiagnosticReport',
  resourceType: 'DiagnosticReport',
  categories: [REPORT_CATEGORY.radiologyV2, REPORT_CATEGORY.radiologyLoinc],
};
const IMAGING_STUDY: RecordMatcher = { match: 'resource', code: 'ImagingStudy', display: 'Imaging study', resourceType: 'ImagingStudy' };

function item(display: string, ...anyOf: RecordMatcher[]): ChecklistItem {
  return { code: anyOf[0]!.code, display, anyOf };
}

const CLINICAL_PICTURE = item('History and physical or progress note', doc(LOINC_DOC.historyAndPhysical), doc(LOINC_DOC.progressNote));
const OPERATIVE_NOTE = item(LOINC_DOC.operativeNote.display, doc(LOINC_DOC.operativeNote));
const PATHOLOGY = item('Pathology report', doc(LOINC_DOC.pathology), PATHOLOGY_REPORT);
const IMAGING = item('Imaging report', doc(LOINC_DOC.imaging), IMAGING_REPORT);
const IMAGES = item('Imaging study', IMAGING_STUDY);
const SLIDE_IMAGES = item('Slide images', IMAGING_STUDY);
const DISCHARGE = item(LOINC_DOC.dischargeSummary.display, doc(LOINC_DOC.dischargeSummary));
const PROGRESS = item(LOINC_DOC.progressNote.display, doc(LOINC_DOC.progressNote));
const PRE_OP_PHOTO = item(LOINC_DOC.preOperativePhoto.display, doc(LOINC_DOC.preOperativePhoto));
const COURSE = item('Progress note or discharge summary', doc(LOINC_DOC.progressNote), doc(LOINC_DOC.dischargeSummary));

/**
 * The checklist per kind. Rationale: every opinion needs the clinical picture (history and
 * physical, or a progress note); a revision hinges on what was done (operative note, which
 * carries the implant details); a complication review on the course of events; a pathology or
 * imaging second read on the report being re-read and, for imaging, the study itself.
 */
export const CHECKLIST: Readonly<Record<Kind, KindChecklist>> = {
  'diagnosis-confirmation': { required: [CLINICAL_PICTURE], recommended: [IMAGING, PATHOLOGY, DISCHARGE] },
  'treatment-choice': { required: [CLINICAL_PICTURE], recommended: [IMAGING, PATHOLOGY, OPERATIVE_NOTE, DISCHARGE] },
  'pre-procedure': { required: [CLINICAL_PICTURE], recommended: [IMAGING, PATHOLOGY, PRE_OP_PHOTO] },
  revision: { required: [OPERATIVE_NOTE], recommended: [DISCHARGE, PRE_OP_PHOTO, PROGRESS, IMAGING] },
  complication: { required: [COURSE], recommended: [OPERATIVE_NOTE, IMAGING, PATHOLOGY] },
  'pathology-review': { required: [PATHOLOGY], recommended: [SLIDE_IMAGES, CLINICAL_PICTURE] },
  'imaging-review': { required: [IMAGING, IMAGES], recommended: [CLINICAL_PICTURE] },
};

/** What the checklist needs to know of one fetched record. */
export interface AvailableRecord {
  resourceType: string;
  /** LOINC codes of DocumentReference.type or DiagnosticReport.code. */
  loincTypes: readonly string[];
  /** Category codes (e.g. DiagnosticReport.category: `SP`, `RAD`, `LP7839-6`). */
  categories: readonly string[];
}

export interface ChecklistEntry {
  code: string;
  display: string;
  /** Other ways of satisfying the item, when there are any. */
  alternatives?: { code: string; display: string }[];
}

export interface PresentEntry {
  code: string;
  display: string;
  requirement: 'required' | 'recommended';
  /** The alternative the record set satisfies it with (the first that matched). */
  satisfiedBy: string;
}

export interface ChecklistResult {
  /** No required item is missing. */
  complete: boolean;
  missingRequired: ChecklistEntry[];
  missingRecommended: ChecklistEntry[];
  /** Items satisfied, required first, in checklist order. */
  present: PresentEntry[];
}

/** Checks the fetched records against the checklist of the kind. */
export function evaluateChecklist(kind: Kind, available: readonly AvailableRecord[]): ChecklistResult {
  const checklist = CHECKLIST[kind];
  const result: ChecklistResult = { complete: true, missingRequired: [], missingRecommended: [], present: [] };
  for (const requirement of ['required', 'recommended'] as const) {
    for (const entry of checklist[requirement]) {
      const satisfiedBy = entry.anyOf.find((m) => available.some((record) => matches(m, record)));
      if (satisfiedBy) {
        result.present.push({ code: entry.code, display: entry.display, requirement, satisfiedBy: satisfiedBy.code });
      } else {
        (requirement === 'required' ? result.missingRequired : result.missingRecommended).push(missingEntry(entry));
      }
    }
  }
  result.complete = result.missingRequired.length === 0;
  return result;
}

function matches(matcher: RecordMatcher, record: AvailableRecord): boolean {
  if (matcher.match === 'loinc') return record.loincTypes.includes(matcher.code);
  if (record.resourceType !== matcher.resourceType) return false;
  return !matcher.categories || matcher.categories.some((c) => record.categories.includes(c));
}

function missingEntry(entry: ChecklistItem): ChecklistEntry {
  const missing: ChecklistEntry = { code: entry.code, display: entry.display };
  if (entry.anyOf.length > 1) missing.alternatives = entry.anyOf.slice(1).map(({ code, display }) => ({ code, display }));
  return missing;
}

/** Category systems whose codes the checklist understands. */
const CATEGORY_SYSTEMS: readonly string[] = [REPORT_CATEGORY.v2System, SYSTEM.loinc];

/** Reads what the checklist needs from a fetched record. */
export function describeRecord(resource: DocumentReference | DiagnosticReport | ImagingStudy): AvailableRecord {
  const loinc = (codings: { system?: string; code?: string }[] | undefined): string[] =>
    (codings ?? []).filter((c) => c.system === SYSTEM.loinc && c.code).map((c) => c.code!);
  switch (resource.resourceType) {
    case 'DocumentReference':
      return { resourceType: 'DocumentReference', loincTypes: loinc(resource.type?.coding), categories: [] };
    case 'DiagnosticReport':
      return {
        resourceType: 'DiagnosticReport',
        loincTypes: loinc(resource.code?.coding),
        categories: (resource.category ?? [])
          .flatMap((c) => c.coding ?? [])
          .filter((c) => c.code && CATEGORY_SYSTEMS.includes(c.system ?? ''))
          .map((c) => c.code!),
      };
    case 'ImagingStudy':
      return { resourceType: 'ImagingStudy', loincTypes: [], categories: [] };
  }
}

/** One row of the docs' checklist table per kind. */
export interface ChecklistRow {
  kind: Kind;
  kindDisplay: string;
  required: string;
  recommended: string;
}

/** The checklist as rows of text, in KINDS order (for docs/workflow.md and the API docs). */
export function checklistTable(): ChecklistRow[] {
  return KINDS.map((kind) => ({
    kind,
    kindDisplay: KIND_DISPLAY[kind],
    required: CHECKLIST[kind].required.map(describeItem).join('; '),
    recommended: CHECKLIST[kind].recommended.map(describeItem).join('; '),
  }));
}

/** The checklist as a Markdown table. */
export function checklistMarkdown(): string {
  const rows = checklistTable().map((r) => `| ${r.kindDisplay} (\`${r.kind}\`) | ${r.required} | ${r.recommended} |`);
  return ['| Kind | Required | Recommended |', '| --- | --- | --- |', ...rows].join('\n');
}

function describeItem(entry: ChecklistItem): string {
  return `${entry.display} (${entry.anyOf.map(describeMatcher).join(' or ')})`;
}

function describeMatcher(m: RecordMatcher): string {
  if (m.match === 'loinc') return `LOINC ${m.code}`;
  if (!m.categories) return m.resourceType;
  return `${m.resourceType} category ${m.categories.join(' / ')}`;
}

/** A missing required record, in words (the Task's business-status text). */
export function describeMissing(entry: ChecklistEntry): string {
  const alternatives = entry.alternatives?.length ? ` (or ${entry.alternatives.map((a) => a.display).join(', ')})` : '';
  return `${entry.display}${alternatives}`;
}
