// The e-mail channel in a real browser (Debian's chromium, driven by playwright-core): a mail
// delivered to Kontor's SMTP listener shows as an e-mail case with sender, subject, attachment,
// auto-reply badge and a download of its source; the composer answers by e-mail with a
// `Re:` subject and CC (a CC that is no address is refused in the page's language); the reply
// reaches the relay with its CC; the settings page shows the channel's health. Started by
// `cargo test --test e2e` (tests/e2e.rs) after inbox.test.js, which runs `kontor serve` with
// the e-mail channel and passes:
//   BASE          http://127.0.0.1:PORT of the running server
//   ANNA_EMAIL, ANNA_PASSWORD   an admin
//   SMTP_PORT     Kontor's SMTP listener on 127.0.0.1
//   RELAY_PORT    where Kontor sends replies: this file runs the relay there
//   MAIL_DOMAIN   the domain Kontor takes mail for
//   SCREENSHOTS   directory for the screenshots (optional)
//   CHROMIUM      browser executable (default /usr/bin/chromium)
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const { env, BASE, launch, shot, waitText } = require('./support');

const ANNA = { email: env('ANNA_EMAIL'), password: env('ANNA_PASSWORD'), name: 'Anna Admin' };
const SMTP_PORT = Number(env('SMTP_PORT'));
const RELAY_PORT = Number(env('RELAY_PORT'));
const DOMAIN = env('MAIL_DOMAIN');

const STEP = { timeout: 30_000 };
const SUBJECT = 'Lieferung fehlt – Bestellung 4711';
const SENDER = 'Jana Müller <jana.mueller@kunde.example>';
let browser;
let anna; // page of an admin, in German
let relay; // the relay Kontor sends replies to
let caseId;

// ---- mail ------------------------------------------------------------------------------

/** A line-based SMTP conversation over `socket`: `reply()` resolves to the next full reply. */
function smtpReplies(socket) {
  let buffer = '';
  let waiting = null;
  const replies = [];
  const take = () => {
    // A reply ends with a line `NNN text` (a `NNN-text` line continues it).
    const m = buffer.match(/^((?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n)/);
    if (!m) return;
    buffer = buffer.slice(m[1].length);
    replies.push(m[1]);
    if (waiting) { const w = waiting; waiting = null; w(replies.shift()); }
    take();
  };
  socket.on('data', (chunk) => { buffer += chunk; take(); });
  return () => new Promise((resolve, reject) => {
    if (replies.length) { resolve(replies.shift()); return; }
    waiting = resolve;
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`connection closed; unanswered: ${JSON.stringify(buffer)}`)));
  });
}

