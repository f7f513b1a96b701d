import type { CodeableConcept } from '@medplum/fhirtypes';
import { BUSINESS_STATUS, type BusinessStatus, SYSTEM } from './constants.ts';

/**
 * `Task.businessStatus` for one of our codes (profiles/input/fsh/terminology.fsh), with its
 * display and, optionally, a human-readable reason in `text` (what is missing, why consent failed).
 */
export function businessStatus(code: BusinessStatus, text?: string): CodeableConcept {
  return { coding: [{ system: SYSTEM.taskBusinessStatus, code, display: BUSINESS_STATUS[code] }], ...(text ? { text } : {}) };
}
