// Two agents in two real browsers (Debian's chromium, driven by playwright-core) working the
// same inbox: sign-in in German and English, live updates, presence and typing, the reply
// composer's collision control, internal notes and keyboard shortcuts. Started by `cargo test --test e2e`
// (tests/e2e.rs), which runs `kontor serve` and passes:
//   BASE          http://127.0.0.1:PORT of the running server
//   TOKEN         an admin API token (to post inbound messages as a channel would)
//   ANNA_EMAIL, ANNA_PASSWORD, BEN_EMAIL, BEN_PASSWORD   two staff users
//   SCREENSHOTS   directory for the screenshots (optional)
//   CHROMIUM      browser executable (default /usr/bin/chromium)
// Run by hand: node --test-reporter=spec tests/e2e/inbox.test.js (with the variables set).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { env, BASE, SCREENSHOTS, launch, shot, waitText } = require('./support');

const TOKEN = env('TOKEN');
const ANNA = { email: env('ANNA_EMAIL'), password: env('ANNA_PASSWORD'), name: 'Anna Admin' };
const BEN = { email: env('BEN_EMAIL'), password: env('BEN_PASSWORD'), name: 'Ben Berger' };

const STEP = { timeout: 30_000 };
const delays = [];
let browser;
let anna; // page of context A (German)
let ben; // page of context B (English)
let caseId; // the case both agents work on
let seq = 0;

// ---- helpers ---------------------------------------------------------------------------

/** Posts an inbound message the way a channel integration does; returns the API answer. */
async function inbound({ email, name, subject, text }) {
  seq += 1;
  const res = await fetch(`${BASE}/api/v1/inbound`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ from: { email }, name, subject, text, provider_message_id: `e2e-${Date.now()}-${seq}` }),
  });
  const body = await res.json().catch(() => null);
  assert.equal(res.status, 201, `POST /api/v1/inbound: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/**
 * Starts watching `page` for an element matching `selector` (optionally containing `text`);
 * returns a function resolving to the page's clock (Date.now()) when it first appeared.
 * The observer runs inside the page, so the measured time does not include polling.
 */
async function watch(page, selector, text) {
  const key = `w${++seq}`;
  await page.evaluate(({ key, selector, text }) => {
    window.__seen = window.__seen || {};
    const found = () => [...document.querySelectorAll(selector)].some((el) => !text || el.textContent.includes(text));
    if (found()) { window.__seen[key] = Date.now(); return; }
    const obs = new MutationObserver(() => {
      if (found()) { window.__seen[key] = Date.now(); obs.disconnect(); }
    });
    obs.observe(document.body, { childList: true, subtree: true, characterData: true });
  }, { key, selector, text: text || '' });
  return async (what, timeout = 10_000) => {
    const handle = await page
      .waitForFunction((key) => window.__seen && window.__seen[key], key, { timeout })
      .catch(() => null);
    assert.ok(handle, `${what}: "${selector}"${text ? ` containing "${text}"` : ''} did not appear within ${timeout} ms`);
    return handle.jsonValue();
  };
}


function report(what, ms) {
  delays.push([what, ms]);
  console.log(`# live-update delay: ${what}: ${ms} ms`);
}

async function signIn(page, user, words) {
  await page.goto(`${BASE}/`);
  await page.waitForSelector('input[name=email]');
  assert.equal((await page.textContent('form button[type=submit]')).trim(), words.signIn);
  await page.fill('input[name=email]', user.email);
  await page.fill('input[name=password]', user.password);
  await Promise.all([page.waitForURL(/\/inbox$/), page.click('form button[type=submit]')]);
  await page.waitForSelector('#live.on'); // the event stream is connected
}

/** Marks the document `page` shows now, so that `newDocument` can tell when it was replaced. */
async function markDocument(page) {
  await page.evaluate(() => { window.__oldDocument = true; });
}

/**
 * Waits until `page` shows a new document (one `markDocument` did not mark), fully loaded and
 * holding `selector`: the state the test needs, not a navigation event. A page may start its
 * reload more than once (after its own request and on a live event), which aborts the first
 * navigation; and `waitForFunction` keeps polling across the document change.
 */
