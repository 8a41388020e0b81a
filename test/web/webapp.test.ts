// The web app in a real headless Chromium against the local stack (real emulators, the dev Functions host serving
// the built app from dist/web, real agent processes): upload → ready, bad files rejected with the reason, a job
// watched live to success, the admin dashboard's charts, and tenant isolation by URL. Every page is checked for
// console errors, unlabeled controls and sideways scrolling at phone width, and photographed at desktop and phone
// width (UPDATE_SCREENSHOTS=1 writes them to docs/screenshots/, otherwise to a temp dir).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueDevToken } from '../../functions/core/auth.js';
import { makeSafetensors } from '../../testkit/safetensors.js';
import { repoRoot } from '../../local/settings.js';
import { FAST_SETTINGS, sha256 } from '../e2e/helpers.js';
import { startTestFleet, type TestFleet } from '../support/test-agents.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { fitsWidth, launchChromium, openPage, unlabeledControls, type WatchedPage } from './browser.js';

let t: TestHost;
let fleet: TestFleet;
let browser: Browser;
let appUrl: string;
const tokens: Record<string, string> = {};
const shotsDir = process.env.UPDATE_SCREENSHOTS ? join(repoRoot(), 'docs/screenshots') : mkdtempSync(join(tmpdir(), 'webapp-shots-'));
const workDir = mkdtempSync(join(tmpdir(), 'webapp-files-'));
/** expect.poll waits 1 s by default: far too short on a shared 2-core machine under the full suite. Not a speed assertion. */
const POLL = { timeout: 60_000 };
const PHONE = { width: 390, height: 844 };
const t0 = Date.now();

