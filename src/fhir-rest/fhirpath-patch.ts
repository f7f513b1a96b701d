/**
 * FHIRPath Patch (R4 §3.1.0.8, https://hl7.org/fhir/R4/fhirpatch.html): a `Parameters` resource
 * of `operation`s, translated into the JSON Patch the Task door already applies, so both patch
 * forms end in the same update (and the same use cases).
 *
 * Paths: the subset clients use to edit a resource's own elements, a dotted path from the
 * resource type with optional indexes (`Task.status`, `Task.note`, `Task.output[0].valueReference`).
 * FHIRPath functions (`where()`, `first()`...) are refused with 422 naming the path: they select
 * by content, which a patch of a Task never needs and which would make one patch mean
 * different things on different versions.
 */
import { getElementDefinition, type Operation } from '@medplum/core';
import type { Parameters, ParametersParameter, Resource } from '@medplum/fhirtypes';
import { invalid, issue, unprocessable } from '../fhir/outcomes.ts';

const TYPES = new Set(['add', 'insert', 'delete', 'replace', 'move']);
const STEP = /^([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?$/;

type Step = { name: string; index?: number };

/** `Task.output[0].valueReference` -> steps after the type; undefined when the path is not a plain path from `type`. */
function parsePath(path: string, type: string): Step[] | undefined {
  const [head, ...rest] = path.split('.');
  if (head !== type) return undefined;
  const steps: Step[] = [];
  for (const part of rest) {
    const m = STEP.exec(part);
    if (!m) return undefined;
    steps.push({ name: m[1] as string, ...(m[2] !== undefined ? { index: Number(m[2]) } : {}) });
  }
  return steps;
}

const escape = (token: string) => token.replace(/~/g, '~0').replace(/\//g, '~1');

function pointer(steps: readonly Step[]): string {
  return steps.map((s) => `/${escape(s.name)}${s.index !== undefined ? `/${s.index}` : ''}`).join('');
}

/** The element type of the last named step (`Task.output` -> `TaskOutput`), for looking up a child's cardinality. */
function typeAt(resourceType: string, steps: readonly Step[]): string | undefined {
  let type = resourceType;
  let path = resourceType;
  for (const step of steps) {
    const element = getElementDefinition(type, step.name);
    if (!element) return undefined;
    path = `${path}.${step.name}`;
    const code = element.type[0]?.code;
    // Backbone elements are typed by their path (Task.output -> TaskOutput, as Medplum indexes them).
    type = code === 'BackboneElement' || code === 'Element' ? path.split('.').map((p, i) => (i === 0 ? p : p[0]!.toUpperCase() + p.slice(1))).join('') : (code ?? type);
  }
  return type;
}

/** The value of an operation part: its `value[x]`, whatever the type. */
function valueOf(part: ParametersParameter): unknown {
  const key = Object.keys(part).find((k) => k.startsWith('value'));
  return key ? (part as unknown as Record<string, unknown>)[key] : undefined;
}

/**
 * Translates a FHIRPath Patch into JSON Patch operations on `resource` (the stored one: an `add`
 * to a repeating element appends, to a single one sets). 400 when the body is not a Parameters
 * resource; 422 naming the operation's part when an operation cannot be carried out as sent.
 */
export function fhirPathPatchToJsonPatch(body: unknown, resource: Resource): Operation[] {
  const params = body as Parameters;
  if (params?.resourceType !== 'Parameters' || !Array.isArray(params.parameter)) throw invalid([issue('invalid', 'A FHIRPath Patch is a Parameters resource of operation parameters', 'Parameters')]);
  const operations: Operation[] = [];
  const problems: ReturnType<typeof issue>[] = [];
  /** Lists an earlier `add` of this patch created (a later one appends to them). */
  const created = new Set<string>();
  params.parameter.forEach((op, i) => {
    const at = (name?: string) => `Parameters.parameter[${i}]${name ? `.part.where(name='${name}')` : ''}`;
    if (op.name !== 'operation') return void problems.push(issue('invalid', 'Every parameter of a FHIRPath Patch is an "operation"', `Parameters.parameter[${i}].name`));
    const part = (name: string) => op.part?.find((p) => p.name === name);
    const type = part('type')?.valueCode;
    if (!type || !TYPES.has(type)) return void problems.push(issue('invalid', `type must be one of ${[...TYPES].join(', ')}`, at('type')));
    const path = part('path')?.valueString;
    const steps = path ? parsePath(path, resource.resourceType) : undefined;
    if (!path || !steps) {
      return void problems.push(issue('not-supported', `path must be a plain path from ${resource.resourceType} (e.g. ${resource.resourceType}.status, ${resource.resourceType}.note[0]); FHIRPath functions are not supported`, at('path')));
    }
    const target = pointer(steps);
    switch (type) {
      case 'delete':
        operations.push({ op: 'remove', path: target });
        return;
      case 'replace': {
        const value = part('value') ? valueOf(part('value')!) : undefined;
        if (value === undefined) return void problems.push(issue('required', 'replace needs a value', at('value')));
        operations.push({ op: 'replace', path: target, value });
        return;
      }
      case 'insert': {
        const index = part('index')?.valueInteger;
        const value = part('value') ? valueOf(part('value')!) : undefined;
        if (index === undefined || index < 0) return void problems.push(issue('required', 'insert needs an index (0 or more)', at('index')));
        if (value === undefined) return void problems.push(issue('required', 'insert needs a value', at('value')));
        operations.push({ op: 'add', path: `${target}/${index}`, value });
        return;
      }
      case 'move': {
        const source = part('source')?.valueInteger;
        const destination = part('destination')?.valueInteger;
        if (source === undefined || destination === undefined) return void problems.push(issue('required', 'move needs a source and a destination index', at(source === undefined ? 'source' : 'destination')));
        operations.push({ op: 'move', from: `${target}/${source}`, path: `${target}/${destination}` });
        return;
      }
      case 'add': {
        const name = part('name')?.valueString;
        const value = part('value') ? valueOf(part('value')!) : undefined;
        if (!name || !STEP.test(name)) return void problems.push(issue('required', 'add needs the name of the element to add', at('name')));
        if (value === undefined) return void problems.push(issue('required', 'add needs a value', at('value')));
        const parentType = typeAt(resource.resourceType, steps);
        const element = parentType ? getElementDefinition(parentType, name) : undefined;
        if (!element) return void problems.push(issue('invalid', `${path} has no element ${name}`, at('name')));
        const repeating = element.isArray === true || element.max > 1;
        const child = `${target}/${escape(name)}`;
        if (!repeating) {
          operations.push({ op: 'add', path: child, value });
          return;
        }
        // Appending to a list that may not exist yet: create it with the one value, else append.
        operations.push(appendOp(resource, steps, name, value, created));
        return;
      }
    }
  });
  if (problems.length) throw unprocessable(problems);
  return operations;
}

/** The JSON Patch operation that appends `value` to the list `name` under `steps` of `resource`, creating the list when absent. */
function appendOp(resource: Resource, steps: readonly Step[], name: string, value: unknown, created: Set<string>): Operation {
  let node: unknown = resource;
  for (const step of steps) {
    node = (node as Record<string, unknown> | undefined)?.[step.name];
    if (step.index !== undefined) node = Array.isArray(node) ? node[step.index] : undefined;
  }
  const list = (node as Record<string, unknown> | undefined)?.[name];
  const child = `${pointer(steps)}/${escape(name)}`;
  if (Array.isArray(list) || created.has(child)) return { op: 'add', path: `${child}/-`, value };
  created.add(child);
  return { op: 'add', path: child, value: [value] };
}
