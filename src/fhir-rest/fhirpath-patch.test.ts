import type { Task } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { createValidator } from '../fhir/validator.ts';
import { HttpOutcomeError } from '../fhir/outcomes.ts';
import { fhirPathPatchToJsonPatch } from './fhirpath-patch.ts';

// Loads the R4 definitions the translation looks element cardinalities up in.
createValidator();

const task: Task = { resourceType: 'Task', id: 't1', status: 'requested', intent: 'order', note: [{ text: 'first' }], output: [{ type: { text: 'x' }, valueString: 'a' }] };
const op = (parts: Record<string, Record<string, unknown>>) => ({ name: 'operation', part: Object.entries(parts).map(([name, value]) => ({ name, ...value })) });
const patch = (...operations: ReturnType<typeof op>[]) => ({ resourceType: 'Parameters', parameter: operations });

function refusal(body: unknown): { status: number; expressions: (string | undefined)[] } {
  try {
    fhirPathPatchToJsonPatch(body, task);
  } catch (err) {
    expect(err).toBeInstanceOf(HttpOutcomeError);
    const e = err as HttpOutcomeError;
    return { status: e.status, expressions: e.outcome.issue?.map((i) => i.expression?.[0]) ?? [] };
  }
  throw new Error('expected a refusal');
}

describe('FHIRPath Patch to JSON Patch', () => {
  it('replace, delete, insert and move on plain paths', () => {
    expect(
      fhirPathPatchToJsonPatch(
        patch(
          op({ type: { valueCode: 'replace' }, path: { valueString: 'Task.status' }, value: { valueCode: 'accepted' } }),
          op({ type: { valueCode: 'delete' }, path: { valueString: 'Task.output[0].valueString' } }),
          op({ type: { valueCode: 'insert' }, path: { valueString: 'Task.note' }, index: { valueInteger: 0 }, value: { valueAnnotation: { text: 'zeroth' } } }),
          op({ type: { valueCode: 'move' }, path: { valueString: 'Task.note' }, source: { valueInteger: 1 }, destination: { valueInteger: 0 } }),
        ),
        task,
      ),
    ).toEqual([
      { op: 'replace', path: '/status', value: 'accepted' },
      { op: 'remove', path: '/output/0/valueString' },
      { op: 'add', path: '/note/0', value: { text: 'zeroth' } },
      { op: 'move', from: '/note/1', path: '/note/0' },
    ]);
  });

  it('add appends to a repeating element (creating the list once), and sets a single one', () => {
    const bare: Task = { resourceType: 'Task', status: 'requested', intent: 'order' };
    expect(
      fhirPathPatchToJsonPatch(
        patch(
          op({ type: { valueCode: 'add' }, path: { valueString: 'Task' }, name: { valueString: 'note' }, value: { valueAnnotation: { text: 'a' } } }),
          op({ type: { valueCode: 'add' }, path: { valueString: 'Task' }, name: { valueString: 'note' }, value: { valueAnnotation: { text: 'b' } } }),
          op({ type: { valueCode: 'add' }, path: { valueString: 'Task' }, name: { valueString: 'statusReason' }, value: { valueCodeableConcept: { text: 'why' } } }),
        ),
        bare,
      ),
    ).toEqual([
      { op: 'add', path: '/note', value: [{ text: 'a' }] },
      { op: 'add', path: '/note/-', value: { text: 'b' } },
      { op: 'add', path: '/statusReason', value: { text: 'why' } },
    ]);
    expect(fhirPathPatchToJsonPatch(patch(op({ type: { valueCode: 'add' }, path: { valueString: 'Task' }, name: { valueString: 'note' }, value: { valueAnnotation: { text: 'c' } } })), task)).toEqual([
      { op: 'add', path: '/note/-', value: { text: 'c' } },
    ]);
  });

  it('refuses what it cannot carry out, naming the operation part (422), and a body that is not Parameters (400)', () => {
    expect(refusal({ resourceType: 'Task' })).toEqual({ status: 400, expressions: ['Parameters'] });
    expect(refusal(patch(op({ type: { valueCode: 'replace' }, path: { valueString: "Task.note.where(text='first')" }, value: { valueString: 'x' } })))).toEqual({ status: 422, expressions: ["Parameters.parameter[0].part.where(name='path')"] });
    expect(refusal(patch(op({ type: { valueCode: 'replace' }, path: { valueString: 'Patient.name' }, value: { valueString: 'x' } })))).toEqual({ status: 422, expressions: ["Parameters.parameter[0].part.where(name='path')"] });
    expect(refusal(patch(op({ type: { valueCode: 'upsert' }, path: { valueString: 'Task.status' } })))).toEqual({ status: 422, expressions: ["Parameters.parameter[0].part.where(name='type')"] });
    expect(refusal(patch(op({ type: { valueCode: 'replace' }, path: { valueString: 'Task.status' } })))).toEqual({ status: 422, expressions: ["Parameters.parameter[0].part.where(name='value')"] });
    expect(refusal(patch(op({ type: { valueCode: 'add' }, path: { valueString: 'Task' }, name: { valueString: 'colour' }, value: { valueString: 'red' } })))).toEqual({ status: 422, expressions: ["Parameters.parameter[0].part.where(name='name')"] });
    expect(refusal(patch(op({ type: { valueCode: 'insert' }, path: { valueString: 'Task.note' }, value: { valueString: 'x' } })))).toEqual({ status: 422, expressions: ["Parameters.parameter[0].part.where(name='index')"] });
    expect(refusal({ resourceType: 'Parameters', parameter: [{ name: 'op' }] })).toEqual({ status: 422, expressions: ['Parameters.parameter[0].name'] });
  });
});
