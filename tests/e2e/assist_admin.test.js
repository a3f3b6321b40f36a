// The digital assistant's admin and four-eyes views in a real browser (Debian's chromium,
// driven by playwright-core): an admin writes a rule in the settings and its dry run finds
// the message it is meant for; a reply held by a rule waits in the approvals list until a
// second staff user approves it, and then goes out; an agent corrects the intent the
// assistant recognised; an intent set to `suggest` puts its canned response into an empty
// composer, marked as a suggestion. Started by `cargo test --test e2e` (tests/e2e.rs), which runs
// `kontor serve` and passes:
//   BASE          http://127.0.0.1:PORT of the running server
//   TOKEN         an admin API token (to post inbound messages and rules as an integration would)
//   ANNA_EMAIL, ANNA_PASSWORD   an admin
//   BEN_EMAIL, BEN_PASSWORD     an agent
//   SCREENSHOTS   directory for the screenshots (optional)
//   CHROMIUM      browser executable (default /usr/bin/chromium)
// Run by hand: node --test-reporter=spec tests/e2e/assist_admin.test.js (with the variables set).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { env, BASE, launch, shot, waitText } = require('./support');

const TOKEN = env('TOKEN');
const ANNA = { email: env('ANNA_EMAIL'), password: env('ANNA_PASSWORD') };
const BEN = { email: env('BEN_EMAIL'), password: env('BEN_PASSWORD') };

// The analysis job runs on the server's job poll and may first train the default model.
const ANALYSIS_TIMEOUT = 30_000;
const STEP = { timeout: 60_000 };
// Words no other scenario writes, so that the rules here touch only these messages.
const STAMP = Date.now().toString(36).replace(/[0-9]/g, (d) => 'abcdefghij'[d]);
const DRY_WORD = `probelauf${STAMP}`;
const HOLD_WORD = `vieraugen${STAMP}`;
let browser;
let anna; // an admin's page, in German
let ben; // an agent's page, in German
let benContext;
let held; // { caseId, messageId } of the case whose replies need approval

