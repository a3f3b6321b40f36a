// What the browser tests share: their settings from the environment (set by tests/e2e.rs),
// starting Debian's chromium through playwright-core, screenshots, and waiting for a text.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

/** A required environment variable. */
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set (run via cargo test --test e2e)`);
  return v;
};
const BASE = env('BASE').replace(/\/$/, '');
const SCREENSHOTS = process.env.SCREENSHOTS || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Headless chromium without any network of its own (nothing to download, no updates). */
function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
}

/** A full-page screenshot into SCREENSHOTS (when set). */
async function shot(page, name) {
  if (!SCREENSHOTS) return;
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  // Sticky header and composer are placed relative to the viewport, so a full-page capture of
  // a scrolled viewport draws them over the content: grow the viewport to the page.
  const viewport = page.viewportSize();
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.setViewportSize({ width: viewport.width, height: Math.max(viewport.height, height) });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SCREENSHOTS, name), fullPage: true });
  await page.setViewportSize(viewport);
}

/** Waits until the element's text matches `re`; fails saying what it shows instead. */
async function waitText(page, selector, re, what, timeout = 10_000) {
  const ok = await page
    .waitForFunction(({ selector, src, flags }) => {
      const el = document.querySelector(selector);
      return el && new RegExp(src, flags).test(el.textContent);
    }, { selector, src: re.source, flags: re.flags }, { timeout })
    .then(() => true, () => false);
  if (!ok) {
    const seen = await page.$eval(selector, (el) => el.textContent).catch((e) => `(${e.message})`);
    assert.fail(`${what}: ${selector} did not match ${re} within ${timeout} ms; it shows ${JSON.stringify(seen)}`);
  }
}

module.exports = { env, BASE, SCREENSHOTS, launch, shot, waitText };
