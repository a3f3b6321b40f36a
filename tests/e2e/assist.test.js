// The digital assistant in a real browser (Debian's chromium, driven by playwright-core): a
// customer's message shows the assistant's analysis (intent with confidence, language,
// sentiment, the data found in it as chips), live once the analysis job has run; a chip puts
// its value into the reply at the cursor; the composer's style check flags an outdated phrase
// as the agent types and selects its words on a click. Started by `cargo test --test e2e`
// (tests/e2e.rs), which runs `kontor serve` and passes:
//   BASE          http://127.0.0.1:PORT of the running server
//   TOKEN         an admin API token (to post inbound messages as a channel would)
//   BEN_EMAIL, BEN_PASSWORD   an agent
//   SCREENSHOTS   directory for the screenshots (optional)
//   CHROMIUM      browser executable (default /usr/bin/chromium)
// Run by hand: node --test-reporter=spec tests/e2e/assist.test.js (with the variables set).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { env, BASE, launch, shot, waitText } = require('./support');

const TOKEN = env('TOKEN');
const BEN = { email: env('BEN_EMAIL'), password: env('BEN_PASSWORD') };

// The analysis job runs on the server's job poll (a second by default) and may first train
// the default model: the page waits for the analysis, up to this long.
const ANALYSIS_TIMEOUT = 30_000;
const STEP = { timeout: 60_000 };
const IBAN = 'DE02120300000000202051';
const SENDER = `jonas.albrecht.${Date.now()}@kunde.example`;
const SUBJECT = 'Neue Bankverbindung';
let browser;
let ben; // an agent's page, in German
let caseId;

