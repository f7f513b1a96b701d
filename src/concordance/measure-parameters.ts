/**
 * The parameters of `GET /fhir/Measure/{id}/$evaluate-measure`, checked once: the
 * period (required, as R4's operation defines it), an optional `subject` (an Organization) and
 * an optional `kind` (a second-opinion kind code). Anything else, a repeated parameter or a bad
 * value is a 400 naming the parameter. Pure.
 *
 * @see https://hl7.org/fhir/R4/measure-operation-evaluate-measure.html
 */
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import { type Kind, KINDS, SYSTEM } from '../fhir/constants.ts';
import { invalid, issue } from '../fhir/outcomes.ts';

export interface MeasureParameters {
  /** As given (a date or a date-time), for MeasureReport.period. */
  period: { start: string; end: string };
  /** The instants the opinions' dates are compared with: `from` inclusive, `until` exclusive. */
  from: Date;
  until: Date;
  /** `Organization/{id}`, when given. */
  subject?: string;
  kind?: Kind;
}

export const MEASURE_PARAMETER_NAMES = ['periodStart', 'periodEnd', 'subject', 'kind'] as const;

/** A FHIR date (YYYY-MM-DD) or a date-time with seconds and a time zone. */
const DATE = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;
const DATE_TIME = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))$/;

/**
 * `periodStart` from the start of its day (UTC) when a date; `periodEnd` through the end of its
 * day when a date (the period is inclusive, as FHIR periods are), or exactly when a date-time.
 */
function instant(value: string, end: boolean): Date | undefined {
  if (DATE.test(value)) {
    const day = new Date(`${value}T00:00:00Z`);
    if (Number.isNaN(day.getTime()) || day.toISOString().slice(0, 10) !== value) return undefined; // 2026-02-30
    return end ? new Date(day.getTime() + 86_400_000) : day;
  }
  if (DATE_TIME.test(value)) {
    const at = new Date(value);
    if (Number.isNaN(at.getTime())) return undefined;
    return end ? new Date(at.getTime() + 1) : at;
  }
  return undefined;
}

export function parseMeasureParameters(params: Record<string, string[]>): MeasureParameters {
  const problems: OperationOutcomeIssue[] = [];
  const one = (name: string): string | undefined => {
    const values = params[name] ?? [];
    if (values.length > 1) problems.push(issue('invalid', `${name} may be given once`, name));
    return values[0];
  };
  for (const name of Object.keys(params)) {
    if (name !== '_format' && !(MEASURE_PARAMETER_NAMES as readonly string[]).includes(name)) {
      problems.push(issue('not-supported', `Parameter '${name}' is not supported by $evaluate-measure (supported: ${MEASURE_PARAMETER_NAMES.join(', ')})`, name));
    }
  }
  const dates = (['periodStart', 'periodEnd'] as const).map((name) => {
    const value = one(name);
    if (value === undefined) {
      problems.push(issue('required', `${name} is required: a date (YYYY-MM-DD) or a date-time with a time zone`, name));
      return undefined;
    }
    const at = instant(value, name === 'periodEnd');
    if (!at) problems.push(issue('value', `${name} must be a date (YYYY-MM-DD) or a date-time with seconds and a time zone`, name));
    return at ? { value, at } : undefined;
  });
  const [start, end] = dates;
  if (start && end && end.at.getTime() <= start.at.getTime()) problems.push(issue('value', 'periodEnd must not be before periodStart', 'periodEnd'));

  const subject = one('subject');
  const organization = subject?.match(/^Organization\/([A-Za-z0-9\-.]{1,64})$/)?.[0];
  if (subject !== undefined && !organization) problems.push(issue('value', 'subject must be an Organization reference (Organization/{id}) of the network directory', 'subject'));

  const kindValue = one('kind');
  const code = kindValue?.startsWith(`${SYSTEM.kind}|`) ? kindValue.slice(SYSTEM.kind.length + 1) : kindValue;
  const kind = (KINDS as readonly string[]).includes(code ?? '') ? (code as Kind) : undefined;
  if (kindValue !== undefined && !kind) problems.push(issue('value', `kind must be a second-opinion kind ([${SYSTEM.kind}|]code): ${KINDS.join(', ')}`, 'kind'));

  if (problems.length || !start || !end) throw invalid(problems);
  return {
    period: { start: start.value, end: end.value },
    from: start.at,
    until: end.at,
    ...(organization ? { subject: organization } : {}),
    ...(kind ? { kind } : {}),
  };
}
