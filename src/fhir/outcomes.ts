import { OperationOutcomeError } from '@medplum/core';
import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';

/**
 * OperationOutcome builders for the cases @medplum/core has no helper for. Each issue
 * names the offending field in `expression` so an integration engineer can fix the call.
 */
export function outcome(issues: OperationOutcomeIssue[], id?: string): OperationOutcome {
  return { resourceType: 'OperationOutcome', ...(id ? { id } : {}), issue: issues };
}

export function issue(code: OperationOutcomeIssue['code'], diagnostics: string, expression?: string, severity: OperationOutcomeIssue['severity'] = 'error'): OperationOutcomeIssue {
  return { severity, code, details: { text: diagnostics }, ...(expression ? { expression: [expression] } : {}) };
}

/** A refusal with an explicit HTTP status (the status travels on the outcome's id, as in @medplum/core). */
export class HttpOutcomeError extends OperationOutcomeError {
  readonly status: number;
  constructor(status: number, outcome: OperationOutcome) {
    super(outcome);
    this.status = status;
  }
}

export function unprocessable(issues: OperationOutcomeIssue[]): HttpOutcomeError {
  return new HttpOutcomeError(422, outcome(issues));
}

export function invalid(issues: OperationOutcomeIssue[]): HttpOutcomeError {
  return new HttpOutcomeError(400, outcome(issues));
}

export function conflictError(text: string, expression?: string): HttpOutcomeError {
  return new HttpOutcomeError(409, outcome([issue('conflict', text, expression)]));
}
