/**
 * Plain-text output of the demo: numbered steps, indented facts, and the comparison as a
 * table a terminal can show (no colours, no cursor tricks: it reads the same in a CI log).
 */
import type { Comparison, ComparedOpinion } from '../../src/retrieval/comparison.ts';

let silenced = false;

/** One line of the story (nothing once the demo is winding down: a step still running after a failure or Ctrl-C stays quiet). */
export function out(line = ''): void {
  if (!silenced) process.stdout.write(`${line}\n`);
}

/** From now on only `say` prints. */
export function silence(): void {
  silenced = true;
}

/** A line that is printed whatever happens (the clean-up report). */
export function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

let current = { n: 0, title: '' };

/** Starts step `n`. */
export function step(n: number, title: string): void {
  current = { n, title };
  out();
  out(`${n}. ${title}`);
}

/** The step being run (for failure messages). */
export function currentStep(): { n: number; title: string } {
  return current;
}

/** One fact of the step: `   label  text`. */
export function fact(label: string, text: string): void {
  out(`   ${label.padEnd(14)} ${text}`);
}

/** Splits `text` into lines of at most `width` characters, at spaces where it can. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    for (let w = word; w.length > 0; ) {
      const room = line ? width - line.length - 1 : width;
      if (w.length <= room) {
        line = line ? `${line} ${w}` : w;
        w = '';
      } else if (line) {
        lines.push(line);
        line = '';
      } else {
        lines.push(w.slice(0, width));
        w = w.slice(width);
      }
    }
  }
  if (line) lines.push(line);
  return lines.length ? lines : [''];
}

/**
 * The comparison (`GET /second-opinions/{id}/comparison`) as rows of points by columns of
 * opinions (long cells wrap), then the point-by-point agreement. `shortName` names the columns.
 */
export function printComparison(c: Comparison, shortName: (o: ComparedOpinion) => string): void {
  const columns: ComparedOpinion[] = [...(c.first ? [c.first] : []), ...c.opinions];
  const agreement = (a?: string) => (a ? a.replace(/-/g, ' ') : '');
  const rows: [string, (o: ComparedOpinion) => string][] = [
    ['Diagnosis', (o) => o.diagnosis.map((d) => d.display ?? d.code ?? '').join(', ')],
    ['vs first diagnosis', (o) => agreement(o.diagnosisAgreement)],
    ['Plan / summary', (o) => o.plan ?? ''],
    ['vs first plan', (o) => agreement(o.planAgreement)],
    ['Preferred option', (o) => o.preferredOption ?? ''],
    ['Key risks', (o) => o.keyRisks.join(', ')],
    ['Recovery', (o) => o.recovery ?? ''],
    ['Missing info', (o) => o.missingInformation.join(', ')],
  ];
  const labelWidth = 20;
  const width = 30;
  const print = (label: string, cells: string[]) => {
    const wrapped = cells.map((t) => wrap(t, width));
    const height = Math.max(...wrapped.map((w) => w.length));
    for (let i = 0; i < height; i++) out(`   ${(i === 0 ? label : '').padEnd(labelWidth)}${wrapped.map((w) => (w[i] ?? '').padEnd(width)).join('  ')}`.trimEnd());
  };
  print('', columns.map(shortName));
  print('', columns.map(() => '-'.repeat(width)));
  for (const [label, value] of rows) print(label, columns.map(value));
  if (c.pending.length) out(`   not in yet: ${c.pending.map((p) => `${p.name} (${p.status})`).join(', ')}`);
  if (c.agreement) {
    out('   Where the consultants agree and differ:');
    for (const a of c.agreement) out(`     ${a.agree ? 'AGREE ' : 'DIFFER'}  ${a.point.padEnd(19)} ${a.detail}`);
  }
}
