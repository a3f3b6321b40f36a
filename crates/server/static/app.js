// Kontor staff pages: live updates from the event stream, the reply composer with
// collision control, and keyboard shortcuts. Plain JavaScript, no build step.
(() => {
  'use strict';
  const body = document.body;
  const page = body.dataset.page;
  const csrf = body.dataset.csrf;
  const userId = Number(body.dataset.userId || 0);
  const de = document.documentElement.lang === 'de';
  const $ = (sel, el = document) => el.querySelector(sel);
  const $$ = (sel, el = document) => [...el.querySelectorAll(sel)];

  const debounce = (fn, ms) => {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  };

  async function api(method, url, data) {
    const res = await fetch(url, {
      method,
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: data === undefined ? undefined : JSON.stringify(data),
    });
    let json = null;
    try { json = await res.json(); } catch (_) { /* empty body */ }
    return { status: res.status, body: json };
  }

  // Replaces an element's content with its server-rendered fragment (data-src).
  async function refresh(el, query = '') {
    const res = await fetch(el.dataset.src + query, { credentials: 'same-origin' });
    if (res.redirected || res.status === 401) { location.href = '/'; return false; }
    if (!res.ok) return false;
    el.innerHTML = await res.text();
    return true;
  }

  // The live event stream; EventSource reconnects by itself and resumes with Last-Event-ID.
  // A refused stream (429: too many open for this user, e.g. tabs whose connections died)
  // ends the EventSource for good; then open a new one after a while. `after`: the event
  // the page was rendered at (events while it loaded are then not missed); without it the
  // stream starts now.
  function live(onEvent, onPresence, after) {
    const indicator = $('#live');
    if (!window.EventSource || !indicator) return;
    indicator.hidden = false; // only pages that follow the stream show its state
    let last = after !== undefined && after !== '' && Number(after) >= 0 ? Number(after) : null;
    const connect = () => {
      const stream = new EventSource(last === null ? '/api/v1/events/stream' : `/api/v1/events/stream?after=${last}`);
      if (onPresence) {
        stream.addEventListener('presence', (e) => {
          try { onPresence(JSON.parse(e.data)); } catch (_) { /* ignore malformed */ }
        });
      }
      stream.onopen = () => { indicator.textContent = indicator.dataset.on; indicator.classList.add('on'); };
      stream.onerror = () => {
        indicator.textContent = indicator.dataset.off; indicator.classList.remove('on');
        if (stream.readyState === EventSource.CLOSED) setTimeout(connect, 15000);
      };
      stream.onmessage = (e) => {
        if (e.lastEventId && (last === null || Number(e.lastEventId) > last)) last = Number(e.lastEventId);
        let ev;
        try { ev = JSON.parse(e.data); } catch (_) { return; }
        onEvent(ev);
      };
    };
    connect();
  }

  const typing = (el) => el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || el.isContentEditable);

  // ---- Inbox --------------------------------------------------------------------------
  if (page === 'inbox') {
    const rows = $('#rows');
    let selected = null;
    const select = (id) => {
      $$('tr.case', rows).forEach((tr) => tr.classList.toggle('selected', tr.dataset.id === id));
      selected = id;
      const tr = rows.querySelector(`tr.case[data-id="${id}"]`);
      if (tr) tr.scrollIntoView({ block: 'nearest' });
    };
    const reload = debounce(async () => {
      if (await refresh(rows, location.search) && selected) select(selected);
    }, 100);
    // The approvals badge: replies waiting for a second person.
    const count = $('#approvals-count');
    const recount = debounce(async () => {
      const res = await fetch('/approvals/count', { credentials: 'same-origin' }).catch(() => null);
      if (!res || !res.ok || !count) return;
      const n = Number(await res.text());
      count.textContent = String(n);
      count.hidden = !(n > 0);
    }, 150);
    live((ev) => {
      if (/^(message|case|note|customer)\./.test(ev.type)) reload();
      if (/^approval\./.test(ev.type)) recount();
    });
    $$('select[data-autosubmit]').forEach((s) => s.addEventListener('change', () => s.form.submit()));
    document.addEventListener('keydown', (e) => {
      if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
      const list = $$('tr.case', rows);
      const i = list.findIndex((tr) => tr.dataset.id === selected);
      if (e.key === 'j' && list.length) { select(list[Math.min(i + 1, list.length - 1)].dataset.id); e.preventDefault(); }
      if (e.key === 'k' && list.length) { select(list[Math.max(i - 1, 0)].dataset.id); e.preventDefault(); }
      if (e.key === 'Enter' && i >= 0) { location.href = list[i].dataset.href; }
      if (e.key === 'f') { e.preventDefault(); location.href = '/approvals'; }
    });
  }

  // ---- Approvals: replies held for a second person's approval ---------------------------
  if (page === 'approvals') {
    const list = $('#approvals');
    const note = $('#approvals-status');
    const tell = (msg, bad) => { note.textContent = msg; note.classList.toggle('error', !!bad); };
    const reload = debounce(() => refresh(list), 100);
    live((ev) => { if (/^(approval\.|message\.)/.test(ev.type)) reload(); });
    list.addEventListener('click', async (e) => {
      const b = e.target.closest('button.approve, button.reject');
      if (!b) return;
      const form = b.closest('form.approval-decide');
      const comment = form.elements.comment.value.trim();
      const reject = b.classList.contains('reject');
      if (reject && !comment) {
        tell(list.dataset.needsComment, true);
        form.elements.comment.setAttribute('aria-invalid', 'true');
        form.elements.comment.focus();
        return;
      }
      $$('button', form).forEach((x) => { x.disabled = true; });
      let r = null;
      try {
        r = await api('POST', `/api/v1/approvals/${form.dataset.id}/${reject ? 'reject' : 'approve'}`, comment ? { comment } : {});
      } catch (_) { r = null; }
      if (r && r.status === 200) {
        tell(reject ? list.dataset.rejected : list.dataset.approved);
        await refresh(list);
      } else {
        $$('button', form).forEach((x) => { x.disabled = false; });
        tell((r && r.body && r.body.error && r.body.error.message) || 'Error', true);
      }
    });
    document.addEventListener('keydown', (e) => {
      if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === 'i') { e.preventDefault(); location.href = '/inbox'; }
    });
  }

  // ---- Case view ----------------------------------------------------------------------
  if (page === 'case') {
    const caseEl = $('#case');
    const caseId = Number(caseEl.dataset.caseId);
    const timeline = $('#timeline');
    const meta = $('#meta');
    const text = $('#composer-text');
    const status = $('#composer-status');
    const staleBox = $('#stale');
    let users = {};
    try { JSON.parse($('#users-json').textContent).forEach((u) => { users[u.id] = u.name; }); } catch (_) { users = {}; }
    let mode = 'reply';
    // The view a reply is written against: fixed while a draft exists, so that anything
    // arriving meanwhile makes the server hold the send and show what changed.
    let basedOn = Number(caseEl.dataset.lastEventId);
    let latestSeen = basedOn;

    const readMarker = () => {
      const m = timeline.querySelector('[data-last-event-id]');
      if (m) latestSeen = Math.max(latestSeen, Number(m.dataset.lastEventId));
      if (!text.value.trim()) basedOn = latestSeen;
    };
    const reloadTimeline = debounce(async () => {
      const nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
      if (await refresh(timeline)) {
        readMarker();
        if (nearBottom) window.scrollTo(0, document.body.scrollHeight);
      }
    }, 80);
    const reloadMeta = debounce(async () => {
      if (meta.contains(document.activeElement)) return; // do not pull a select from under the user
      await refresh(meta);
    }, 80);
    // Presence: who else views or types in this case (ephemeral, never stored).
    const others = new Map(); // user id -> { name, state, at }
    const presenceEl = $('#presence');
    const renderPresence = () => {
      const now = Date.now();
      for (const [id, p] of others) if (p.state === 'left' || now - p.at > 25000) others.delete(id);
      const parts = [...others.values()].map((p) => p.state === 'typing'
        ? (de ? `✎ ${p.name} schreibt gerade …` : `✎ ${p.name} is typing …`)
        : (de ? `◉ ${p.name} sieht sich den Vorgang an` : `◉ ${p.name} is viewing this case`));
      presenceEl.textContent = parts.join(' · ');
      presenceEl.hidden = parts.length === 0;
    };
    const announce = (state) => fetch(`/api/v1/cases/${caseId}/presence`, {
      method: 'POST', credentials: 'same-origin', keepalive: state === 'left',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ state }),
    }).catch(() => {});
    let typingUntil = 0;
    let lastTypingSent = 0;
    text.addEventListener('input', () => {
      const now = Date.now();
      typingUntil = now + 4000;
      if (now - lastTypingSent > 2500) { lastTypingSent = now; announce('typing'); }
    });
    setInterval(() => {
      const now = Date.now();
      if (typingUntil && now > typingUntil) { typingUntil = 0; lastTypingSent = 0; announce('viewing'); }
      renderPresence();
    }, 1000);
    setInterval(() => announce(typingUntil ? 'typing' : 'viewing'), 10000);
    window.addEventListener('pagehide', () => announce('left'));

    const sidebar = $('#sidebar');
    const relatedBox = $('#related-box');
    const reloadSidebar = debounce(async () => {
      const search = $('#customer-search');
      // Do not pull the customer search away from an agent who is using it.
      if (sidebar.contains(document.activeElement) || (search && search.value.trim())) return;
      const open = !!(sidebar.querySelector('details[open]'));
      await refresh(sidebar);
      if (open) { const d = sidebar.querySelector('details'); if (d) d.open = true; }
    }, 150);
    const reloadRelated = debounce(() => refresh(relatedBox), 150);
    live((ev) => {
      if (ev.customer_id === customerId && ev.case_id !== caseId) {
        // Something happened elsewhere for this customer: other cases, addresses, related requests.
        reloadSidebar();
        reloadRelated();
        return;
      }
      if (ev.case_id !== caseId) return;
      if (ev.type === 'case.merged') {
        // A merge changes the whole page (banner, history, maybe no composer any more):
        // reload unless that would throw away a draft.
        if (!text.value.trim()) { location.reload(); return; }
        say(de ? 'Der Vorgang wurde zusammengeführt – bitte nach dem Sichern des Entwurfs neu laden.' : 'The case was merged – please reload after saving your draft.', true);
      }
      // Everything but a change of the case's fields shows in the timeline: new messages,
      // delivery states, and the assistant's analysis of a message (`message.analysed`),
      // which also sets the case's intent in the head.
      if (ev.type !== 'case.updated') reloadTimeline();
      reloadMeta();
    }, (p) => {
      if (p.case_id !== caseId || p.user_id === userId) return;
      const known = others.has(p.user_id);
      others.set(p.user_id, { name: p.name || '?', state: p.state, at: Date.now() });
      // Someone new arrived: tell them we are here too.
      if (!known && p.state !== 'left') announce(typingUntil ? 'typing' : 'viewing');
      renderPresence();
    }, caseEl.dataset.eventsAfter);
    // Announce once the stream is likely open, so others learn of us and we of them.
    setTimeout(() => announce(typingUntil ? 'typing' : 'viewing'), 300);

    const say = (msg, bad) => { status.textContent = msg; status.classList.toggle('bad', !!bad); };
    // E-mail replies have a subject and CC: shown while a reply goes out by e-mail.
    const channelSelect = $('#reply-channel');
    const mailFields = $('#mail-fields');
    const subjectInput = $('#reply-subject');
    const ccInput = $('#reply-cc');
    const filesInput = $('#reply-files');
    // A file as the API takes it: name, declared type and the bytes in base64.
    const asAttachment = (file) => new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve({
        filename: file.name,
        content_type: file.type || 'application/octet-stream',
        content_base64: String(reader.result).split(',')[1] || '',
      });
      reader.onerror = () => reject(file);
      reader.readAsDataURL(file);
    });
    const byMail = () => mode === 'reply' && channelSelect.value === 'email';
    const showMailFields = () => { mailFields.hidden = !byMail(); };
    channelSelect.addEventListener('change', showMailFields);
    // The addresses as typed, separated by commas, semicolons or line breaks; the server
    // decides which are valid.
    const ccList = () => ccInput.value.split(/[,;\n]+/).map((a) => a.trim()).filter(Boolean);
    const markInvalid = (input, bad) => {
      if (bad) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
    };
    for (const input of [subjectInput, ccInput]) input.addEventListener('input', () => markInvalid(input, false));
    // A refused subject or CC, said in the page's language (the API's message names the
    // address it refused).
    const mailRefusal = (err) => {
      const field = err && err.details && err.details.field;
      if (field === 'subject') { markInvalid(subjectInput, true); subjectInput.focus(); return subjectInput.dataset.refused; }
      if (field !== 'cc') return null;
      markInvalid(ccInput, true);
      ccInput.focus();
      const list = ccList();
      const bad = list.find((a) => (err.message || '').includes(JSON.stringify(a)));
      if (bad) return ccInput.dataset.invalid.replace('{address}', bad);
      if (list.length > 20) return ccInput.dataset.tooMany;
      return ccInput.dataset.refused;
    };
    const setMode = (m) => {
      mode = m;
      $$('.tabs button[data-mode]').forEach((b) => b.classList.toggle('on', b.dataset.mode === m));
      $('#composer').classList.toggle('note', m === 'note');
      $('#contact-fields').hidden = m !== 'contact';
      showMailFields();
      text.placeholder = text.dataset[m];
      $('#send').textContent = $('#send').dataset[m];
      styleSoon();
      text.focus();
    };
    $$('.tabs button[data-mode]').forEach((b) => b.addEventListener('click', () => setMode(b.dataset.mode)));
    $('#contact-channel').addEventListener('change', (e) => { $('#contact-minutes-label').hidden = e.target.value !== 'phone'; });
    // "Record a call" in the customer's sidebar opens the composer in contact mode.
    document.addEventListener('click', (e) => {
      if (e.target.closest && e.target.closest('[data-record-contact]')) { e.preventDefault(); setMode('contact'); }
    });

    const ago = (iso) => {
      const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
      if (s < 10) return de ? 'gerade eben' : 'just now';
      const [n, unit] = s < 60 ? [s, de ? 'Sekunden' : 'seconds'] : s < 3600 ? [Math.round(s / 60), de ? 'Minuten' : 'minutes'] : [Math.round(s / 3600), de ? 'Stunden' : 'hours'];
      return de ? `vor ${n} ${unit}` : `${n} ${unit} ago`;
    };
    const describe = (m) => {
      const who = m.direction === 'in' ? (caseEl.dataset.customer || (de ? 'Der Kunde' : 'The customer')) : (users[m.author_id] || 'Kontor API');
      const what = m.internal ? (de ? 'notierte' : 'noted') : m.direction === 'in' ? (de ? 'schrieb' : 'wrote') : (de ? 'antwortete' : 'answered');
      const via = m.internal ? '' : (de ? ` über ${m.channel}` : ` via ${m.channel}`);
      return `${who} ${what} ${ago(m.created_at)}${via}: ${m.text}`;
    };
    let pendingLatest = null;
    const showStale = (details) => {
      const list = $('#stale-items');
      list.textContent = '';
      (details.newer_messages || []).forEach((m) => {
        const li = document.createElement('li');
        li.textContent = describe(m); // text, never HTML
        list.appendChild(li);
      });
      pendingLatest = details.latest_event_id;
      staleBox.hidden = false;
      reloadTimeline();
    };

    async function send(force) {
      const t = text.value.trim();
      if (!t) return;
      $('#send').disabled = true;
      try {
        if (mode === 'contact') {
          const channel = $('#contact-channel').value;
          const minutes = $('#contact-minutes').value;
          const body = { channel, direction: $('#contact-direction').value, text: t, case_id: caseId };
          if (channel === 'phone' && minutes !== '') body.duration_seconds = Math.round(Number(minutes) * 60);
          const r = await api('POST', `/api/v1/customers/${caseEl.dataset.customerId}/contacts`, body);
          if (r.status === 201) {
            text.value = '';
            styleSoon();
            $('#contact-minutes').value = '';
            say(de ? 'Kontakt gespeichert.' : 'Contact saved.');
            reloadTimeline();
          } else say((r.body && r.body.error && r.body.error.message) || 'Error', true);
          return;
        }
        if (mode === 'note') {
          const r = await api('POST', `/api/v1/cases/${caseId}/notes`, { text: t });
          if (r.status === 201) { text.value = ''; styleSoon(); say(de ? 'Notiz gespeichert.' : 'Note saved.'); reloadTimeline(); }
          else say((r.body && r.body.error && r.body.error.message) || 'Error', true);
          return;
        }
        const reply = { text: t, based_on_event_id: basedOn, force: !!force, channel: channelSelect.value };
        if (byMail()) {
          const subject = subjectInput.value.trim();
          if (subject) reply.subject = subject;
          reply.cc = ccList();
          const files = Array.from(filesInput.files || []);
          const max = Number(filesInput.dataset.max || 0);
          const big = files.find((f) => max > 0 && f.size > max);
          if (big) {
            const mb = String(Math.floor(max / (1024 * 1024)));
            say(filesInput.dataset.tooLarge.replace('{name}', big.name).replace('{max}', mb), true);
            return;
          }
          try {
            if (files.length) reply.attachments = await Promise.all(files.map(asAttachment));
          } catch (file) {
            say(filesInput.dataset.unreadable.replace('{name}', (file && file.name) || ''), true);
            return;
          }
        }
        const r = await api('POST', `/api/v1/cases/${caseId}/replies`, reply);
        if (r.status === 202) {
          text.value = '';
          styleSoon();
          ccInput.value = '';
          filesInput.value = '';
          markInvalid(ccInput, false);
          markInvalid(subjectInput, false);
          staleBox.hidden = true;
          basedOn = latestSeen = Math.max(latestSeen, r.body.event_id);
          // A reply held for four-eyes approval is not sent yet: say so.
          if (r.body && r.body.delivery_state === 'pending_approval') say(composer.dataset.held);
          else say(de ? 'Gesendet.' : 'Sent.');
          reloadTimeline();
        } else if (r.status === 409 && r.body && r.body.error && r.body.error.code === 'stale') {
          showStale(r.body.error.details || {});
          say(de ? 'Nicht gesendet – bitte prüfen.' : 'Not sent – please check.', true);
        } else {
          const err = r.body && r.body.error;
          say((r.status === 422 && mailRefusal(err)) || (err && err.message) || 'Error', true);
        }
      } finally {
        $('#send').disabled = false;
      }
    }
    $('#composer').addEventListener('submit', (e) => { e.preventDefault(); send(false); });
    text.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); send(false); } });
    // Enter in the subject or CC field does not send the reply by accident; Ctrl+Enter does.
    for (const input of [subjectInput, ccInput]) {
      input.addEventListener('keydown', (e) => {
        if (e.key !== 'Enter') return;
        e.preventDefault();
        if (e.ctrlKey || e.metaKey) send(false);
      });
    }
    $('#send-anyway').addEventListener('click', () => send(true));
    $('#discard').addEventListener('click', () => {
      text.value = '';
      styleSoon();
      staleBox.hidden = true;
      if (pendingLatest) latestSeen = Math.max(latestSeen, pendingLatest);
      basedOn = latestSeen;
      say('');
    });

    // Canned responses: pick one, or type ::shortcut and press Tab.
    let canned = [];
    try { canned = JSON.parse($('#canned-json').textContent) || []; } catch (_) { canned = []; }
    const insertAtCursor = (snippet, replaceFrom) => {
      const start = replaceFrom ?? text.selectionStart;
      const end = text.selectionEnd;
      text.value = text.value.slice(0, start) + snippet + text.value.slice(end);
      text.selectionStart = text.selectionEnd = start + snippet.length;
      text.dispatchEvent(new Event('input'));
      text.focus();
    };
    const cannedSelect = $('#canned');
    if (cannedSelect) {
      cannedSelect.addEventListener('change', () => {
        const c = canned.find((x) => String(x.id) === cannedSelect.value);
        if (c) insertAtCursor(c.body);
        cannedSelect.value = '';
      });
    }
    text.addEventListener('keydown', (e) => {
      if (e.key !== 'Tab') return;
      const before = text.value.slice(0, text.selectionStart);
      const m = before.match(/::([A-Za-z0-9_-]+)$/);
      if (!m) return;
      const c = canned.find((x) => x.shortcut === m[1].toLowerCase());
      if (!c) return;
      e.preventDefault();
      insertAtCursor(c.body, text.selectionStart - m[0].length);
    });

    // The assistant's chips (data found in a customer's message): one click puts the value
    // into the composer at the cursor (delegated: the timeline is re-rendered live).
    const composer = $('#composer');
    document.addEventListener('click', (e) => {
      const chip = e.target.closest && e.target.closest('button.chip[data-insert]');
      if (!chip || composer.hidden) return;
      const before = text.value.slice(0, text.selectionStart);
      insertAtCursor((before && !/\s$/.test(before) ? ' ' : '') + chip.dataset.insert);
      const kind = chip.querySelector('.chip-kind');
      say(`${kind ? kind.textContent : ''} ${composer.dataset.inserted}`.trim());
    });

    // The style check of a reply as it is written: findings (outdated phrases, passive voice,
    // long sentences) below the textarea; a finding's button selects its words in the text.
    const styleBox = $('#style-check');
    const styleList = $('#style-findings');
    const styleSummary = $('#style-summary');
    let styleSeq = 0;
    // The API counts Unicode characters; the textarea counts UTF-16 code units.
    const unitOffset = (s, chars) => {
      let i = 0;
      for (let n = 0; n < chars && i < s.length; n += 1) i += s.codePointAt(i) > 0xffff ? 2 : 1;
      return i;
    };
    const showFindings = (draft, findings) => {
      styleList.textContent = '';
      const n = findings.length;
      styleSummary.textContent = n === 0 ? `✓ ${styleBox.dataset.ok}`
        : n === 1 ? styleBox.dataset.one : styleBox.dataset.many.replace('{n}', String(n));
      styleBox.classList.toggle('clean', n === 0);
      findings.forEach((f) => {
        const li = document.createElement('li');
        li.className = `finding f-${f.kind}`;
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'finding-phrase';
        const words = f.phrase.length > 60 ? `${f.phrase.slice(0, 57)}…` : f.phrase;
        b.textContent = `„${words}“`;
        b.title = styleBox.dataset.select;
        b.setAttribute('aria-label', `${styleBox.dataset.select}: ${words}`);
        b.addEventListener('click', () => {
          const s = unitOffset(draft, f.start);
          const e = unitOffset(draft, f.end);
          // The words moved since the check: check again rather than select the wrong ones.
          if (text.value.slice(s, e) !== draft.slice(s, e)) { checkStyle(); return; }
          text.focus();
          text.setSelectionRange(s, e);
        });
        const reason = document.createElement('span');
        reason.className = 'finding-reason';
        reason.textContent = f.reason;
        li.append(b, ' ', reason);
        if (f.suggestion) {
          const hint = document.createElement('span');
          hint.className = 'finding-suggestion';
          hint.textContent = `→ ${f.suggestion}`;
          hint.title = styleBox.dataset.suggestion;
          li.append(' ', hint);
        }
        styleList.appendChild(li);
      });
      styleBox.hidden = false;
    };
    async function checkStyle() {
      const draft = text.value;
      const mine = ++styleSeq;
      if (mode !== 'reply' || !draft.trim()) { styleBox.hidden = true; styleList.textContent = ''; return; }
      const req = { text: draft };
      // A draft of a few words says little about its language: read it in the customer's.
      if (styleBox.dataset.lang && draft.trim().split(/\s+/).length < 8) req.language = styleBox.dataset.lang;
      let r = null;
      try { r = await api('POST', '/api/v1/assist/style', req); } catch (_) { r = null; }
      if (mine !== styleSeq) return; // the draft changed meanwhile; a newer check follows
      if (r && r.status === 200 && r.body && Array.isArray(r.body.findings)) {
        showFindings(draft, r.body.findings);
      } else {
        styleList.textContent = '';
        styleSummary.textContent = styleBox.dataset.unavailable;
        styleBox.classList.remove('clean');
        styleBox.hidden = false;
      }
    }
    const styleSoon = debounce(() => { syncSuggestion(); checkStyle(); }, 400);
    text.addEventListener('input', styleSoon);

    // "korrigieren" opens the choice of intents: straight into it (keyboard users too).
    document.addEventListener('toggle', (e) => {
      const d = e.target;
      if (d.matches && d.matches('details.intent-fix') && d.open) { const sel = $('select', d); if (sel) sel.focus(); }
    }, true);
    // Setting or correcting what a customer wants: the select in a message's strip sets that
    // message's intent; the one in the head the case's, i.e. its first analysed customer
    // message's (delegated: both are re-rendered live).
    document.addEventListener('change', async (e) => {
      const sel = e.target.closest && e.target.closest('select.intent-set');
      if (!sel) return;
      let id = sel.dataset.messageId;
      if (!id) {
        const first = timeline.querySelector('select.intent-set[data-message-id]');
        id = first && first.dataset.messageId;
      }
      if (!id) return;
      sel.disabled = true;
      let r = null;
      try { r = await api('PATCH', `/api/v1/messages/${id}/analysis`, { intent: sel.value }); } catch (_) { r = null; }
      sel.disabled = false;
      sel.blur();
      if (r && r.status === 200) { say(composer.dataset.intentSaved); reloadTimeline(); reloadMeta(); }
      else say((r && r.body && r.body.error && r.body.error.message) || 'Error', true);
    });

    // The assistant's suggestion (the canned response of the case's intent, where set to
    // `suggest`): put into an empty composer when the page opens, marked until it is sent,
    // cleared or emptied.
    const suggestionBox = $('#suggestion');
    let suggested = null;
    function syncSuggestion() {
      if (!suggestionBox || suggested === null) return;
      if (!text.value.trim() || mode !== 'reply') {
        suggested = null;
        suggestionBox.hidden = true;
        text.classList.remove('suggested');
      }
    }
    if (suggestionBox && !composer.hidden && !text.value.trim()) {
      suggested = suggestionBox.dataset.body;
      text.value = suggested;
      text.classList.add('suggested');
      suggestionBox.hidden = false;
      styleSoon();
    }
    const clearSuggestion = $('#suggestion-clear');
    if (clearSuggestion) clearSuggestion.addEventListener('click', () => {
      text.value = '';
      syncSuggestion();
      styleSoon();
      text.focus();
    });

    // A reply draft from the language model (only offered where one is configured).
    const draftButton = $('#draft');
    if (draftButton) draftButton.addEventListener('click', async () => {
      if (text.value.trim() && text.value !== suggested && !window.confirm(draftButton.dataset.replace)) return;
      draftButton.disabled = true;
      say(draftButton.dataset.loading);
      let r = null;
      try { r = await api('POST', `/api/v1/cases/${caseId}/draft`); } catch (_) { r = null; }
      draftButton.disabled = false;
      if (r && r.status === 200 && r.body && typeof r.body.draft === 'string' && r.body.draft.trim()) {
        if (mode !== 'reply') setMode('reply');
        text.value = r.body.draft;
        if (suggestionBox) { suggested = null; suggestionBox.hidden = true; text.classList.remove('suggested'); }
        styleSoon();
        text.focus();
        say(draftButton.dataset.done);
      } else {
        const why = r && r.body && r.body.error && r.body.error.message;
        say(`${draftButton.dataset.failed}${why ? `: ${why}` : ''}`, true);
      }
    });

    // Merging another customer (with all cases and addresses) into this case's customer.
    const customerId = Number(caseEl.dataset.customerId);
    const findCustomers = debounce(async () => {
      const input = $('#customer-search');
      const hits = $('#customer-hits');
      if (!input || !hits) return;
      const q = input.value.trim();
      hits.textContent = '';
      if (q.length < 2) return;
      const r = await api('GET', `/api/v1/search?q=${encodeURIComponent(q)}&limit=8`);
      const found = ((r.body && r.body.customers) || []).filter((c) => c.customer_id !== customerId);
      if (!found.length) { const li = document.createElement('li'); li.textContent = hits.dataset.none; hits.appendChild(li); }
      found.forEach((c) => {
        const li = document.createElement('li');
        li.textContent = `${c.name || '—'} (#${c.customer_id}) `;
        const b = document.createElement('button');
        b.type = 'button'; b.className = 'secondary'; b.textContent = hits.dataset.merge;
        b.addEventListener('click', async () => {
          if (!window.confirm(hits.dataset.confirm)) return;
          const m = await api('POST', `/api/v1/customers/${customerId}/merge`, { source_id: c.customer_id });
          if (m.status === 200) location.reload();
          else say((m.body && m.body.error && m.body.error.message) || 'Error', true);
        });
        li.appendChild(b);
        hits.appendChild(li);
      });
    }, 250);
    document.addEventListener('input', (e) => { if (e.target.id === 'customer-search') findCustomers(); });

    // Merging a probably identical request from another channel into this case (delegated:
    // the banner is re-rendered live).
    document.addEventListener('click', async (e) => {
      const b = e.target.closest('button.merge');
      if (!b) return;
      if (!window.confirm(b.dataset.confirm)) return;
      const r = await api('POST', `/api/v1/cases/${caseId}/merge`, { source_id: Number(b.dataset.source) });
      if (r.status === 200) location.reload();
      else say((r.body && r.body.error && r.body.error.message) || 'Error', true);
    });

    const patch = async (data) => {
      const r = await api('PATCH', `/api/v1/cases/${caseId}`, data);
      if (r.status !== 200) say((r.body && r.body.error && r.body.error.message) || 'Error', true);
      else { say(de ? 'Gespeichert.' : 'Saved.'); reloadMeta(); }
    };
    meta.addEventListener('change', (e) => {
      const field = e.target.dataset.field;
      if (!field) return;
      let v = e.target.value;
      if (field === 'assignee_id' || field === 'team_id') v = v === '' ? null : Number(v);
      if (field === 'tags') v = v.split(',').map((s) => s.trim()).filter(Boolean);
      patch({ [field]: v });
    });
    meta.addEventListener('click', (e) => {
      if (e.target.id === 'resolve') patch({ status: 'resolved' });
      if (e.target.id === 'assign-me') patch({ assignee_id: userId });
    });
    document.addEventListener('keydown', (e) => {
      if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === 'r') { e.preventDefault(); setMode('reply'); }
      if (e.key === 'n') { e.preventDefault(); setMode('note'); }
      if (e.key === 'c') { e.preventDefault(); setMode('contact'); }
      if (e.key === 'e') { e.preventDefault(); patch({ status: 'resolved' }); }
      if (e.key === 'a') { e.preventDefault(); patch({ assignee_id: userId }); }
    });
  }

  // ---- Settings: forms and buttons that call the API ------------------------------------
  const report = (r) => {
    const el = $('#settings-status');
    if (r.status >= 200 && r.status < 300) { location.reload(); return; }
    if (el) { el.textContent = (r.body && r.body.error && r.body.error.message) || `Error ${r.status}`; el.className = 'error'; }
  };
  $$('form[data-api]').forEach((form) => form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const [method, url] = form.dataset.api.split(' ');
    const data = {};
    $$('input[name], select[name], textarea[name]', form).forEach((el) => {
      if (el.dataset.type === 'bool') data[el.name] = el.checked;
      else if (el.dataset.type === 'int') data[el.name] = Number(el.value);
      else if (el.value !== '') data[el.name] = el.value;
    });
    report(await api(method, url, data));
  }));
  // Editing a canned response reuses the form below the list.
  $$('button.edit-canned').forEach((b) => b.addEventListener('click', () => {
    const form = $('#canned-form');
    if (!form) return;
    for (const f of ['title', 'shortcut', 'language', 'body']) form.elements[f].value = b.dataset[f];
    form.dataset.api = `PUT /api/v1/canned/${b.dataset.id}`;
    form.querySelector('button[type=submit]').textContent = form.dataset.save;
    form.elements.title.focus();
  }));
  $$('[data-api-click]').forEach((b) => b.addEventListener('click', async () => {
    if (b.dataset.confirm && !window.confirm(b.dataset.confirm)) return;
    const [method, url] = b.dataset.apiClick.split(' ');
    report(await api(method, url));
  }));

  // ---- Settings: the assistant (automation per intent, business hours, rules) ----------
  if (page === 'settings' && $('#assistant-settings')) {
    const saved = de ? 'Gespeichert.' : 'Saved.';
    const tell = (form, msg, bad) => {
      const el = $('.form-status', form);
      if (el) { el.textContent = msg; el.classList.toggle('error', !!bad); }
    };
    const problem = (r) => {
      const e = r && r.body && r.body.error;
      if (!e) return `Error ${r ? r.status : ''}`.trim();
      const field = e.details && e.details.field;
      return field ? `${e.message} (${field})` : e.message;
    };
    const call = async (method, url, data) => {
      try { return await api(method, url, data); } catch (_) { return null; }
    };

    // The automation level of every intent, saved at once.
    const intentsForm = $('#intents-form');
    intentsForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      tell(intentsForm, ''); // a status below is always this save's
      const intents = $$('tr[data-intent]', intentsForm).map((tr) => {
        const canned = $('.intent-canned', tr).value;
        return { intent: tr.dataset.intent, level: $('.intent-level', tr).value, canned_id: canned ? Number(canned) : null };
      });
      const r = await call('PUT', '/api/v1/assist/intents', { intents });
      if (r && r.status === 200) tell(intentsForm, saved); else tell(intentsForm, problem(r), true);
    });

    // Business hours: "08:00-12:00, 13:00-17:00" per day; none at all when switched off.
    const hoursForm = $('#hours-form');
    hoursForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      tell(hoursForm, ''); // a status below is always this save's
      let hours = null;
      if (!$('#hours-off').checked) {
        const days = {};
        for (const input of $$('input[data-day]', hoursForm)) {
          const spans = input.value.split(/[,;]+/).map((x) => x.trim()).filter(Boolean).map((x) => x.split(/\s*[-–]\s*/));
          if (spans.some((p) => p.length !== 2 || !p[0] || !p[1])) {
            input.setAttribute('aria-invalid', 'true');
            input.focus();
            tell(hoursForm, `${input.labels[0].textContent}: ${input.placeholder}`, true);
            return;
          }
          input.removeAttribute('aria-invalid');
          if (spans.length) days[input.dataset.day] = spans;
        }
        hours = { timezone: $('#hours-zone').value.trim() || 'Europe/Berlin', days };
      }
      const r = await call('PUT', '/api/v1/assist/business-hours', { business_hours: hours });
      if (r && r.status === 200) tell(hoursForm, saved); else tell(hoursForm, problem(r), true);
    });

    // Rules: the list (order, on/off, delete, dry run) and one form to create or edit.
    let rules = [];
    try { rules = JSON.parse($('#rules-json').textContent) || []; } catch (_) { rules = []; }
    const byId = (id) => rules.find((r) => r.id === Number(id));
    const ruleList = $('#rules-list');
    const ruleForm = $('#rule-form');
    const cancel = $('#rule-cancel');
    let editing = null;
    const asBody = (r) => ({ name: r.name, position: r.position, enabled: r.enabled, conditions: r.conditions, actions: r.actions });
    const words = (v) => v.split(',').map((x) => x.trim()).filter(Boolean);
    const checked = (name) => $$(`input[name="${name}"]:checked`, ruleForm).map((i) => i.value);
    const fromForm = () => {
      const f = ruleForm.elements;
      const conditions = {
        channels: checked('channels'),
        intents: [...f.intents.selectedOptions].map((o) => o.value),
        sentiments: checked('sentiments'),
        languages: checked('languages'),
        keywords: words(f.keywords.value),
        customer_languages: words(f.customer_languages.value),
      };
      if (f.min_confidence.value !== '') conditions.min_confidence = Number(f.min_confidence.value) / 100;
      if (f.business_hours.value) conditions.business_hours = f.business_hours.value;
      const actions = [];
      if (f.set_team.value) actions.push({ type: 'set_team', team_id: Number(f.set_team.value) });
      if (f.set_assignee.value) actions.push({ type: 'set_assignee', user_id: Number(f.set_assignee.value) });
      if (f.set_priority.value) actions.push({ type: 'set_priority', priority: f.set_priority.value });
      if (f.add_tag.value.trim()) actions.push({ type: 'add_tag', tag: f.add_tag.value.trim() });
      if (f.auto_answer.value) actions.push({ type: 'auto_answer', canned_id: Number(f.auto_answer.value) });
      if (f.require_approval.checked) actions.push({ type: 'require_approval' });
      if (f.mark_spam.checked) actions.push({ type: 'mark_spam' });
      return { name: f.name.value.trim(), enabled: f.enabled.checked, conditions, actions };
    };
    const toForm = (r) => {
      const f = ruleForm.elements;
      const c = r.conditions || {};
      f.name.value = r.name;
      f.enabled.checked = r.enabled;
      for (const name of ['channels', 'sentiments', 'languages']) {
        $$(`input[name="${name}"]`, ruleForm).forEach((i) => { i.checked = (c[name] || []).includes(i.value); });
      }
      [...f.intents.options].forEach((o) => { o.selected = (c.intents || []).includes(o.value); });
      f.min_confidence.value = c.min_confidence === undefined || c.min_confidence === null ? '' : Math.round(c.min_confidence * 100);
      f.keywords.value = (c.keywords || []).join(', ');
      f.customer_languages.value = (c.customer_languages || []).join(', ');
      f.business_hours.value = c.business_hours || '';
      const act = (type) => (r.actions || []).find((a) => a.type === type);
      f.set_team.value = act('set_team') ? String(act('set_team').team_id) : '';
      f.set_assignee.value = act('set_assignee') ? String(act('set_assignee').user_id) : '';
      f.set_priority.value = act('set_priority') ? act('set_priority').priority : '';
      f.add_tag.value = act('add_tag') ? act('add_tag').tag : '';
      f.auto_answer.value = act('auto_answer') ? String(act('auto_answer').canned_id) : '';
      f.require_approval.checked = !!act('require_approval');
      f.mark_spam.checked = !!act('mark_spam');
    };
    const startEdit = (r) => {
      editing = r;
      if (r) toForm(r); else ruleForm.reset();
      $('#rule-form-title').textContent = r ? `${ruleForm.dataset.edit}: ${r.name}` : ruleForm.dataset.new;
      cancel.hidden = !r;
      tell(ruleForm, '');
      if (r) { ruleForm.scrollIntoView({ block: 'start' }); ruleForm.elements.name.focus(); }
    };
    cancel.addEventListener('click', () => startEdit(null));
    ruleForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      tell(ruleForm, '');
      const data = fromForm();
      if (editing) data.position = editing.position;
      const r = editing ? await call('PUT', `/api/v1/rules/${editing.id}`, data) : await call('POST', '/api/v1/rules', data);
      if (r && (r.status === 200 || r.status === 201)) { location.hash = 'rules-list'; location.reload(); }
      else tell(ruleForm, problem(r), true);
    });
    const listStatus = (li, msg) => { const box = $('.dry-run', li); box.textContent = msg; box.hidden = false; };
    const intentLabel = (v) => { const o = [...ruleForm.elements.intents.options].find((x) => x.value === v); return o ? o.textContent : v; };
    ruleList.addEventListener('change', async (e) => {
      if (!e.target.classList.contains('rule-enabled')) return;
      const li = e.target.closest('li[data-id]');
      const rule = byId(li.dataset.id);
      const r = await call('PUT', `/api/v1/rules/${rule.id}`, { ...asBody(rule), enabled: e.target.checked });
      if (r && r.status === 200) { Object.assign(rule, r.body); li.classList.toggle('off', !rule.enabled); }
      else { e.target.checked = rule.enabled; listStatus(li, problem(r)); }
    });
    ruleList.addEventListener('click', async (e) => {
      const b = e.target.closest('button');
      const li = b && b.closest('li[data-id]');
      if (!li) return;
      const rule = byId(li.dataset.id);
      if (b.classList.contains('rule-edit')) { startEdit(rule); return; }
      if (b.classList.contains('rule-delete')) {
        if (!window.confirm(ruleList.dataset.confirm)) return;
        const r = await call('DELETE', `/api/v1/rules/${rule.id}`);
        if (r && r.status < 300) location.reload(); else listStatus(li, problem(r));
        return;
      }
      if (b.classList.contains('rule-move')) {
        // The new order, numbered 1…n; only the rules whose place changed are written.
        const order = rules.slice();
        const i = order.indexOf(rule);
        const j = i + Number(b.dataset.by);
        if (j < 0 || j >= order.length) return;
        [order[i], order[j]] = [order[j], order[i]];
        for (const [n, r] of order.entries()) {
          if (r.position === n + 1) continue;
          const res = await call('PUT', `/api/v1/rules/${r.id}`, { ...asBody(r), position: n + 1 });
          if (!res || res.status !== 200) { listStatus(li, problem(res)); return; }
        }
        location.reload();
        return;
      }
      if (b.classList.contains('rule-dry-run')) {
        b.disabled = true;
        const r = await call('POST', `/api/v1/rules/${rule.id}/dry-run`);
        b.disabled = false;
        const box = $('.dry-run', li);
        if (!r || r.status !== 200) { listStatus(li, problem(r)); return; }
        const d = r.body;
        box.textContent = '';
        const p = document.createElement('p');
        p.className = 'dry-run-summary';
        p.textContent = ruleList.dataset.result.replace('{matched}', d.matched).replace('{examined}', d.examined)
          + (d.not_analysed ? ` · ${ruleList.dataset.unanalysed.replace('{n}', d.not_analysed)}` : '');
        box.appendChild(p);
        const ul = document.createElement('ul');
        ul.className = 'dry-run-matches';
        (d.matches || []).slice(0, 10).forEach((m) => {
          const item = document.createElement('li');
          const a = document.createElement('a');
          a.href = `/cases/${m.case_id}`;
          a.textContent = `#${m.case_id}`;
          item.append(a, ` · ${m.channel} · ${intentLabel(m.intent)} · ${m.sentiment}`);
          ul.appendChild(item);
        });
        box.appendChild(ul);
        box.hidden = false;
      }
    });
  }

  // ---- Everywhere ---------------------------------------------------------------------
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { if (typing(e.target)) e.target.blur(); const h = $('#help'); if (h) h.hidden = true; return; }
    if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === '/') { const s = $('#search'); if (s) { e.preventDefault(); s.focus(); } }
    if (e.key === '?') { const h = $('#help'); if (h) h.hidden = !h.hidden; }
  });
})();
