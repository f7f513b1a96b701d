/**
 * The concordance of an opinion as the consult note keeps it: the `concordance` extension
 * (concordance.fsh) with a `diagnosis` and a `plan` coding. Written by the service when the
 * opinion is submitted; read back by the comparison. Pure.
 */
import type { ClinicalImpression, DocumentReference, Extension } from '@medplum/fhirtypes';
import { DIAGNOSIS_CONCORDANCE, type DiagnosisConcordance, EXTENSION, PLAN_CONCORDANCE, type PlanConcordance, SYSTEM } from '../fhir/constants.ts';
import type { Concordance, FirstOpinionPoints } from './classify.ts';

export function concordanceExtension(c: Concordance): Extension {
  return {
    url: EXTENSION.concordance,
    extension: [
      { url: 'diagnosis', valueCoding: { system: SYSTEM.diagnosisConcordance, code: c.diagnosis, display: DIAGNOSIS_CONCORDANCE[c.diagnosis] } },
      { url: 'plan', valueCoding: { system: SYSTEM.planConcordance, code: c.plan, display: PLAN_CONCORDANCE[c.plan] } },
    ],
  };
}

/** The concordance kept on a consult note; undefined when it has none (no first opinion) or a code we do not know. */
export function readConcordance(doc: DocumentReference): Concordance | undefined {
  const root = doc.extension?.find((e) => e.url === EXTENSION.concordance);
  const code = (url: string) => root?.extension?.find((e) => e.url === url)?.valueCoding?.code ?? '';
  const diagnosis = code('diagnosis');
  const plan = code('plan');
  if (!(diagnosis in DIAGNOSIS_CONCORDANCE) || !(plan in PLAN_CONCORDANCE)) return undefined;
  return { diagnosis: diagnosis as DiagnosisConcordance, plan: plan as PlanConcordance };
}

/** The first opinion's points the classification reads (its coded findings and its plan). */
export function firstOpinionPoints(ci: ClinicalImpression): FirstOpinionPoints {
  return {
    diagnosis: (ci.finding ?? []).flatMap((f) => f.itemCodeableConcept?.coding ?? []).map((c) => ({ ...(c.system ? { system: c.system } : {}), ...(c.code ? { code: c.code } : {}) })),
    ...(ci.summary ? { plan: ci.summary } : {}),
  };
}