/** Connects to Kontor's SMTP listener, trying again while it is not yet listening. */
async function connectSmtp(timeout = 10_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const socket = net.connect(SMTP_PORT, '127.0.0.1');
    socket.setEncoding('utf8');
    const ok = await new Promise((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    if (ok) return socket;
    socket.destroy();
    if (Date.now() > deadline) throw new Error(`Kontor's SMTP listener on port ${SMTP_PORT} did not accept a connection`);
    await new Promise((r) => setTimeout(r, 100)); // waiting for the listener to bind, not for time
  }
}

/** Delivers `message` (CRLF lines) to Kontor over SMTP, as another mail server does. */
async function deliver(from, message) {
  const socket = await connectSmtp();
  const reply = smtpReplies(socket);
  const expect = async (code, what) => {
    const r = await reply();
    assert.ok(r.startsWith(String(code)), `SMTP ${what}: expected ${code}, got ${JSON.stringify(r)}`);
  };
  await expect(220, 'greeting');
  socket.write('EHLO mx.kunde.example\r\n');
  await expect(250, 'EHLO');
  socket.write(`MAIL FROM:<${from}>\r\n`);
  await expect(250, 'MAIL FROM');
  socket.write(`RCPT TO:<support@${DOMAIN}>\r\n`);
  await expect(250, 'RCPT TO');
  socket.write('DATA\r\n');
  await expect(354, 'DATA');
  socket.write(message.replace(/^\./gm, '..') + '\r\n.\r\n');
  await expect(250, 'end of data (250 only after the commit)');
  socket.write('QUIT\r\n');
  await reply().catch(() => null);
  socket.end();
}

/** A relay that takes every mail (no TLS, no authentication) and keeps it for the test. */
function startRelay(port) {
  const mails = [];
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.setEncoding('utf8');
    let buffer = '';
    let inData = false;
    let mail = { from: '', rcpt: [], data: '' };
    socket.write('220 relay.e2e ESMTP\r\n');
    socket.on('data', (chunk) => {
      buffer += chunk;
      for (;;) {
        if (inData) {
          const end = buffer.indexOf('\r\n.\r\n');
          if (end < 0) return;
          mail.data = buffer.slice(0, end + 2).replace(/^\.\./gm, '.');
          buffer = buffer.slice(end + 5);
          inData = false;
          mails.push(mail);
          mail = { from: '', rcpt: [], data: '' };
          socket.write('250 2.0.0 queued\r\n');
          continue;
        }
        const nl = buffer.indexOf('\r\n');
        if (nl < 0) return;
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        const verb = line.slice(0, 4).toUpperCase();
        const address = () => ((line.match(/<([^>]*)>/) || [])[1] || '').toLowerCase();
        if (verb === 'EHLO') socket.write('250-relay.e2e\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n');
        else if (verb === 'HELO') socket.write('250 relay.e2e\r\n');
        else if (verb === 'MAIL') { mail.from = address(); socket.write('250 2.1.0 ok\r\n'); }
        else if (verb === 'RCPT') { mail.rcpt.push(address()); socket.write('250 2.1.5 ok\r\n'); }
        else if (verb === 'DATA') { inData = true; socket.write('354 go ahead\r\n'); }
        else if (verb === 'QUIT') { socket.end('221 2.0.0 bye\r\n'); return; }
        else if (verb === 'RSET' || verb === 'NOOP') socket.write('250 2.0.0 ok\r\n');
        else socket.write('502 5.5.2 not implemented\r\n');
      }
    });
    socket.on('error', () => {});
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve({
      mails,
      close: () => { server.close(); for (const s of sockets) s.destroy(); },
    }));
  });
}

// ---- page helpers ----------------------------------------------------------------------


const text = (page, selector) => page.$eval(selector, (el) => el.textContent.trim());


// ---- setup -----------------------------------------------------------------------------

