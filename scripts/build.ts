/**
 * `npm run build`: compiles src/ to dist/ (tsc, scripts/tsconfig.build.json) and copies beside the
 * JavaScript what the service reads from disk next to its modules, so `node dist/main.js` runs
 * with no TypeScript loader:
 *
 *   npm run build && NODE_ENV=production npm start     # or: node dist/main.js
 *
 * What the compiled service reads at run time, and from where:
 * - dist/store/migrations/    the SQL migrations (copied here: they sit next to database.ts)
 * - package.json              name and version (CapabilityStatement.software), found as ../package.json
 * - profiles/generated/       the compiled profiles (validator, conformance resources), ../profiles
 * - node_modules/             the dependencies (FHIR definitions, the API reference page's assets)
 * - examples/network.json     only when NETWORK_FILE is not set (never in production)
 *
 * The Dockerfile copies exactly these (test/container-files.test.ts checks it against the lists below).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Files tsc does not emit that the compiled modules read next to themselves: source -> destination. */
export const BUILD_ASSETS: readonly { from: string; to: string }[] = [{ from: 'src/store/migrations', to: 'dist/store/migrations' }];

/** What a production install needs beside dist/ (paths relative to the package root). */
export const RUNTIME_FILES: readonly string[] = ['dist', 'package.json', 'profiles/generated', 'node_modules'];

export function build(root: string = ROOT): void {
  rmSync(path.join(root, 'dist'), { recursive: true, force: true });
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'scripts', 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  for (const { from, to } of BUILD_ASSETS) cpSync(path.join(root, from), path.join(root, to), { recursive: true });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  build();
}
