import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * One model, several doors: use cases know no door. Only the HTTP adapter may import Express or
 * anything under src/http/; everything else (use cases, rules, jobs, the FHIR helpers, the CLI's
 * use cases) takes a plain caller (access/caller.ts) and deps. This test is the lint rule.
 */
const SRC = path.join(import.meta.dirname);

/** The HTTP adapter: the http folder, the app and service wiring, routers, and the Express middleware. */
const HTTP_ADAPTER = [/^http\//, /^app\.ts$/, /^main\.ts$/, /^service\.ts$/, /(^|\/)routes\.ts$/, /^auth\/middleware\.ts$/, /^access\/route-guard\.ts$/];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [full] : [];
  });
}

/** The modules a file imports (static and dynamic), as written. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'([^']+)'/g)].map((m) => m[1] as string);
}

describe('layering', () => {
  const files = sourceFiles(SRC).map((file) => ({ file, relative: path.relative(SRC, file).split(path.sep).join('/') }));

  it('finds the source tree (the rule below is not vacuous)', () => {
    expect(files.length).toBeGreaterThan(100);
    expect(files.some((f) => f.relative === 'intake/create-second-opinion.ts')).toBe(true);
  });

  it('no file outside the HTTP adapter imports Express or src/http/', () => {
    const offenders: string[] = [];
    for (const { file, relative } of files) {
      if (HTTP_ADAPTER.some((pattern) => pattern.test(relative))) continue;
      for (const spec of importsOf(file)) {
        const intoHttp = spec.startsWith('.') && path.relative(SRC, path.resolve(path.dirname(file), spec)).split(path.sep)[0] === 'http';
        if (spec === 'express' || spec.startsWith('express/') || intoHttp) offenders.push(`${relative} imports ${spec}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('only the metrics adapter imports prom-client: the rest reports through the metrics port (metrics/metrics.ts)', () => {
    const importers = files.filter(({ file }) => importsOf(file).some((spec) => spec === 'prom-client' || spec.startsWith('prom-client/'))).map((f) => f.relative);
    expect(importers).toEqual(['metrics/prometheus.ts']);
  });

  it('src/fhir/ holds pure FHIR helpers: no store, no jobs, no network calls', () => {
    const offenders = files
      .filter((f) => f.relative.startsWith('fhir/'))
      .flatMap(({ file, relative }) => importsOf(file).filter((spec) => /\/(store|jobs|outbound|intake|consults|records|delivery)\//.test(spec)).map((spec) => `${relative} imports ${spec}`));
    expect(offenders).toEqual([]);
  });
});