/** Posts an inbound message the way a channel integration does; returns the API answer. */
async function inbound(subject, text) {
  const res = await fetch(`${BASE}/api/v1/inbound`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ from: { email: SENDER }, name: 'Jonas Albrecht', subject, text }),
  });
  const body = await res.json().catch(() => null);
  assert.equal(res.status, 201, `POST /api/v1/inbound: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** Waits for `selector` to be there; fails saying what the message shows instead. */
async function waitFor(page, selector, what, timeout = 10_000) {
  const ok = await page.waitForSelector(selector, { timeout }).then(() => true, () => false);
  if (!ok) {
    const seen = await page.$eval('#timeline', (el) => el.innerText).catch((e) => `(${e.message})`);
    const api = await fetch(`${BASE}/api/v1/cases/${caseId}`, { headers: { Authorization: `Bearer ${TOKEN}` } })
      .then((r) => r.json()).then((c) => JSON.stringify((c.messages || []).map((m) => [m.id, m.analysis && m.analysis.intent])))
      .catch((e) => `(${e.message})`);
    assert.fail(`${what}: ${selector} did not appear within ${timeout} ms; the timeline shows ${JSON.stringify(seen)}; `
      + `the API has the analyses ${api}`);
  }
}

before(async () => {
  browser = await launch();
  const context = await browser.newContext({ locale: 'de-DE', viewport: { width: 1280, height: 800 } });
  ben = await context.newPage();
  ben.setDefaultTimeout(10_000);
  ben.on('pageerror', (e) => console.log(`# ben: page error: ${e.message}`));
  ben.on('response', (r) => {
    if (r.status() >= 400) console.log(`# ben: HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  await ben.goto(`${BASE}/`);
  await ben.fill('input[name=email]', BEN.email);
  await ben.fill('input[name=password]', BEN.password);
  await Promise.all([ben.waitForURL(/\/inbox$/), ben.click('form button[type=submit]')]);
});

after(async () => {
  if (browser) await browser.close();
});

test('a customer\'s message shows the assistant\'s intent, language, sentiment and an IBAN chip', STEP, async () => {
  const r = await inbound(SUBJECT, 'Guten Tag, ich habe mein Girokonto gewechselt. Bitte buchen Sie die Abschläge '
    + 'künftig von meiner neuen IBAN DE02 1203 0000 0000 2020 51 ab. Freundliche Grüße, Jonas Albrecht');
  caseId = r.case_id;
  await ben.goto(`${BASE}/cases/${caseId}`);
  await ben.waitForSelector('#live.on'); // following the event stream
  // Shown as rendered if the analysis was quicker than the page, else live once it is done.
  const strip = `#timeline li.msg[data-id="${r.message_id}"] .assist`;
  await waitFor(ben, `${strip} [data-intent="bank_details_change"]`, 'the intent', ANALYSIS_TIMEOUT);
  await waitText(ben, `${strip} .assist-intent`, /Bankverbindung ändern\s+\d{1,3} %/, 'intent label and confidence');
  await waitText(ben, `${strip} .assist-lang`, /Deutsch/, 'language');
  assert.match(await ben.textContent(`${strip} .sentiment`), /negativ|neutral|positiv/);
  const chip = `${strip} button.chip[data-kind="iban"]`;
  await waitFor(ben, chip, 'the IBAN chip');
  assert.match(await ben.textContent(chip), new RegExp(`IBAN\\s+${IBAN}`));
  assert.match(await ben.getAttribute(chip, 'aria-label'), /In die Antwort einfügen/);
  // The case's intent in its head (refreshed live as well).
  await waitFor(ben, '#meta .case-intent [data-intent="bank_details_change"]', 'the case\'s intent');
  await waitText(ben, '#meta .case-intent', /Anliegen\s+Bankverbindung ändern/, 'the case\'s intent');
});

test('a later message is analysed live, without reloading the page', STEP, async () => {
  await ben.evaluate(() => { window.__marker = 'no reload'; });
  const r = await inbound(`Re: ${SUBJECT}`, 'Außerdem möchte ich meinen Stromvertrag zum Jahresende kündigen.');
  assert.equal(r.case_id, caseId, 'the follow-up joins the case');
  await waitFor(ben, `#timeline li.msg[data-id="${r.message_id}"] .assist [data-intent]`, 'the live analysis',
    ANALYSIS_TIMEOUT);
  assert.equal(await ben.evaluate(() => window.__marker), 'no reload', 'the page was reloaded instead of updated');
});

test('a click on a chip puts its value into the reply at the cursor', STEP, async () => {
  await ben.fill('#composer-text', 'Wir haben Ihre neue IBAN  hinterlegt.');
  // The cursor after "IBAN " (a click elsewhere keeps the textarea's selection).
  await ben.evaluate(() => {
    const t = document.querySelector('#composer-text');
    const at = t.value.indexOf('IBAN ') + 'IBAN '.length;
    t.setSelectionRange(at, at);
  });
  await ben.click('#timeline button.chip[data-kind="iban"]');
  assert.equal(await ben.inputValue('#composer-text'), `Wir haben Ihre neue IBAN ${IBAN} hinterlegt.`);
  assert.equal(await ben.evaluate(() => document.activeElement.id), 'composer-text', 'the focus is back in the reply');
  await waitText(ben, '#composer-status', /IBAN eingefügt/, 'composer status');
});

test('the style check flags an outdated phrase as the agent types and selects it on a click', STEP, async () => {
  await waitText(ben, '#style-summary', /Keine Auffälligkeiten/, 'a clean draft');
  await ben.click('#composer-text');
  await ben.keyboard.press('End');
  await ben.keyboard.type('\n\nMit vorzüglicher Hochachtung');
  const finding = '#style-findings li.f-phrase button.finding-phrase';
  await waitFor(ben, finding, 'a style finding');
  await waitText(ben, '#style-findings', /Mit vorzüglicher Hochachtung.*veraltete Grußformel.*Mit freundlichen Grüßen/s,
    'phrase, reason and suggestion');
  await waitText(ben, '#style-summary', /1 Hinweis zum Stil/, 'summary');
  await shot(ben, 'case-assist.png');
  await ben.click(finding);
  const selected = await ben.evaluate(() => {
    const t = document.querySelector('#composer-text');
    return document.activeElement === t ? t.value.slice(t.selectionStart, t.selectionEnd) : null;
  });
  assert.equal(selected, 'Mit vorzüglicher Hochachtung');
  // Typing over the selection replaces the phrase; the finding goes.
  await ben.keyboard.type('Viele Grüße');
  await waitText(ben, '#style-summary', /Keine Auffälligkeiten/, 'the finding is gone');
  assert.equal(await ben.$$eval('#style-findings li', (els) => els.length), 0);
});
