/**
 * Concordance: how one returned opinion compares with the referral's first
 * opinion, on the points the comparison already has. Pure: the opinion's own agreement codes,
 * its coded diagnoses and preferred option in; two classes out.
 *
 * Diagnosis (from `diagnosisAgreement` and whether the coded diagnoses differ):
 *
 * | diagnosisAgreement       | coded diagnoses vs the first opinion's | class             |
 * |--------------------------|----------------------------------------|-------------------|
 * | agree                    | the same, or either side codes none    | concordant        |
 * | agree                    | different                              | minor-discrepancy |
 * | agree-with-modifications | any                                    | minor-discrepancy |
 * | disagree                 | any                                    | major-discrepancy |
 *
 * Plan (from `planAgreement` and whether a preferred option differs from the first plan):
 *
 * | planAgreement            | preferred option vs the first plan                 | class     |
 * |--------------------------|----------------------------------------------------|-----------|
 * | agree                    | none preferred, the same text, or no first plan    | unchanged |
 * | agree                    | a preferred option other than the first plan       | modified  |
 * | agree-with-modifications | any                                                | modified  |
 * | disagree                 | any                                                | changed   |
 *
 * Codes are compared as sets of `system|code` (displays are labels, not the concept); texts
 * case- and whitespace-insensitively. The consultant's own word weighs most: an agreement never
 * becomes a major discrepancy or a changed plan from codes or wording alone, and a disagreement
 * is never softened by matching codes. A referral without a first opinion has nothing to
 * compare with: its opinions are not classified (no extension, outside every denominator).
 */
import type { DiagnosisConcordance, PlanConcordance } from '../fhir/constants.ts';
import type { Agreement } from '../opinions/opinion.ts';

export interface Concordance {
  diagnosis: DiagnosisConcordance;
  plan: PlanConcordance;
}

/** What the comparison knows of the first opinion: its coded diagnoses and its plan. */
export interface FirstOpinionPoints {
  diagnosis: readonly { system?: string; code?: string }[];
  plan?: string;
}

/** The points of a returned opinion that its classification reads. */
export interface ReturnedOpinionPoints {
  diagnosisAgreement: Agreement;
  planAgreement: Agreement;
  diagnosis: readonly { system?: string; code?: string }[];
  /** The preferred option's text, when the consultant prefers one. */
  preferredOption?: string;
}

const codeSet = (codings: FirstOpinionPoints['diagnosis']): Set<string> => new Set(codings.filter((c) => c.code).map((c) => `${c.system ?? ''}|${c.code}`));
const normalized = (text: string): string => text.trim().toLowerCase().replace(/\s+/g, ' ');

/** Whether both sides code a diagnosis and the two sets of codes are not the same. */
export function codedDiagnosesDiffer(first: FirstOpinionPoints['diagnosis'], returned: ReturnedOpinionPoints['diagnosis']): boolean {
  const [a, b] = [codeSet(first), codeSet(returned)];
  if (a.size === 0 || b.size === 0) return false;
  return a.size !== b.size || [...a].some((c) => !b.has(c));
}

export function classifyDiagnosis(first: FirstOpinionPoints, opinion: ReturnedOpinionPoints): DiagnosisConcordance {
  switch (opinion.diagnosisAgreement) {
    case 'disagree':
      return 'major-discrepancy';
    case 'agree-with-modifications':
      return 'minor-discrepancy';
    case 'agree':
      return codedDiagnosesDiffer(first.diagnosis, opinion.diagnosis) ? 'minor-discrepancy' : 'concordant';
  }
}

export function classifyPlan(first: FirstOpinionPoints, opinion: ReturnedOpinionPoints): PlanConcordance {
  switch (opinion.planAgreement) {
    case 'disagree':
      return 'changed';
    case 'agree-with-modifications':
      return 'modified';
    case 'agree': {
      const differs = !!opinion.preferredOption && !!first.plan && normalized(opinion.preferredOption) !== normalized(first.plan);
      return differs ? 'modified' : 'unchanged';
    }
  }
}

/** Both classes; undefined when the referral has no first opinion to compare with. */
export function classifyOpinion(first: FirstOpinionPoints | undefined, opinion: ReturnedOpinionPoints): Concordance | undefined {
  if (!first) return undefined;
  return { diagnosis: classifyDiagnosis(first, opinion), plan: classifyPlan(first, opinion) };
}