beforeAll(async () => {
  t = await startTestHost({ ...FAST_SETTINGS, SCHEDULER_POLICY: 'affinity' }, { timers: true });
  [fleet, browser] = await Promise.all([startTestFleet(t, 2, { prefix: 'web' }), launchChromium()]);
  appUrl = `${t.apiUrl}/app/`;
  for (const [who, role] of [['alice', 'user'], ['bob', 'user'], ['ops', 'admin']] as const) {
    tokens[who] = await issueDevToken(t.settings.AUTH_DEV_SECRET!, who, role);
  }
  mkdirSync(shotsDir, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await fleet?.stop();
  await t?.stop();
  rmSync(workDir, { recursive: true, force: true });
  console.log(`[web] screenshots in ${shotsDir}; file took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

/** Opens the app signed in as `who` (the token in the URL fragment, as `npm start` prints it) at a hash route. */
async function signedIn(who: string, route = '#/loras', viewport?: { width: number; height: number }): Promise<WatchedPage> {
  const w = await openPage(browser, viewport);
  await w.page.goto(`${appUrl}#token=${tokens[who]}`);
  await w.page.getByRole('navigation', { name: 'Main' }).waitFor();
  if (route !== '#/loras') await w.page.evaluate((r) => (location.hash = r), route);
  return w;
}

/** Desktop and phone screenshots of the page as it is now; checks the phone layout does not scroll sideways. */
async function photograph(w: WatchedPage, name: string, ready: (p: Page) => Promise<unknown>): Promise<void> {
  await w.page.screenshot({ path: join(shotsDir, `${name}-desktop.png`), fullPage: true });
  const phone = await openPage(browser, PHONE);
  await phone.context.addInitScript((s) => sessionStorage.setItem('lora-router.token', s), await w.page.evaluate(() => sessionStorage.getItem('lora-router.token')!));
  await phone.page.goto(w.page.url());
  await ready(phone.page);
  const fit = await fitsWidth(phone.page);
  expect(fit.scrollWidth, `${name} at phone width scrolls sideways`).toBeLessThanOrEqual(fit.width);
  await phone.page.screenshot({ path: join(shotsDir, `${name}-phone.png`) });
  expect(phone.problems()).toEqual([]);
  await phone.context.close();
}

async function noProblems(w: WatchedPage): Promise<void> {
  expect(await unlabeledControls(w.page)).toEqual([]);
  expect(w.problems()).toEqual([]);
}

const loraCard = (page: Page, name: string) => page.locator('li.card', { has: page.getByText(name, { exact: true }) });

let readyLoraId = '';
let aliceJobId = '';

// Generous ceilings (not speed assertions): the full suite runs emulators, agents and Chromium on 2 shared cores.
describe('web app', { timeout: 300_000 }, () => {
  it('serves the app with the right types and caching, and no file outside it', async () => {
    const index = await fetch(appUrl, { headers: { 'Accept-Encoding': 'gzip' } });
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const html = await index.text();
    const js = /src="([^"]+\.js)"/.exec(html)?.[1];
    expect(js).toMatch(/^\/api\/app\/assets\/index-[\w-]+\.js$/);
    const asset = await fetch(new URL(js!, appUrl), { headers: { 'Accept-Encoding': 'gzip' } });
    expect([asset.status, asset.headers.get('content-type'), asset.headers.get('cache-control'), asset.headers.get('content-encoding')]).toEqual([
      200,
      'text/javascript; charset=utf-8',
      'public, max-age=31536000, immutable',
      'gzip',
    ]);
    // Client-side routes fall back to index.html; missing files and traversal attempts are 404 JSON.
    expect((await fetch(`${appUrl}jobs`)).headers.get('content-type')).toBe('text/html; charset=utf-8');
    for (const path of ['assets/nope.js', '..%2F..%2Fpackage.json', '%2e%2e/%2e%2e/host.json', 'assets/..%2F..%2F..%2Fpackage.json', '..%5C..%5Cpackage.json']) {
      const r = await fetch(`${appUrl}${path}`);
      const body = (await r.json()) as { error?: { code: string } };
      expect({ path, status: r.status, code: body.error?.code }).toEqual({ path, status: 404, code: 'not_found' });
    }
    expect(await (await fetch(`${appUrl}config.json`)).json()).toEqual({ auth: 'local' });
  });

  it('asks for a dev token without one, and says so plainly when the token is bad', async () => {
    const w = await openPage(browser);
    await w.page.goto(appUrl);
    await w.page.getByLabel('Dev token').fill('not-a-token');
    await w.page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => w.page.getByRole('alert').textContent(), POLL).toMatch(/bearer token/i);
    w.expectError(/Failed to load resource: the server responded with a status of 401/);
    await noProblems(w);
    await w.page.screenshot({ path: join(shotsDir, 'signin-desktop.png') });
    await w.context.close();
  });

  it('uploads a LoRA by drag and drop and shows it ready with its size and sha256', async () => {
    const w = await signedIn('alice');
    const { page } = w;
    const content = makeSafetensors({ dataBytes: 3 * 1024 * 1024, seed: 7 });
    // A real drop event carrying a real File, as a file manager would deliver it.
    const dataTransfer = await page.evaluateHandle((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'portrait-style.safetensors', { type: 'application/octet-stream' }));
      return dt;
    }, content.toString('base64'));
    await page.locator('label.drop').dispatchEvent('drop', { dataTransfer });
    const card = loraCard(page, 'portrait-style.safetensors');
    await expect.poll(() => card.getAttribute('data-status'), { timeout: 180_000 }).toBe('ready');
    await expect.poll(() => card.textContent(), POLL).toContain('3.0 MiB');
    expect(await card.locator('code[title]').first().getAttribute('title')).toBe(sha256(content));
    readyLoraId = (await card.getAttribute('data-lora-id'))!;
    expect(readyLoraId).toMatch(/^lora_/);
    // The quota bar counts it.
    await expect.poll(() => page.getByRole('meter', { name: 'LoRAs' }).getAttribute('aria-valuenow'), POLL).toBe('1');
    await noProblems(w);
    await w.context.close();
  });

  it('uploads straight to storage through the SAS URL (the large-file flow) and follows it to ready', async () => {
    const w = await signedIn('alice');
    const { page } = w;
    await page.evaluate(() => localStorage.setItem('lora-router.upload-flow', 'sas'));
    const content = makeSafetensors({ dataBytes: 10 * 1024 * 1024, seed: 8 }); // two 8 MiB blocks
    const file = join(workDir, 'big-style.safetensors');
    writeFileSync(file, content);
    await page.locator('input[type=file]').setInputFiles(file); // a local browser reads the path itself
    const card = loraCard(page, basename(file));
    await expect.poll(() => card.getAttribute('data-status'), { timeout: 180_000 }).toBe('ready');
    expect(await card.locator('code[title]').first().getAttribute('title')).toBe(sha256(content));
    await noProblems(w);
    await w.context.close();
  });

  it('rejects bad files with the reason in plain words (direct upload and storage upload)', async () => {
    const w = await signedIn('alice');
    const { page } = w;
    await page.locator('input[type=file]').setInputFiles({ name: 'notes.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('this is not a safetensors file at all') });
    const alert = page.locator('.uploads [role=alert]');
    await expect.poll(() => alert.textContent(), { timeout: 180_000 }).toMatch(/safetensors|header/i);
    w.expectError(/Failed to load resource: the server responded with a status of 422/);

    await page.evaluate(() => localStorage.setItem('lora-router.upload-flow', 'sas'));
    await page.locator('input[type=file]').setInputFiles({ name: 'broken.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.alloc(4096, 0xff) });
    const card = loraCard(page, 'broken.safetensors');
    await expect.poll(() => card.getAttribute('data-status'), { timeout: 180_000 }).toBe('rejected');
    expect(await card.locator('.reason').textContent()).toMatch(/^Rejected: \S.{10,}/);
    await noProblems(w);
    await page.evaluate(() => localStorage.removeItem('lora-router.upload-flow'));
    await photograph(w, 'loras', (p) => loraCard(p, 'broken.safetensors').waitFor());

    // Delete with confirmation, by keyboard first: Enter opens the dialog, Esc keeps the LoRA; then confirm removes it.
    await card.getByRole('button', { name: 'Delete broken.safetensors' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('dialog').waitFor();
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'hidden' });
    expect(await card.count()).toBe(1);
    await card.getByRole('button', { name: 'Delete broken.safetensors' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await expect.poll(() => card.count(), POLL).toBe(0);
    await noProblems(w);
    await w.context.close();
  });

  it('submits a job with a LoRA and watches it succeed with live logs and placement', async () => {
    const w = await signedIn('alice', '#/jobs');
    const { page } = w;
    await page.getByRole('checkbox', { name: 'portrait-style.safetensors' }).check();
    await page.getByLabel('Payload (JSON, passed to the job)').fill('{"lines": 3, "sleep_ms": 1500, "verify_sha256": true}');
    await page.getByRole('button', { name: 'Submit job' }).click();
    await page.waitForURL(/#\/jobs\/job_[0-9a-z]{26}$/);
    aliceJobId = page.url().split('/').pop()!;
    // The page was opened while the job was pending; everything after this arrives live (stream and job view).
    const status = page.locator('.status-line .badge');
    await expect.poll(() => status.textContent(), { timeout: 180_000 }).toBe('Succeeded');
    const logs = page.getByTestId('job-logs');
    await expect.poll(() => logs.textContent(), { timeout: 180_000 }).toContain('open-loras: done');
    const text = (await logs.textContent())!;
    expect(text).toContain(`open-loras: opened user ${readyLoraId}`);
    expect(text).toContain('open-loras: line 3');
    expect(await page.getByText(/complete/).count()).toBeGreaterThan(0);
    const placement = page.locator('.panel', { has: page.getByRole('heading', { name: 'Placement' }) });
    expect(await placement.textContent()).toMatch(/Machine(web-1|web-2)Pool/);
    expect(await page.locator('.badge.cache-miss, .badge.cache-hit').count()).toBe(1);
    await noProblems(w);
    await photograph(w, 'job', (p) => p.locator('.status-line .badge', { hasText: 'Succeeded' }).waitFor());
    await page.evaluate(() => (location.hash = '#/jobs'));
    await page.getByRole('link', { name: aliceJobId }).waitFor();
    await noProblems(w);
    await photograph(w, 'jobs', (p) => p.getByRole('link', { name: aliceJobId }).waitFor());
    await w.context.close();
  });

  it("shows a readable not-found for another user's job opened by URL", async () => {
    const w = await signedIn('bob', `#/jobs/${aliceJobId}`);
    await w.page.getByRole('heading', { name: 'Job not found' }).waitFor();
    expect(await w.page.getByRole('alert').textContent()).toContain(`There is no job ${aliceJobId} in your account`);
    expect(await w.page.getByText('open-loras').count()).toBe(0);
    w.expectError(/Failed to load resource: the server responded with a status of 404/);
    await noProblems(w);
    await w.context.close();
  });

  it('shows the admin dashboard with non-empty charts, pools and per-machine caches', async () => {
    // A second job with the same LoRA lands where it is cached: the dashboard then has a hit and a miss to show.
    const headers = { Authorization: `Bearer ${tokens.alice}`, 'Content-Type': 'application/json' };
    const submitted = await fetch(`${t.apiUrl}/jobs`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ service_required: 'image-gen', requirements: { loras: [{ type: 'user', flat_file_id: readyLoraId }] } }),
    });
    expect(submitted.status).toBe(201);
    const { job_id } = (await submitted.json()) as { job_id: string };
    await expect
      .poll(async () => ((await (await fetch(`${t.apiUrl}/jobs/${job_id}`, { headers })).json()) as { status: string }).status, { timeout: 180_000 })
      .toBe('succeeded');

    const w = await signedIn('ops', '#/fleet');
    const { page } = w;
    await page.getByRole('heading', { name: 'Fleet' }).waitFor();
    const canvases = page.locator('[data-testid=charts] canvas');
    await expect.poll(() => canvases.count(), POLL).toBeGreaterThanOrEqual(4);
    // Each chart drew something: count non-transparent pixels on its canvas.
    const painted = await canvases.evaluateAll((els) =>
      els.map((c) => {
        const cv = c as HTMLCanvasElement;
        const data = cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) n++;
        return { label: cv.getAttribute('aria-label'), painted: n };
      }),
    );
    for (const c of painted) expect(c.painted, c.label ?? '').toBeGreaterThan(500);
    expect(painted.map((c) => c.label).join('\n')).toMatch(/Jobs by status: .*2 succeeded/);
    // Hit/miss counters come from heartbeats: wait for the one after the second job.
    await expect.poll(() => page.locator('canvas[aria-label^="Cache hits and misses"]').getAttribute('aria-label'), POLL).toBe('Cache hits and misses: 1 hits, 1 misses');
    await expect.poll(() => page.locator('table').first().textContent(), POLL).toContain('standard');
    const machines = page.getByRole('list', { name: 'Machines' }).locator('li.card');
    await expect.poll(() => machines.count(), POLL).toBe(2);
    expect(await page.getByRole('meter', { name: 'LoRA cache' }).count()).toBe(2);
    await noProblems(w);
    await photograph(w, 'fleet', (p) => p.locator('[data-testid=charts] canvas').nth(3).waitFor());
    await w.context.close();
  });

  it('measures page weight (JS + CSS, gzipped) and time from navigation to the LoRA list rendered', async () => {
    const runs: { ms: number; js: number; css: number; jsRaw: number; cssRaw: number }[] = [];
    for (let i = 0; i < 5; i++) {
      const w = await openPage(browser);
      await w.context.addInitScript((tok) => sessionStorage.setItem('lora-router.token', tok), tokens.alice!);
      await w.page.goto(`${appUrl}#/loras`);
      // Evaluated in the page on every animation frame: the time (since navigation start) the first card showed.
      const ms = (await (await w.page.waitForFunction(() => document.querySelector('[data-testid=lora-list] li.card') && performance.now(), null, { polling: 'raf' })).jsonValue()) as number;
      const sizes = await w.page.evaluate(() =>
        (performance.getEntriesByType('resource') as PerformanceResourceTiming[])
          .filter((r) => /\.(js|css)$/.test(new URL(r.name).pathname))
          .map((r) => ({ css: r.name.endsWith('.css'), encoded: r.encodedBodySize, decoded: r.decodedBodySize })),
      );
      const sum = (css: boolean, k: 'encoded' | 'decoded') => sizes.filter((x) => x.css === css).reduce((a, x) => a + x[k], 0);
      runs.push({ ms, js: sum(false, 'encoded'), css: sum(true, 'encoded'), jsRaw: sum(false, 'decoded'), cssRaw: sum(true, 'decoded') });
      expect(w.problems()).toEqual([]);
      await w.context.close();
    }
    const median = [...runs.map((r) => r.ms)].sort((a, b) => a - b)[Math.floor(runs.length / 2)]!;
    const r = runs[0]!;
    expect(r.js).toBeGreaterThan(0);
    expect(r.css).toBeGreaterThan(0);
    console.log(
      `[web] page weight (My LoRAs): JS ${(r.js / 1024).toFixed(1)} KiB + CSS ${(r.css / 1024).toFixed(1)} KiB gzipped ` +
        `(${(r.jsRaw / 1024).toFixed(1)} + ${(r.cssRaw / 1024).toFixed(1)} KiB raw); navigation → LoRA list rendered: ` +
        `median ${median.toFixed(0)} ms over ${runs.length} cold loads (${runs.map((x) => x.ms.toFixed(0)).join(', ')} ms)`,
    );
  });

  it('keeps the fleet dashboard for admins', async () => {
    const w = await signedIn('alice', '#/fleet');
    expect(await w.page.getByRole('link', { name: 'Fleet' }).count()).toBe(0);
    expect(await w.page.getByRole('alert').textContent()).toContain('for admins');
    await noProblems(w);
    await w.context.close();
  });
});