/** Calls the API with the admin token; returns { status, body }. */
async function call(method, path, body) {
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** Posts an inbound message the way a channel integration does. */
async function inbound(sender, subject, text) {
  const r = await call('POST', '/api/v1/inbound', { from: { email: sender }, subject, text });
  assert.equal(r.status, 201, `POST /api/v1/inbound: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Waits until the case (as the API gives it) meets `ok`; fails saying what it was. */
async function caseWhen(caseId, ok, what, timeout = ANALYSIS_TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last = null;
  while (Date.now() < deadline) {
    const r = await call('GET', `/api/v1/cases/${caseId}`);
    last = r.body;
    if (r.status === 200 && ok(last)) return last;
    await new Promise((resolve) => { setTimeout(resolve, 50); }); // polling the API, not a wait for the page
  }
  assert.fail(`${what}: case ${caseId} did not get there within ${timeout} ms: ${JSON.stringify(last)}`);
  return null;
}

/** Waits for an element matching `selector` (Playwright's selectors, `:has-text` too) whose
 * text matches `re`; fails saying what the first such element shows instead. */
async function waitLocated(page, selector, re, what, timeout = 10_000) {
  const ok = await page.locator(selector, { hasText: re }).first().waitFor({ timeout }).then(() => true, () => false);
  if (!ok) {
    const seen = await page.locator(selector).first().textContent({ timeout: 1000 }).catch((e) => `(${e.message})`);
    assert.fail(`${what}: ${selector} did not show ${re} within ${timeout} ms; it shows ${JSON.stringify(seen)}`);
  }
}

const analysed = (messageId) => (c) => (c.messages || []).some((m) => m.id === messageId && m.analysis);

async function signIn(context, who, name) {
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (e) => console.log(`# ${name}: page error: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) console.log(`# ${name}: HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  await page.goto(`${BASE}/`);
  await page.fill('input[name=email]', who.email);
  await page.fill('input[name=password]', who.password);
  await Promise.all([page.waitForURL(/\/inbox$/), page.click('form button[type=submit]')]);
  return page;
}

before(async () => {
  browser = await launch();
  const viewport = { width: 1280, height: 900 };
  anna = await signIn(await browser.newContext({ locale: 'de-DE', viewport }), ANNA, 'anna');
  benContext = await browser.newContext({ locale: 'de-DE', viewport });
  ben = await signIn(benContext, BEN, 'ben');
});

after(async () => {
  if (browser) await browser.close();
});

test('an admin writes a rule in the settings, its dry run finds the message it is meant for; on, edit, delete; levels and hours', STEP, async () => {
  const r = await inbound(`kunde.${STAMP}@kunde.example`, 'Ratenzahlung',
    `Guten Tag, ich möchte meine Rechnung in Raten zahlen. Stichwort ${DRY_WORD}. Viele Grüße`);
  await caseWhen(r.case_id, analysed(r.message_id), 'the message is analysed');

  await anna.goto(`${BASE}/settings`);
  await anna.waitForSelector('#assistant-settings');
  const name = `Probelauf ${STAMP}`;
  await anna.fill('#rule-form input[name=name]', name);
  await anna.uncheck('#rule-form input[name=enabled]'); // tried before it is switched on
  await anna.fill('#rule-form input[name=keywords]', DRY_WORD);
  await anna.fill('#rule-form input[name=add_tag]', 'ratenzahlung');
  await anna.click('#rule-form button[type=submit]');
  const row = `#rules-list li.rule:has-text("${name}")`;
  await anna.waitForSelector(row); // the page reloads with the new rule in the list
  await waitLocated(anna, `${row} .rule-summary`, new RegExp(`Stichwörter: „${DRY_WORD}“ → Schlagwort ratenzahlung`),
    'the rule in words');
  assert.ok(await anna.$eval(row, (li) => li.classList.contains('off')), 'the rule is off');

  await anna.click(`${row} button.rule-dry-run`);
  await waitLocated(anna, `${row} .dry-run-summary`, /^1 von \d+ Nachrichten passen/, 'the dry run\'s count');
  const link = `${row} .dry-run-matches a[href="/cases/${r.case_id}"]`;
  await anna.waitForSelector(link);
  await shot(anna, 'settings-assistant.png');

  // Switched on from the list; edited in the form (filled with the rule); deleted.
  await anna.check(`${row} input.rule-enabled`);
  await anna.waitForSelector(`#rules-list li.rule:not(.off):has-text("${name}")`);
  const rules = await call('GET', '/api/v1/rules');
  assert.equal(rules.body.items.find((x) => x.name === name).enabled, true, 'the rule is on');
  await anna.click(`${row} button.rule-edit`);
  await waitText(anna, '#rule-form-title', /^Regel bearbeiten: Probelauf/, 'the form edits the rule');
  assert.equal(await anna.inputValue('#rule-form input[name=keywords]'), DRY_WORD);
  assert.equal(await anna.inputValue('#rule-form input[name=add_tag]'), 'ratenzahlung');
  const renamed = `Raten ${STAMP}`;
  await anna.fill('#rule-form input[name=name]', renamed);
  await anna.click('#rule-form button[type=submit]');
  const renamedRow = `#rules-list li.rule:has-text("${renamed}")`;
  await anna.waitForSelector(renamedRow);
  anna.once('dialog', (d) => d.accept());
  await anna.click(`${renamedRow} button.rule-delete`);
  await anna.waitForSelector(renamedRow, { state: 'detached' });

  // An automation level that needs a canned response says so; business hours are saved.
  await anna.selectOption('#intents-form tr[data-intent="praise"] select.intent-level', 'suggest');
  await anna.click('#intents-form button[type=submit]');
  await waitText(anna, '#intents-form .form-status', /canned_id/, 'the missing canned response is named');
  await anna.selectOption('#intents-form tr[data-intent="praise"] select.intent-level', 'off');
  await anna.uncheck('#hours-off');
  await anna.fill('#hours-mon', '08:00-12:00, 13:00-17:00');
  await anna.click('#hours-form button[type=submit]');
  await waitText(anna, '#hours-form .form-status', /^Gespeichert\.$/, 'business hours saved');
  const hours = await call('GET', '/api/v1/assist/business-hours');
  assert.deepEqual(hours.body.business_hours.days.mon, [['08:00', '12:00'], ['13:00', '17:00']]);
  // Back to none, as the other scenarios expect.
  await anna.check('#hours-off');
  await anna.click('#hours-form button[type=submit]');
  await waitText(anna, '#hours-form .form-status', /^Gespeichert\.$/, 'business hours removed');
  assert.equal((await call('GET', '/api/v1/assist/business-hours')).body.business_hours, null);
});

test('a reply held by a rule waits for a second person, who approves it in the approvals list', STEP, async () => {
  const rule = await call('POST', '/api/v1/rules', {
    name: `Vier Augen ${STAMP}`, conditions: { keywords: [HOLD_WORD] }, actions: [{ type: 'require_approval' }],
  });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  const r = await inbound(`beschwerde.${STAMP}@kunde.example`, 'Beschwerde',
    `Ihr Service ist schlecht, die Rechnung ist falsch. ${HOLD_WORD}`);
  held = { caseId: r.case_id, messageId: r.message_id };
  await caseWhen(r.case_id, (c) => c.approval_rule && analysed(r.message_id)(c), 'the rule asks for approval');

  // Ben answers: the reply is held, and says so.
  await ben.goto(`${BASE}/cases/${r.case_id}`);
  await ben.waitForSelector('#live.on');
  await waitText(ben, '#meta .case-approval', /Antworten brauchen Freigabe/, 'the case says replies need approval');
  const reply = `Das prüfen wir sofort und melden uns (${STAMP}).`;
  await ben.fill('#composer-text', reply);
  await ben.click('#send');
  await waitText(ben, '#composer-status', /wartet auf Freigabe/, 'the composer says the reply is held');
  const out = `#timeline li.msg.out:has-text("${reply}")`;
  await waitLocated(ben, `${out} .delivery`, /wartet auf Freigabe/, 'the held reply in the timeline');
  assert.ok(await ben.$eval(out, (li) => li.classList.contains('held')), 'the held reply is marked as such');

  // Ben sees his own reply waiting, but cannot approve it himself.
  const own = await benContext.newPage();
  await own.goto(`${BASE}/approvals`);
  const mine = `.approval-item:has-text("${reply}")`;
  await own.waitForSelector(`${mine} .approval-own`);
  assert.equal(await own.$$eval(`${mine} button.approve`, (b) => b.length), 0, 'no approve button for the author');
  await own.close();

  // Anna finds it from the inbox (key f) and approves it.
  await anna.goto(`${BASE}/inbox`);
  await waitText(anna, '#approvals-count', /^[1-9]\d*$/, 'the inbox counts what waits for approval');
  await Promise.all([anna.waitForURL(/\/approvals$/), anna.keyboard.press('f')]);
  const item = `.approval-item:has-text("${reply}")`;
  await anna.waitForSelector(item);
  await waitLocated(anna, `${item} .approval-reason`, new RegExp(`Regel „Vier Augen ${STAMP}“`), 'why it is held');
  await anna.waitForSelector(`${item} a[href="/cases/${r.case_id}"]`);
  await shot(anna, 'approvals.png');
  await anna.click(`${item} button.approve`);
  await waitText(anna, '#approvals-status', /Freigegeben/, 'the approval is confirmed');
  await anna.waitForSelector(item, { state: 'detached' });

  // Ben's page follows live: the reply left the approval and went to delivery.
  const after = `${out} .delivery:not(.d-pending_approval)`;
  await ben.waitForSelector(after, { timeout: 15_000 });
  const state = await ben.$eval(`${out} .delivery`, (el) => el.className);
  assert.match(state, /d-(queued|sent|delivered|failed)/, 'the approved reply is on its way');
  const approvals = await call('GET', '/api/v1/approvals');
  assert.ok(!approvals.body.items.some((a) => a.case_id === r.case_id), 'nothing of this case waits any more');
});

test('an agent corrects the intent the assistant recognised', STEP, async () => {
  const { caseId, messageId } = held;
  const c = await caseWhen(caseId, analysed(messageId), 'the message is analysed');
  const before = c.messages.find((m) => m.id === messageId).analysis.intent;
  const [want, label] = before === 'invoice_question' ? ['complaint', 'Beschwerde'] : ['invoice_question', 'Frage zur Rechnung'];
  await ben.goto(`${BASE}/cases/${caseId}`);
  await ben.waitForSelector('#live.on');
  const strip = `#timeline li.msg[data-id="${messageId}"] .assist`;
  await ben.click(`${strip} .intent-fix summary`); // "korrigieren" opens the choice
  await ben.selectOption(`${strip} select.intent-set`, want);
  await waitText(ben, '#composer-status', /Anliegen gespeichert/, 'the correction is confirmed');
  await waitText(ben, `${strip} .assist-intent`, new RegExp(`${label}\\s+vom Team gesetzt`), 'the strip shows the correction');
  await waitText(ben, '#meta .case-intent', new RegExp(`${label}\\s+\\(vom Team gesetzt\\)`), 'the case\'s intent follows');
  const after = await caseWhen(caseId, (x) => x.intent === want, 'the case\'s intent is stored');
  assert.equal(after.intent_source, 'agent');
});

test('the assistant\'s suggestion waits in an empty composer, marked, and is cleared with one click', STEP, async () => {
  const canned = await call('POST', '/api/v1/canned', {
    title: `Zählerstand ${STAMP}`, body: `Vielen Dank, wir haben Ihren Zählerstand übernommen (${STAMP}).`, language: 'de',
  });
  assert.equal(canned.status, 201, JSON.stringify(canned.body));
  const level = (l) => call('PUT', '/api/v1/assist/intents',
    { intents: [{ intent: 'meter_reading', level: l, canned_id: canned.body.id }] });
  assert.equal((await level('suggest')).status, 200);
  try {
    const r = await inbound(`zaehler.${STAMP}@kunde.example`, 'Zählerstand',
      'Hallo, mein Zählerstand für den Stromzähler beträgt heute 12345 kWh. Zählernummer 1ESY1160');
    const c = await caseWhen(r.case_id, analysed(r.message_id), 'the message is analysed');
    assert.equal(c.intent, 'meter_reading', 'the scenario needs a meter reading');
    await ben.goto(`${BASE}/cases/${r.case_id}`);
    await ben.waitForSelector('#suggestion', { state: 'visible' });
    await waitText(ben, '#suggestion', new RegExp(`Vorschlag des Assistenten: Zählerstand ${STAMP}`), 'the suggestion is named');
    assert.equal(await ben.inputValue('#composer-text'), canned.body.body, 'the canned response is in the composer');
    assert.ok(await ben.$eval('#composer-text', (t) => t.classList.contains('suggested')), 'marked as a suggestion');
    await ben.click('#suggestion-clear');
    await ben.waitForSelector('#suggestion', { state: 'hidden' });
    assert.equal(await ben.inputValue('#composer-text'), '', 'cleared');
  } finally {
    await level('off');
  }
});
