/**
 * Which second-opinion kind a referral's codes name. Our own CodeSystem
 * (`SYSTEM.kind`, published as the `second-opinion-kind` CodeSystem and ValueSet in profiles/)
 * names every kind; an EHR that does not know it sends the SNOMED CT or LOINC codes it has,
 * and those that identify a kind are recognised here. Kinds without a standard code
 * (treatment choice, pre-procedure, revision, complication) need our code.
 */
import { KINDS, SYSTEM, type Kind } from './constants.ts';

/** A standard code that names a kind, with what it is called in its system. */
export interface KindCode {
  system: string;
  code: string;
  display: string;
  kind: Kind;
}

/**
 * The standard codes recognised, most specific first. SNOMED CT 77406008 "Confirmatory medical
 * consultation" is the generic "second or third medical opinion" request: alone it means a
 * diagnosis confirmation, beside an imaging or histopathology code it is that read.
 */
export const STANDARD_KIND_CODES: readonly KindCode[] = [
  { system: SYSTEM.snomed, code: '363679005', display: 'Imaging (procedure)', kind: 'imaging-review' },
  { system: SYSTEM.loinc, code: '18748-4', display: 'Diagnostic imaging study', kind: 'imaging-review' },
  { system: SYSTEM.snomed, code: '252416005', display: 'Histopathology test (procedure)', kind: 'pathology-review' },
  { system: SYSTEM.loinc, code: '11526-1', display: 'Pathology study', kind: 'pathology-review' },
  { system: SYSTEM.snomed, code: '77406008', display: 'Confirmatory medical consultation (procedure)', kind: 'diagnosis-confirmation' },
];

export interface CodingLike {
  system?: string;
  code?: string;
}

/**
 * The kind named by `codings` (ServiceRequest.code and category codings together): our code
 * when one is present, else the most specific standard code. `conflict` when our codes name
 * two different kinds; undefined when nothing names a kind.
 */
export function kindFromCodings(codings: readonly CodingLike[]): Kind | 'conflict' | undefined {
  const ours = new Set(codings.filter((c) => c.system === SYSTEM.kind && (KINDS as readonly string[]).includes(c.code ?? '')).map((c) => c.code as Kind));
  if (ours.size > 1) return 'conflict';
  const [own] = ours;
  if (own) return own;
  return STANDARD_KIND_CODES.find((k) => codings.some((c) => c.system === k.system && c.code === k.code))?.kind;
}