before(async () => {
  relay = await startRelay(RELAY_PORT);
  browser = await launch();
  const context = await browser.newContext({ locale: 'de-DE', viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  anna = await context.newPage();
  anna.setDefaultTimeout(10_000);
  anna.on('pageerror', (e) => console.log(`# anna: page error: ${e.message}`));
  // 422 is the expected answer to the refused CC; anything else worth a look is logged.
  anna.on('response', (r) => {
    if (r.status() >= 400 && r.status() !== 422) console.log(`# anna: HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
});

after(async () => {
  if (browser) await browser.close();
  if (relay) relay.close();
});

// ---- scenarios -------------------------------------------------------------------------

test('a mail to the SMTP listener becomes an e-mail case showing sender, subject, files, auto-reply and source', STEP, async () => {
  await deliver('jana.mueller@kunde.example', [
    'From: =?utf-8?Q?Jana_M=C3=BCller?= <jana.mueller@kunde.example>',
    `To: Kundenservice <support@${DOMAIN}>`,
    `Subject: =?utf-8?Q?Lieferung_fehlt_=E2=80=93_Bestellung_4711?=`,
    'Message-ID: <e2e-4711@kunde.example>',
    'Date: Mon, 4 May 2026 09:30:00 +0200',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="grenze"',
    '',
    '--grenze',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    'Guten Tag, die Lieferung 4711 fehlt noch. Gr=C3=BC=C3=9Fe aus K=C3=B6ln',
    '--grenze',
    'Content-Type: text/plain; charset=utf-8; name="lieferschein.txt"',
    'Content-Disposition: attachment; filename="lieferschein.txt"',
    '',
    'Lieferschein 4711: 1 Vase',
    '--grenze--',
    '',
  ].join('\r\n'));
  await deliver('jana.mueller@kunde.example', [
    'From: =?utf-8?Q?Jana_M=C3=BCller?= <jana.mueller@kunde.example>',
    `To: support@${DOMAIN}`,
    'Subject: Abwesenheitsnotiz',
    'Message-ID: <e2e-4711-ooo@kunde.example>',
    'Auto-Submitted: auto-replied',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Ich bin bis Montag nicht im Buero.',
    '',
  ].join('\r\n'));

  await anna.goto(`${BASE}/`);
  await anna.fill('input[name=email]', ANNA.email);
  await anna.fill('input[name=password]', ANNA.password);
  await Promise.all([anna.waitForURL(/\/inbox$/), anna.click('form button[type=submit]')]);
  const row = `tr.case:has-text("${SUBJECT}")`;
  await anna.waitForSelector(row);
  caseId = Number(await anna.getAttribute(row, 'data-id'));
  await Promise.all([anna.waitForURL(new RegExp(`/cases/${caseId}$`)), anna.click(`${row} .subj a`)]);
  await anna.waitForSelector('#live.on');

  const mail = '#timeline li.msg.mail.in:not(.auto)';
  const ooo = '#timeline li.msg.mail.in.auto';
  await anna.waitForSelector(ooo);
  assert.equal(await text(anna, `${mail} .mail-from dd`), SENDER);
  assert.equal(await text(anna, `${mail} .mail-subject dd`), SUBJECT);
  assert.match(await text(anna, `${mail} .msg-text`), /Grüße aus Köln/);
  assert.equal(await text(anna, `${mail} .attachments a`), 'lieferschein.txt');
  assert.equal(await anna.$(`${mail} .badge.auto-reply`), null, 'the customer\'s own mail is no auto-reply');
  assert.equal(await text(anna, `${ooo} .badge.auto-reply`), 'Automatische Antwort');
  assert.equal(await text(anna, `${ooo} .mail-subject dd`), 'Abwesenheitsnotiz');

  // The source downloads in the browser (the session is enough) as it came.
  assert.equal(await text(anna, `${mail} a.raw-source`), 'Quelltext');
  const [download] = await Promise.all([anna.waitForEvent('download'), anna.click(`${mail} a.raw-source`)]);
  assert.match(download.suggestedFilename(), /^message-\d+\.eml$/);
  const source = fs.readFileSync(await download.path(), 'utf8');
  assert.match(source, /Message-ID: <e2e-4711@kunde\.example>/);
  assert.match(source, /Lieferschein 4711/);
});

test('the composer answers by e-mail with Re: subject and CC; a CC that is no address is refused in German', STEP, async () => {
  assert.ok(await anna.isVisible('#mail-fields'), 'an e-mail case shows subject and CC');
  assert.equal(await anna.inputValue('#reply-channel'), 'email', 'the reply goes out by e-mail');
  assert.equal(await anna.inputValue('#reply-subject'), `Re: ${SUBJECT}`);
  // Another channel hides the e-mail fields; back to e-mail shows them.
  await anna.selectOption('#reply-channel', 'api');
  assert.ok(await anna.isHidden('#mail-fields'));
  await anna.selectOption('#reply-channel', 'email');
  assert.ok(await anna.isVisible('#mail-fields'));

  const reply = 'Guten Tag Frau Müller, die Lieferung 4711 ist unterwegs.';
  await anna.fill('#reply-cc', 'buchhaltung@kunde.example, keine Adresse');
  await anna.click('#composer-text');
  await anna.keyboard.type(reply);
  await anna.click('#send');
  await waitText(anna, '#composer-status', /„keine Adresse“ ist keine gültige E-Mail-Adresse/, 'the refused CC, in German');
  assert.equal(await anna.getAttribute('#reply-cc', 'aria-invalid'), 'true');
  assert.equal(await anna.evaluate(() => document.activeElement.id), 'reply-cc', 'the CC field has the focus');
  assert.equal(await anna.inputValue('#composer-text'), reply, 'the draft is kept');
  assert.equal(await anna.$('#timeline li.msg.out'), null, 'nothing was sent');

  await anna.fill('#reply-cc', 'Buchhaltung@Kunde.Example; chef@kunde.example');
  assert.equal(await anna.getAttribute('#reply-cc', 'aria-invalid'), null, 'typing clears the mark');
  // A file goes with the reply.
  await anna.setInputFiles('#reply-files', {
    name: 'Lieferschein 4711.pdf',
    mimeType: 'application/pdf',
    buffer: Buffer.from('%PDF-1.4\nLieferschein 4711\n%%EOF\n'),
  });
  await anna.click('#send');
  await waitText(anna, '#composer-status', /^Gesendet\.$/, 'composer status');
  const out = `#timeline li.msg.mail.out:has-text("${reply}")`;
  await anna.waitForSelector(out);
  assert.equal(await text(anna, `${out} .mail-cc dd`), 'buchhaltung@kunde.example, chef@kunde.example');
  assert.equal(await text(anna, `${out} .mail-to dd`), SENDER);
  assert.equal(await text(anna, `${out} .mail-subject dd`), `Re: ${SUBJECT}`);
  assert.equal(await anna.inputValue('#reply-cc'), '', 'the CC field is emptied after sending');
  assert.equal(await anna.evaluate(() => document.querySelector('#reply-files').files.length), 0, 'the files are cleared');
  assert.match(await text(anna, `${out} .attachments`), /Lieferschein 4711\.pdf/);

  // The relay gets the reply, for the customer and both CC addresses, threaded.
  await waitFor(() => relay.mails.length >= 1, 'the reply at the relay', 15_000);
  const sent = relay.mails[0];
  assert.deepEqual([...sent.rcpt].sort(), ['buchhaltung@kunde.example', 'chef@kunde.example', 'jana.mueller@kunde.example']);
  assert.match(sent.data, /^Cc:.*buchhaltung@kunde\.example/im);
  assert.match(sent.data, /^In-Reply-To: <e2e-4711(-ooo)?@kunde\.example>/im);
  assert.match(sent.data, /die Lieferung 4711 ist unterwegs/);
  // …with the file, as a MIME part named as it was chosen.
  assert.match(sent.data, /^Content-Type: application\/pdf/im);
  assert.match(sent.data, /filename\*?=.*Lieferschein/i);
  assert.ok(sent.data.includes(Buffer.from('%PDF-1.4\nLieferschein 4711\n%%EOF\n').toString('base64').slice(0, 24)), 'the file bytes');
  // …and the timeline says it was sent.
  await anna.waitForSelector(`${out} .delivery.d-sent`, { timeout: 15_000 });
  await shot(anna, 'case-email.png');
});

test('the settings page shows the e-mail channel: listener running, relay, last mail in and out', STEP, async () => {
  await anna.goto(`${BASE}/settings`);
  const section = '#email-settings';
  await anna.waitForSelector(section);
  assert.equal(await anna.$('#email-not-configured'), null);
  assert.equal(await text(anna, `${section} tr[data-listener="email.smtp"] .listener`), 'läuft');
  assert.match(await text(anna, `${section} tr[data-listener="email.smtp"]`), new RegExp(`127\\.0\\.0\\.1:${SMTP_PORT}`));
  assert.match(await text(anna, `${section} tr[data-listener="email.smtp"]`), new RegExp(DOMAIN.replace(/\./g, '\\.')));
  assert.match(await text(anna, `${section} .relay`), new RegExp(`^smtp://127\\.0\\.0\\.1:${RELAY_PORT}\\b`));
  assert.doesNotMatch(await text(anna, `${section} .last-inbound`), /noch nie/);
  assert.match(await text(anna, `${section} .last-outbound`), /gesendet/);
  await shot(anna, 'settings-email.png');
});

/** Waits until `check()` holds (polling a state outside the page), failing after `timeout`. */
async function waitFor(check, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
