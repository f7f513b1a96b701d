/**
 * Headless Chromium for the tests that check a page as a browser shows it: the system's
 * Chromium (Debian's `chromium` package) driven by playwright-core, never a browser playwright
 * downloads. One browser per test file (launching costs seconds); each page in a fresh context
 * records its console errors and every request it makes, runs axe-core in the page, prints to
 * PDF.
 *
 *   describeInBrowser('my page', () => {
 *     let browser: TestBrowser;
 *     beforeAll(async () => { browser = await launchBrowser(); });
 *     afterAll(() => browser?.close());
 *     it('renders', async () => {
 *       const page = await browser.open(url, { headers: { authorization: `Bearer ${token}` } });
 *       expect(page.consoleErrors).toEqual([]);
 *       expect(page.requestsOutside(url)).toEqual([]);
 *       expect(await page.seriousViolations()).toEqual([]);
 *     });
 *   });
 *
 * Where no Chromium can be found the file's tests are skipped, their title saying why, except
 * in CI (`CI=true`), where `.ci/run` installs Chromium and a missing browser fails the tests.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page, type Response } from 'playwright-core';
import { describe } from 'vitest';

const ROOT = path.join(import.meta.dirname, '..', '..');

/** The executable names tried on PATH, in order. */
const CHROMIUM_NAMES = ['chromium', 'chromium-browser', 'google-chrome-stable', 'google-chrome'];

/** Where Chromium is: `CHROMIUM_PATH` if set, else the first of CHROMIUM_NAMES on PATH; undefined when there is none. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.CHROMIUM_PATH) return existsSync(env.CHROMIUM_PATH) ? env.CHROMIUM_PATH : undefined;
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    for (const name of CHROMIUM_NAMES) {
      const file = path.join(dir, name);
      if (existsSync(file)) return file;
    }
  }
  return undefined;
}

const inCi = (env: NodeJS.ProcessEnv = process.env) => env.CI !== undefined && env.CI !== '' && env.CI !== 'false' && env.CI !== '0';

const NO_CHROMIUM = `no Chromium found (tried CHROMIUM_PATH, then ${CHROMIUM_NAMES.join(', ')} on PATH); install it with apt-get install chromium, or set CHROMIUM_PATH`;

/**
 * `describe` for tests that need the browser: skipped, with the reason in its title, when no
 * Chromium can be found; run (and failing, in `launchBrowser`) in CI, which installs it.
 */
export function describeInBrowser(name: string, body: () => void): void {
  const skip = findChromium() === undefined && !inCi();
  // The one line a skipped run prints: why these tests did not run.
  if (skip) console.warn(`${name}: skipped, ${NO_CHROMIUM}`);
  describe.skipIf(skip)(skip ? `${name} [skipped: ${NO_CHROMIUM}]` : name, body);
}

/** One axe-core violation, as the tests report it: the rule, its impact and the elements it found. */
export interface AxeViolation {
  id: string;
  impact: 'minor' | 'moderate' | 'serious' | 'critical' | null;
  help: string;
  targets: string[];
}

export interface CheckedPage {
  page: Page;
  /** The response to the navigation. */
  response: Response | null;
  /** Console messages of type error, and uncaught exceptions, in order (a CSP violation is one). */
  consoleErrors: string[];
  /** Every URL the page requested, the navigation included, in order. */
  requests: string[];
  /** The requested URLs whose origin is not `origin`'s. */
  requestsOutside(origin: string): string[];
  /** axe-core's violations of the page as shown (WCAG 2.x A and AA rules, and best practices). */
  axeViolations(): Promise<AxeViolation[]>;
  /** The violations of serious or critical impact. */
  seriousViolations(): Promise<AxeViolation[]>;
  /** The page printed to PDF on A4 (print CSS applies). */
  pdf(): Promise<Buffer>;
  close(): Promise<void>;
}

export interface TestBrowser {
  browser: Browser;
  executablePath: string;
  /** Opens `url` in a fresh context (no cookies, no cache), sending `headers` with every request. */
  open(url: string, options?: { headers?: Record<string, string> }): Promise<CheckedPage>;
  close(): Promise<void>;
}

/** Launches the system's Chromium headless; throws, saying what to install, when there is none. */
export async function launchBrowser(): Promise<TestBrowser> {
  const executablePath = findChromium();
  if (!executablePath) throw new Error(`${NO_CHROMIUM}${inCi() ? ' (CI: .ci/run installs it; the browser checks do not skip in CI)' : ''}`);
  const browser = await chromium.launch({ executablePath, headless: true });
  const contexts = new Set<BrowserContext>();
  return {
    browser,
    executablePath,
    async open(url, options = {}) {
      const context = await browser.newContext({ ...(options.headers ? { extraHTTPHeaders: options.headers } : {}) });
      contexts.add(context);
      const page = await context.newPage();
      const consoleErrors: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') consoleErrors.push(m.text());
      });
      page.on('pageerror', (err) => consoleErrors.push(`uncaught: ${err.message}`));
      page.on('request', (r) => requests.push(r.url()));
      const response = await page.goto(url, { waitUntil: 'load' });
      const axeViolations = async (): Promise<AxeViolation[]> => {
        // Evaluated through the DevTools protocol, which the page's CSP does not govern (the page itself may run no script).
        await page.evaluate(axeSource());
        const json = await page.evaluate<string>(
          `axe.run(document, { resultTypes: ['violations'] }).then((r) => JSON.stringify(r.violations.map((v) => ({ id: v.id, impact: v.impact ?? null, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')) }))))`,
        );
        return JSON.parse(json) as AxeViolation[];
      };
      return {
        page,
        response,
        consoleErrors,
        requests,
        requestsOutside: (origin) => requests.filter((r) => new URL(r).origin !== new URL(origin).origin),
        axeViolations,
        seriousViolations: async () => (await axeViolations()).filter((v) => v.impact === 'serious' || v.impact === 'critical'),
        pdf: async () => page.pdf({ format: 'A4', printBackground: true }),
        async close() {
          contexts.delete(context);
          await context.close();
        },
      };
    },
    async close() {
      for (const context of contexts) await context.close().catch(() => undefined);
      await browser.close();
    },
  };
}

let axeScript: string | undefined;
/** axe-core's browser build, from node_modules (no network). */
function axeSource(): string {
  axeScript ??= readFileSync(path.join(ROOT, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
  return axeScript;
}

/** How many pages a PDF has: its page objects (`/Type /Page`, not `/Pages`), as Chromium writes them. */
export function pdfPageCount(pdf: Buffer): number {
  return pdf.toString('latin1').match(/\/Type\s*\/Page(?![A-Za-z])/g)?.length ?? 0;
}
