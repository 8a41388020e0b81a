// Headless Chromium for the web app tests: Debian's `chromium` package driven by playwright-core (no browser
// download). Every page is watched for console errors and uncaught exceptions; a test fails on any it did not expect.
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's package (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  // --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  /** Console errors and page errors so far, minus the ones `expect` allowed. */
  problems(): string[];
  /** Allows console errors matching this (e.g. the browser's own line for a 404 the test provokes on purpose). */
  expectError(pattern: RegExp): void;
}

export async function openPage(browser: Browser, viewport = { width: 1280, height: 800 }): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  context.setDefaultTimeout(120_000); // a ceiling for a loaded machine, not a speed check
  const page = await context.newPage();
  const seen: string[] = [];
  const allowed: RegExp[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') seen.push(`console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => seen.push(`page error: ${e.message}`));
  return {
    page,
    context,
    problems: () => seen.filter((s) => !allowed.some((a) => a.test(s))),
    expectError: (p) => allowed.push(p),
  };
}

/** Form controls without an accessible name (label, aria-label or aria-labelledby): should be none. */
export async function unlabeledControls(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const out: string[] = [];
    for (const el of Array.from(document.querySelectorAll('input, select, textarea, button'))) {
      const e = el as HTMLInputElement;
      const named =
        (e.labels && e.labels.length > 0) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent?.trim());
      if (!named) out.push(el.outerHTML.slice(0, 120));
    }
    return out;
  });
}

/** True when the page fits the viewport width (nothing to scroll sideways). */
export async function fitsWidth(page: Page): Promise<{ scrollWidth: number; width: number }> {
  return page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth }));
}