async function newDocument(page, selector, what, timeout = 10_000) {
  const ok = await page
    .waitForFunction((selector) => !window.__oldDocument && document.readyState === 'complete'
      && !!document.querySelector(selector), selector, { timeout })
    .then(() => true, () => false);
  if (!ok) assert.fail(`${what}: no newly loaded page with ${selector} within ${timeout} ms (at ${page.url()})`);
}

const timelineTexts = (page) => page.$$eval('#timeline li.msg .msg-text', (els) => els.map((e) => e.textContent.trim()));


/** Writes into the composer like a person does (key by key), leaving the focus in it. */
async function typeDraft(page, text) {
  await page.click('#composer-text');
  await page.keyboard.type(text);
}

/** Leaves any input field, so that single-key shortcuts apply. */
async function leaveInputs(page) {
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
}

// ---- setup -----------------------------------------------------------------------------

before(async () => {
  browser = await launch();
  const viewport = { width: 1280, height: 800 };
  const a = await browser.newContext({ locale: 'de-DE', viewport });
  const b = await browser.newContext({ locale: 'en-US', viewport });
  anna = await a.newPage();
  ben = await b.newPage();
  for (const [who, p] of [['anna', anna], ['ben', ben]]) {
    p.setDefaultTimeout(10_000);
    p.on('pageerror', (e) => console.log(`# ${who}: page error: ${e.message}`));
    // 409 is the expected answer to a held (stale) reply; anything else worth a look is logged.
    p.on('response', (r) => {
      if (r.status() >= 400 && r.status() !== 409) console.log(`# ${who}: HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
    });
  }
});

after(async () => {
  if (delays.length) {
    console.log('# live-update delays (ms): ' + delays.map(([w, ms]) => `${w}=${ms}`).join(', '));
  }
  if (browser) await browser.close();
});

// ---- scenarios -------------------------------------------------------------------------

test('both agents sign in; German and English render', STEP, async () => {
  await signIn(anna, ANNA, { signIn: 'Anmelden' });
  await signIn(ben, BEN, { signIn: 'Sign in' });
  assert.equal(await anna.getAttribute('html', 'lang'), 'de');
  assert.equal(await ben.getAttribute('html', 'lang'), 'en');
  assert.match(await anna.textContent('nav.main-nav'), /Posteingang/);
  assert.match(await ben.textContent('nav.main-nav'), /Inbox/);
  assert.doesNotMatch(await ben.textContent('nav.main-nav'), /Posteingang/);
  assert.match(await anna.title(), /Posteingang/);
  assert.match(await ben.title(), /Inbox/);
  assert.equal((await anna.textContent('.me')).trim(), ANNA.name);
  assert.equal((await ben.textContent('.me')).trim(), BEN.name);
});

test('a message posted to the API appears live in both inboxes without reload', STEP, async () => {
  for (const p of [anna, ben]) await p.evaluate(() => { window.__marker = 'no reload'; });
  const subject = 'Lieferung beschädigt';
  const atAnna = await watch(anna, 'tr.case[data-id] .subj', subject);
  const atBen = await watch(ben, 'tr.case[data-id] .subj', subject);
  const t0 = Date.now();
  const r = await inbound({
    email: 'clara.kunde@example.com', name: 'Clara Kunde', subject,
    text: 'Guten Tag, das Paket kam mit einer zerbrochenen Vase an.',
  });
  caseId = r.case_id;
  report('inbound message → Anna\'s inbox', (await atAnna('inbox row at Anna')) - t0);
  report('inbound message → Ben\'s inbox', (await atBen('inbox row at Ben')) - t0);
  for (const p of [anna, ben]) {
    assert.equal(await p.evaluate(() => window.__marker), 'no reload', 'the inbox was reloaded instead of live-updated');
    assert.ok(await p.$(`tr.case[data-id="${caseId}"] a[href="/cases/${caseId}"]`), 'the row links to the case');
  }
});

test('both see each other in the case; B\'s reply appears live in A\'s timeline', STEP, async () => {
  for (const p of [anna, ben]) {
    await Promise.all([p.waitForURL(new RegExp(`/cases/${caseId}$`)), p.click(`tr.case[data-id="${caseId}"] .subj a`)]);
    await p.waitForSelector('#live.on');
    assert.ok((await timelineTexts(p)).some((t) => t.includes('zerbrochenen Vase')), 'the customer\'s message is shown');
  }
  // Presence: each sees that the other has the case open.
  await waitText(anna, '#presence', /Ben Berger sieht sich den Vorgang an/, 'Anna sees Ben in the case');
  await waitText(ben, '#presence', /Anna Admin is viewing this case/, 'Ben sees Anna in the case');
  assert.ok(await anna.isVisible('#presence'));
  await anna.evaluate(() => { window.__marker = 'no reload'; });
  const reply = 'Das tut uns leid, Frau Kunde! Wir schicken sofort Ersatz.';
  const atAnna = await watch(anna, '#timeline li.msg .msg-text', reply);
  await typeDraft(ben, reply);
  const t0 = Date.now();
  await ben.click('#send');
  await waitText(ben, '#composer-status', /^Sent\.$/, 'ben: composer status');
  report('Ben\'s reply → Anna\'s timeline', (await atAnna('Ben\'s reply at Anna')) - t0);
  assert.equal(await anna.evaluate(() => window.__marker), 'no reload');
  await ben.waitForSelector(`#timeline li.msg:has-text("${reply}")`);
  assert.equal(await ben.inputValue('#composer-text'), '', 'the composer is emptied after sending');
});

test('A types (B sees it); A\'s reply written before B\'s newer reply is held with the difference shown; send anyway', STEP, async () => {
  // Anna starts writing: her view is pinned from now on.
  const annaReply = 'Ich habe den Ersatz gerade als Express markiert.';
  await typeDraft(anna, annaReply);
  await waitText(ben, '#presence', /Anna Admin is typing/, 'Ben sees Anna typing');
  // Meanwhile Ben answers again.
  const benReply = 'Update: the replacement vase ships today with DHL.';
  const atAnna = await watch(anna, '#timeline li.msg .msg-text', benReply);
  await typeDraft(ben, benReply);
  await ben.keyboard.press('Control+Enter');
  await waitText(ben, '#composer-status', /^Sent\.$/, 'ben: composer status');
  await atAnna('Ben\'s second reply at Anna');
  assert.equal(await anna.inputValue('#composer-text'), annaReply, 'the live refresh must keep Anna\'s draft');

  await anna.click('#send');
  await anna.waitForSelector('#stale', { state: 'visible' });
  const items = await anna.$$eval('#stale-items li', (els) => els.map((e) => e.textContent));
  assert.ok(items.some((t) => t.includes(benReply)), `#stale-items lists Ben's reply: ${JSON.stringify(items)}`);
  assert.ok(items.some((t) => t.includes('Ben Berger antwortete') && t.includes('über api')),
    `#stale-items says who answered how: ${JSON.stringify(items)}`);
  assert.ok(!(await timelineTexts(anna)).includes(annaReply), 'the held reply was not sent');
  assert.equal(await anna.inputValue('#composer-text'), annaReply, 'the held draft is kept');
  await shot(anna, 'case-stale.png');

  const atBen = await watch(ben, '#timeline li.msg .msg-text', annaReply);
  await anna.click('#send-anyway');
  await anna.waitForSelector('#stale', { state: 'hidden' });
  await waitText(anna, '#composer-status', /^Gesendet\.$/, 'anna: composer status');
  await anna.waitForSelector(`#timeline li.msg .msg-text:has-text("${annaReply}")`);
  await atBen('Anna\'s forced reply at Ben');
  assert.equal(await anna.inputValue('#composer-text'), '');
});

test('a held reply can be discarded; the next one goes out', STEP, async () => {
  const draft = 'Entwurf, der nicht rausgehen soll.';
  await typeDraft(anna, draft);
  const customer = 'Danke! Können Sie die Rechnung auch per E-Mail schicken?';
  const atAnna = await watch(anna, '#timeline li.msg.in .msg-text', customer);
  const t0 = Date.now();
  const r = await inbound({ email: 'clara.kunde@example.com', name: 'Clara Kunde', subject: 'Re: Lieferung beschädigt', text: customer });
  report('customer message → Anna\'s open case', (await atAnna('customer\'s follow-up at Anna')) - t0);
  assert.equal(r.case_id, caseId, 'the follow-up joins the open case');

  await anna.keyboard.press('Control+Enter');
  await anna.waitForSelector('#stale', { state: 'visible' });
  const items = await anna.$$eval('#stale-items li', (els) => els.map((e) => e.textContent));
  assert.ok(items.some((t) => t.includes(customer) && t.includes('Clara Kunde schrieb')), `#stale-items: ${JSON.stringify(items)}`);
  await anna.click('#discard');
  await anna.waitForSelector('#stale', { state: 'hidden' });
  assert.equal(await anna.inputValue('#composer-text'), '', 'discard empties the composer');
  assert.ok(!(await timelineTexts(anna)).includes(draft), 'the discarded draft was not sent');

  const next = 'Gern, die Rechnung ist unterwegs.';
  await typeDraft(anna, next);
  await anna.keyboard.press('Control+Enter');
  await waitText(anna, '#composer-status', /^Gesendet\.$/, 'anna: composer status');
  assert.ok(await anna.isHidden('#stale'), 'a reply written after seeing everything is not held');
  await anna.waitForSelector(`#timeline li.msg .msg-text:has-text("${next}")`);
});

test('an internal note (n, Ctrl+Enter) shows as a note for both', STEP, async () => {
  const note = 'Internal: customer is a key account, waive the shipping fee.';
  const atAnna = await watch(anna, '#timeline li.msg.note .msg-text', note);
  await leaveInputs(ben);
  await ben.keyboard.press('n');
  assert.equal(await ben.evaluate(() => document.activeElement.id), 'composer-text', '`n` focuses the composer');
  assert.ok(await ben.$('.tabs button[data-mode=note].on'), '`n` switches to note mode');
  assert.equal((await ben.textContent('#send')).trim(), 'Save note');
  await ben.keyboard.type(note);
  const t0 = Date.now();
  await ben.keyboard.press('Control+Enter');
  await waitText(ben, '#composer-status', /^Note saved\.$/, 'ben: composer status');
  await ben.waitForSelector(`#timeline li.msg.note .msg-text:has-text("${note}")`);
  report('Ben\'s note → Anna\'s timeline', (await atAnna('Ben\'s note at Anna')) - t0);
  assert.match(await anna.textContent(`#timeline li.msg.note:has-text("${note}") .badge`), /Interne Notiz/);
  await leaveInputs(ben);
  await ben.keyboard.press('r');
  assert.ok(await ben.$('.tabs button[data-mode=reply].on'), '`r` switches back to reply mode');
  await shot(anna, 'case.png');
});

test('a phone call recorded with c shows for both, with who recorded it and how long it took', STEP, async () => {
  const summary = 'Called back: the replacement vase ships on Monday.';
  const atAnna = await watch(anna, '#timeline li.msg .msg-text', summary);
  await leaveInputs(ben);
  await ben.keyboard.press('c');
  assert.ok(await ben.$('.tabs button[data-mode=contact].on'), '`c` switches to contact mode');
  assert.ok(await ben.isVisible('#contact-fields'), 'the contact fields are shown');
  assert.equal((await ben.textContent('#send')).trim(), 'Save contact');
  await ben.selectOption('#contact-channel', 'phone');
  await ben.selectOption('#contact-direction', 'out');
  await ben.fill('#contact-minutes', '3');
  await typeDraft(ben, summary);
  const t0 = Date.now();
  await ben.keyboard.press('Control+Enter');
  await waitText(ben, '#composer-status', /^Contact saved\.$/, 'ben: composer status');
  report('Ben\'s recorded call → Anna\'s timeline', (await atAnna('Ben\'s call at Anna')) - t0);
  const item = `#timeline li.msg:has-text("${summary}")`;
  await anna.waitForSelector(`${item} .recorded`);
  assert.match(await anna.textContent(`${item} .recorded`), /erfasst von Ben Berger/);
  assert.match(await anna.textContent(`${item} .duration`), /3:00 Min\./);
  assert.match(await anna.textContent(`${item} .chan`), /Telefon/i);
  await leaveInputs(ben);
  await ben.keyboard.press('r');
  assert.ok(await ben.isHidden('#contact-fields'), 'reply mode hides the contact fields');
});

test('keyboard: ? help, / search, j/k and Enter in the inbox; e resolves, a assigns', STEP, async () => {
  // A second case so that j/k have somewhere to go.
  const other = await inbound({ email: 'max@example.org', name: 'Max Muster', subject: 'Frage zur Rechnung 4711', text: 'Wo finde ich die Rechnung?' });
  await ben.goto(`${BASE}/inbox`);
  await ben.waitForSelector('#live.on');
  await ben.waitForSelector(`tr.case[data-id="${other.case_id}"]`);

  await ben.keyboard.press('?');
  assert.equal(await ben.isVisible('#help'), true, '`?` shows the help');
  assert.match(await ben.textContent('#help'), /Keyboard shortcuts/);
  await ben.keyboard.press('?');
  assert.equal(await ben.isVisible('#help'), false, '`?` again hides it');

  await ben.keyboard.press('/');
  assert.equal(await ben.evaluate(() => document.activeElement.id), 'search', '`/` focuses the search');
  await ben.keyboard.type('Rechnung');
  await Promise.all([ben.waitForURL(/\/inbox\?q=Rechnung/), ben.keyboard.press('Enter')]);
  await ben.waitForSelector('section.results');
  assert.ok(await ben.$(`section.results a[href="/cases/${other.case_id}"]`), 'search finds the other case');
  await ben.goto(`${BASE}/inbox`);
  await ben.waitForSelector('#live.on');

  const ids = await ben.$$eval('tr.case[data-id]', (els) => els.map((e) => e.dataset.id));
  assert.ok(ids.length >= 2, `two cases listed: ${ids}`);
  await ben.keyboard.press('j');
  assert.equal(await ben.getAttribute('tr.case.selected', 'data-id'), ids[0], '`j` selects the first row');
  await ben.keyboard.press('j');
  assert.equal(await ben.getAttribute('tr.case.selected', 'data-id'), ids[1], '`j` again selects the second row');
  await ben.keyboard.press('k');
  assert.equal(await ben.getAttribute('tr.case.selected', 'data-id'), ids[0], '`k` goes back up');
  const target = ids[0];
  await Promise.all([ben.waitForURL(new RegExp(`/cases/${target}$`)), ben.keyboard.press('Enter')]);
  await ben.waitForSelector('#live.on');

  // Anna keeps the first case open and sees what Ben changes there.
  await anna.goto(`${BASE}/cases/${target}`);
  await anna.waitForSelector('#live.on');
  await leaveInputs(anna);
  await ben.keyboard.press('e');
  await ben.waitForFunction(() => document.querySelector('select[data-field=status]').value === 'resolved');
  const t0 = Date.now();
  await anna.waitForFunction(() => document.querySelector('select[data-field=status]').value === 'resolved');
  console.log(`# status change reached Anna within ${Date.now() - t0} ms after Ben saw it`);
  await ben.keyboard.press('a');
  await ben.waitForFunction(
    (name) => { const s = document.querySelector('select[data-field=assignee_id]'); return s.selectedOptions[0].textContent === name; },
    BEN.name);
  await anna.waitForFunction(
    (name) => { const s = document.querySelector('select[data-field=assignee_id]'); return s.selectedOptions[0].textContent === name; },
    BEN.name);
});

test('the same request on two channels is flagged on the case and merged with history kept', STEP, async () => {
  const call = async (method, path, body) => {
    const res = await fetch(BASE + path, {
      method, headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  };
  const first = await call('POST', '/api/v1/inbound', {
    from: { email: 'dora.doppel@example.de' }, name: 'Dora Doppel', subject: 'Rechnung doppelt abgebucht',
    text: 'Meine Rechnung vom März wurde doppelt abgebucht. Bitte erstatten Sie den Betrag.',
  });
  const second = await call('POST', '/api/v1/inbound', {
    from: { phone: '+49 151 22223333' }, name: 'Dora D.',
    text: 'Hallo, die Rechnung März wurde zweimal abgebucht, bitte Betrag erstatten.',
  });
  assert.equal(first.status, 201);
  assert.equal(second.status, 201);
  // The phone number turns out to be Dora's: Anna merges the customers from the case sidebar,
  // so both cases are hers.
  await anna.goto(`${BASE}/cases/${first.body.case_id}`);
  assert.equal(await anna.$('#related'), null, 'no banner while the requests belong to two customers');
  await anna.click('.customer-merge summary');
  await anna.fill('#customer-search', '0151 22223333');
  await anna.waitForSelector('#customer-hits button');
  anna.once('dialog', (d) => d.accept());
  // The page reloads after the merge: wait for the reloaded page, not for a navigation event.
  await markDocument(anna);
  await anna.click('#customer-hits button');
  await newDocument(anna, '.identities', 'the case page after the customer merge');
  await waitText(anna, '.identities', /\+4915122223333/, 'the phone number is now Dora\'s');
  anna.once('dialog', (d) => d.accept());
  await anna.waitForSelector(`#related a[href="/cases/${second.body.case_id}"]`); // the banner links the other case
  await anna.waitForSelector('#live.on');
  await ben.goto(`${BASE}/cases/${second.body.case_id}`);
  await ben.waitForSelector(`#related a[href="/cases/${first.body.case_id}"]`); // the other case shows the banner too
  await ben.waitForSelector('#live.on');
  // Merging reloads Anna's page (her request's answer and the live event may each start a
  // reload) and Ben's, who has the merged case open (live event). The reloaded pages load
  // slowly here, so that Anna's two reloads overlap often (as they did on a loaded machine,
  // where waiting for a navigation event failed with net::ERR_ABORTED), not only by chance.
  const slowCasePages = async (route) => {
    if (route.request().isNavigationRequest()) await new Promise((f) => setTimeout(f, 1000));
    await route.continue();
  };
  for (const p of [anna, ben]) await p.route(/\/cases\/\d+$/, slowCasePages);
  await markDocument(anna);
  await markDocument(ben);
  await anna.click(`#related button.merge[data-source="${second.body.case_id}"]`);
  await newDocument(anna, '.history', 'the case page after the case merge');
  await waitText(anna, '.history', new RegExp(`#${second.body.case_id}`), 'the merge is in the case history');
  const texts = await timelineTexts(anna);
  assert.ok(texts.some((t) => t.includes('zweimal abgebucht')), 'the other case\'s message moved here');
  assert.ok(texts.some((t) => t.includes('doppelt abgebucht')));
  assert.equal(await anna.$('#related'), null, 'no banner after the merge');
  await newDocument(ben, '.notice.merged', 'Ben\'s open page of the merged case reloads by itself');
  for (const p of [anna, ben]) await p.unroute(/\/cases\/\d+$/, slowCasePages);
  await waitText(ben, '.notice.merged', new RegExp(`#${first.body.case_id}`), 'the old case points to the new one');
  assert.ok(await ben.isHidden('#composer'), 'no replies on a merged case');
});

test('screenshots of the inbox', STEP, async () => {
  await inbound({ email: 'jonas@example.net', name: 'Jonas Becker', subject: 'Rückgabe Bestellung 20931', text: 'Ich möchte die Jacke zurückgeben, sie ist zu klein.' });
  await anna.goto(`${BASE}/inbox`);
  await anna.waitForSelector('#live.on');
  await anna.waitForSelector('tr.case[data-id]');
  await anna.keyboard.press('j');
  await shot(anna, 'inbox.png');
  if (SCREENSHOTS) {
    for (const f of ['inbox.png', 'case.png', 'case-stale.png']) {
      assert.ok(fs.statSync(path.join(SCREENSHOTS, f)).size > 1000, `${f} written`);
    }
  }
});
