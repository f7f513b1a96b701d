/**
 * Every relative link in README.md and docs/ resolves: the file exists, and a `#anchor` names a
 * heading of that page (GitHub's anchors). No network: links to other sites are not followed.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(import.meta.dirname, '..');

/**
 * Pages written on other branches and linked from the README already. Their links are skipped
 * while the page is missing, and checked like any other once it exists; remove an entry when its
 * page lands.
 */
const PAGES_LANDING_FROM_OTHER_BRANCHES = ['docs/api.md', 'docs/deployment.md', 'docs/walkthrough.md'];

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
export function headingAnchor(text: string): string {
  return text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/ /g, '-');
}

/** The lines outside fenced code blocks. */
function proseLines(markdown: string): { line: string; number: number }[] {
  const out: { line: string; number: number }[] = [];
  let fence: string | undefined;
  markdown.split('\n').forEach((line, i) => {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (marker && (!fence || marker.startsWith(fence))) {
      fence = fence ? undefined : marker;
      return;
    }
    if (!fence) out.push({ line, number: i + 1 });
  });
  return out;
}

/** The anchors of a page's headings; a repeated heading gets -1, -2... as on GitHub. */
export function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const { line } of proseLines(markdown)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const anchor = headingAnchor(heading);
    const n = seen.get(anchor) ?? 0;
    seen.set(anchor, n + 1);
    anchors.add(n === 0 ? anchor : `${anchor}-${n}`);
  }
  return anchors;
}

/** The relative links of a page (inline code left out), each with its line. */
export function relativeLinks(markdown: string): { target: string; line: number }[] {
  const links: { target: string; line: number }[] = [];
  for (const { line, number } of proseLines(markdown)) {
    const text = line.replace(/`[^`]*`/g, '');
    for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      const target = m[1] as string;
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:...
      links.push({ target, line: number });
    }
  }
  return links;
}

/** What is wrong with each relative link of `page` (a path relative to the repository). */
export function brokenLinks(page: string, read: (file: string) => string | undefined, skip: readonly string[] = []): string[] {
  const markdown = read(page);
  if (markdown === undefined) return [`${page}: no such page`];
  const problems: string[] = [];
  for (const { target, line } of relativeLinks(markdown)) {
    const [file = '', anchor] = target.split('#', 2);
    const resolved = file === '' ? page : path.posix.normalize(path.posix.join(path.posix.dirname(page), decodeURIComponent(file)));
    if (skip.includes(resolved) && read(resolved) === undefined) continue;
    const content = read(resolved);
    if (content === undefined) {
      problems.push(`${page}:${line}: ${target}: ${resolved} does not exist`);
      continue;
    }
    if (anchor !== undefined && resolved.endsWith('.md') && !anchorsOf(content).has(anchor)) {
      problems.push(`${page}:${line}: ${target}: no heading with anchor #${anchor} in ${resolved}`);
    }
  }
  return problems;
}

function readRepoFile(file: string): string | undefined {
  const full = path.join(root, file);
  if (!existsSync(full)) return undefined;
  return statSync(full).isDirectory() ? '' : readFileSync(full, 'utf8');
}

function markdownPages(): string[] {
  const docs = readdirSync(path.join(root, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.md'))
    .map((f) => path.posix.join('docs', f.split(path.sep).join('/')));
  return ['README.md', ...docs.sort()];
}

describe('documentation links', () => {
  it('anchors are the ones GitHub makes', () => {
    expect(headingAnchor('Intake: `POST /second-opinions`')).toBe('intake-post-second-opinions');
    expect(headingAnchor("Pushed to the clinic's own FHIR server")).toBe('pushed-to-the-clinics-own-fhir-server');
    expect(headingAnchor('1. Register the service at the EHR')).toBe('1-register-the-service-at-the-ehr');
    expect(headingAnchor('FHIR Subscriptions (topic-based, R5 Backport)')).toBe('fhir-subscriptions-topic-based-r5-backport');
    expect([...anchorsOf('# A\n\n```sh\n# not a heading\n```\n\n## A\n## B\n')]).toEqual(['a', 'a-1', 'b']);
  });

  it('finds a missing page, a missing anchor and ignores code, other sites and inline code', () => {
    const pages: Record<string, string> = {
      'docs/a.md': '# A\n\n## Here\n\n[ok](#here) [ok](b.md#there) [bad](#nowhere) [bad](c.md) [bad](b.md#gone)\n`[not a link](x.md)` [web](https://example.org/x.md)\n```md\n[in code](y.md)\n```\n',
      'docs/b.md': '# B\n\n### There\n',
    };
    expect(brokenLinks('docs/a.md', (f) => pages[f])).toEqual([
      'docs/a.md:5: #nowhere: no heading with anchor #nowhere in docs/a.md',
      'docs/a.md:5: c.md: docs/c.md does not exist',
      'docs/a.md:5: b.md#gone: no heading with anchor #gone in docs/b.md',
    ]);
  });

  it('every relative link in README.md and docs/ resolves, anchors included', () => {
    const pages = markdownPages();
    expect(pages).toContain('docs/configuration.md');
    const problems = pages.flatMap((page) => brokenLinks(page, readRepoFile, PAGES_LANDING_FROM_OTHER_BRANCHES));
    expect(problems).toEqual([]);
  });

  it('README.md stays short: under about 250 lines (the reliability table included)', () => {
    const readme = readRepoFile('README.md') ?? '';
    expect(readme.split('\n').length).toBeLessThanOrEqual(250);
  });

  it('docs/architecture.md lists every directory of src/', () => {
    const page = readRepoFile('docs/architecture.md') ?? '';
    const dirs = readdirSync(path.join(root, 'src'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    expect(dirs.length).toBeGreaterThan(10);
    expect(dirs.filter((d) => !new RegExp(`^  ${d}/ `, 'm').test(page))).toEqual([]);
  });
});
