// Custody console. One module, no dependencies: it calls custody serve's
// /v1 API (api/openapi.yaml) with the session cookie and the page's
// anti-CSRF value, and renders what comes back. Event content is only ever
// put in the page as text (textContent), never as markup.

const body = document.body;
const csrf = body.dataset.csrf;
const maxRows = Number(body.dataset.maxRows) || 10000;
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

// el builds an element: el('td', {class: 'x'}, 'text', child…).
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
  return e;
}

function say(text, kind = 'info') {
  const m = $('#message');
  m.replaceChildren(text ? el('p', { class: 'alert ' + kind }, text) : '');
}

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// api calls the JSON API; a 401 means the session ended.
async function api(method, path, payload) {
  const init = { method, credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf } };
  if (payload !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(payload);
  }
  const r = await fetch(path, init);
  if (r.status === 401) { location.assign('/sign-in'); throw new APIError(401, 'signed out'); }
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new APIError(r.status, explain(r.status, j.error));
  return j;
}

// explain turns an API error into a sentence for the page.
function explain(status, msg) {
  msg = msg || `the server answered ${status}`;
  if (status === 503) return 'Refused: ' + msg + '. Nothing was read; try again once the audit log (Kafka) is back.';
  if (status === 429) return 'Busy: ' + msg;
  if (status === 403) return 'Not allowed: ' + msg;
  return msg;
}

// UTC times: the datetime-local inputs are read and written as UTC.
function inputToRFC3339(v) { return v ? v + (v.length === 16 ? ':00' : '') + 'Z' : ''; }
function toInput(d) { return d.toISOString().slice(0, 16); }
function shortTime(s) { return (s || '').replace('T', ' ').replace(/(\.\d+)?Z$/, ''); }

// ---- views -------------------------------------------------------------

const views = {};
function show() {
  const name = (location.hash || '#cases').slice(1);
  const known = $$('section[data-view]').map(s => s.dataset.view);
  const view = known.includes(name) ? name : 'cases';
  for (const s of $$('section[data-view]')) s.hidden = s.dataset.view !== view;
  for (const a of $$('nav a[data-view]')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  say('');
  views[view]?.();
}
window.addEventListener('hashchange', show);

// ---- cases -------------------------------------------------------------

let cases = [];
async function loadCases() {
  try {
    cases = (await api('GET', '/v1/cases')).cases || [];
  } catch (e) { say('Cannot list cases: ' + e.message, 'error'); return; }
  const tb = $('#cases-table tbody');
  tb.replaceChildren(...cases.map(c => el('tr', {},
    el('th', { scope: 'row' }, c.id), el('td', {}, c.title), el('td', {}, c.legal_basis), el('td', {}, c.authority || ''),
    el('td', {}, shortTime(c.opened_at) + ' by ' + c.opened_by),
    el('td', {}, c.closed_at ? 'closed ' + shortTime(c.closed_at) : 'open'),
    el('td', { class: 'actions' },
      !c.closed_at && $('#view-search') ? el('a', { href: '#search', class: 'button', 'aria-label': `Search in case ${c.id}`, onclick: () => { pendingCase = c.id; } }, 'Search in this case') : '',
      !c.closed_at && $('#case-form') ? el('button', { type: 'button', 'aria-label': `Close case ${c.id}`, onclick: () => closeCase(c) }, 'Close') : ''))));
  if (cases.length === 0) tb.append(el('tr', {}, el('td', { colspan: 7 }, 'No cases yet.')));
  fillCaseSelect();
}
views.cases = loadCases;

// ask shows a yes/no question in the page's own dialog (window.confirm
// would block the page and cannot be styled or labelled).
function ask(question, yes) {
  const d = $('#confirm-dialog');
  $('#confirm-text').textContent = question;
  $('#confirm-yes').textContent = yes;
  return new Promise(resolve => {
    d.addEventListener('close', () => resolve(d.returnValue === 'yes'), { once: true });
    d.returnValue = '';
    d.showModal();
  });
}

async function closeCase(c) {
  if (!await ask(`Close case ${c.id}? No search can use it afterwards; its record stays.`, `Close ${c.id}`)) return;
  try { await api('POST', `/v1/cases/${encodeURIComponent(c.id)}/close`); say(`Case ${c.id} closed.`); }
  catch (e) { say('Cannot close the case: ' + e.message, 'error'); }
  loadCases();
}

$('#case-form')?.addEventListener('submit', async ev => {
  ev.preventDefault();
  const f = ev.target;
  const req = Object.fromEntries(new FormData(f));
  try {
    await api('POST', '/v1/cases', req);
    say(`Case ${req.id} opened.`);
    f.reset();
  } catch (e) { say('Cannot open the case: ' + e.message, 'error'); }
  loadCases();
});

// ---- search ------------------------------------------------------------

let pendingCase = '';
function fillCaseSelect() {
  const sel = $('#search-form select[name=case]');
  if (!sel) return;
  const keep = pendingCase || sel.value;
  const open = cases.filter(c => !c.closed_at);
  sel.replaceChildren(...open.map(c => el('option', { value: c.id }, `${c.id} — ${c.title}`)));
  if (open.some(c => c.id === keep)) sel.value = keep; // else the first open case
  pendingCase = '';
}

views.search = async () => {
  const f = $('#search-form');
  if (!f.from.value) {
    const now = new Date();
    f.to.value = toInput(now);
    f.from.value = toInput(new Date(now.getTime() - 24 * 3600e3));
  }
  await loadCases();
};

const filterNames = ['ip', 'login', 'kind', 'tenant', 'app', 'repo', 'session'];
function searchRequest() {
  const f = $('#search-form');
  const req = { case: f.case.value, purpose: f.purpose.value.trim(), from: inputToRFC3339(f.from.value), to: inputToRFC3339(f.to.value) };
  for (const n of filterNames) if (f[n].value.trim()) req[n] = f[n].value.trim();
  return req;
}

// shellQuote quotes a word for a POSIX shell.
function shellQuote(s) { return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'"; }

$('#search-copy')?.addEventListener('click', async () => {
  const q = searchRequest();
  const words = ['custody', 'query', '--server', location.origin, '--case', q.case, '--purpose', q.purpose, '--from', q.from, '--to', q.to];
  for (const n of filterNames) if (q[n]) words.push('--' + n, q[n]);
  const line = words.map(shellQuote).join(' ');
  try { await navigator.clipboard.writeText(line); say('Copied: ' + line); }
  catch { say(line); }
});

let running = null; // the AbortController of the search in flight
let rows = [];      // events kept for the table and the histogram
let page = 0;
const pageSize = 50;

$('#search-cancel')?.addEventListener('click', () => running?.abort());

$('#search-form')?.addEventListener('submit', async ev => {
  ev.preventDefault();
  running?.abort();
  const req = searchRequest();
  const ctl = new AbortController();
  running = ctl;
  body.dataset.search = 'running'; // 'done' once the answer ended (tests wait for it)
  rows = []; page = 0;
  let matched = 0, dropped = 0, trailer = null;
  const prog = $('#search-progress'), bar = $('progress', prog), text = $('.text', prog);
  prog.hidden = false; bar.removeAttribute('value'); text.textContent = 'Recording the access…';
  $('#search-problems').replaceChildren();
  $('#histogram').hidden = true; $('#results').hidden = true;
  $('#search-run').disabled = true; $('#search-cancel').disabled = false;
  const exportBtn = $('#search-export'); if (exportBtn) exportBtn.disabled = true;
  say('');
  // Time to first row (ms from the click to the first row drawn), kept on
  // the results for the browser benchmark (docs/BENCHMARKS.md).
  const t0 = performance.now();
  delete $('#results').dataset.firstRowMs;
  let dirty = false;
  const paint = () => {
    dirty = false; renderRows(); renderHistogram();
    if (rows.length && !$('#results').dataset.firstRowMs) $('#results').dataset.firstRowMs = String(Math.round(performance.now() - t0));
  };
  const schedule = () => { if (!dirty) { dirty = true; requestAnimationFrame(paint); } };
  try {
    const r = await fetch('/v1/query', {
      method: 'POST', credentials: 'same-origin', signal: ctl.signal,
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      // The page keeps maxRows: the server stops there too (limit), rather
      // than reading the whole range for rows nobody will see.
      body: JSON.stringify({ ...req, progress: true, limit: maxRows }),
    });
    if (r.status === 401) { location.assign('/sign-in'); return; }
    if (!r.ok) {
      const j = await r.json().catch(() => ({}));
      throw new APIError(r.status, explain(r.status, j.error));
    }
    text.textContent = 'Reading the archive…';
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line) continue;
        const o = JSON.parse(line);
        if (o.progress) {
          const p = o.progress, done = p.scanned + p.pruned;
          bar.max = Math.max(p.segments, 1); bar.value = done;
          text.textContent = `Segments ${done} of ${p.segments} read (${p.pruned} skipped by their index); ${p.events} events found`;
        } else if (o.trailer) {
          trailer = o.trailer;
        } else {
          matched++;
          if (rows.length < maxRows) { rows.push(o); schedule(); } else dropped++;
        }
      }
    }
    if (!trailer) throw new Error('the answer ended without its trailer: the results are incomplete');
    bar.max = 1; bar.value = 1;
    text.textContent = `${matched} events from ${trailer.segments} segments (${trailer.scanned} read, ${trailer.pruned} skipped by their index).`;
    const problems = [];
    if (trailer.error) problems.push('The search stopped early: ' + trailer.error);
    for (const f of trailer.failed || []) problems.push(`Segment ${f.segment} could not be read: ${f.error}. Its events are missing above.`);
    if (trailer.truncated) problems.push(`Showing the first ${trailer.events} events: more match. Narrow the filters, or export them all.`);
    if (dropped) problems.push(`The page shows the first ${maxRows} events; ${dropped} more arrived. Narrow the filters, or export them.`);
    $('#search-problems').replaceChildren(...problems.map(p => el('p', { class: 'alert warn' }, p)));
    if (exportBtn) exportBtn.disabled = false;
  } catch (e) {
    if (e.name === 'AbortError') text.textContent = `Cancelled after ${matched} events.`;
    else { prog.hidden = true; $('#search-problems').replaceChildren(el('p', { class: 'alert error' }, e.message)); }
  } finally {
    if (running === ctl) running = null;
    $('#search-run').disabled = false; $('#search-cancel').disabled = true;
    paint();
    body.dataset.search = 'done';
  }
});

function summary(e) {
  return [e.app, e.repo].filter(Boolean).join(' / ');
}

function renderRows() {
  const res = $('#results');
  res.hidden = rows.length === 0;
  const pages = Math.max(1, Math.ceil(rows.length / pageSize));
  page = Math.min(page, pages - 1);
  const slice = rows.slice(page * pageSize, (page + 1) * pageSize);
  $('#results-table tbody').replaceChildren(...slice.map((e, i) => el('tr', {
    tabindex: 0, 'data-id': e.id, 'aria-label': `Event ${e.id}, open for details`,
    onclick: () => openEvent(e), onkeydown: k => { if (k.key === 'Enter' || k.key === ' ') { k.preventDefault(); openEvent(e); } },
  }, el('td', {}, shortTime(e.time)), el('td', {}, e.kind), el('td', {}, e.tenant), el('td', {}, e.ip ? e.ip + (e.port ? ':' + e.port : '') : ''),
    el('td', {}, e.login || ''), el('td', {}, summary(e)), el('td', {}, e.action || ''))));
  $('#page-info').textContent = `Page ${page + 1} of ${pages} · ${rows.length} events`;
  $('#page-prev').disabled = page === 0;
  $('#page-next').disabled = page >= pages - 1;
}
$('#page-prev')?.addEventListener('click', () => { page--; renderRows(); });
$('#page-next')?.addEventListener('click', () => { page++; renderRows(); });

function openEvent(e) {
  $('#event-title').textContent = `Event ${e.id}`;
  $('#event-json').textContent = JSON.stringify(e, null, 2);
  $('#event-dialog').showModal();
}

const kindColours = { connection: 'k1', login: 'k2', source_change: 'k3', activity: 'k4', access_audit: 'k5' };
const svgNS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

// renderHistogram draws events per time bucket, stacked by kind, over the
// searched range.
function renderHistogram() {
  const fig = $('#histogram');
  fig.hidden = rows.length === 0;
  if (!rows.length) return;
  const f = $('#search-form');
  const from = Date.parse(inputToRFC3339(f.from.value)), to = Date.parse(inputToRFC3339(f.to.value));
  const buckets = 60, width = 600, height = 120, span = Math.max(to - from, 1);
  const counts = Array.from({ length: buckets }, () => ({}));
  const kinds = new Set();
  for (const e of rows) {
    const b = Math.min(buckets - 1, Math.max(0, Math.floor((Date.parse(e.time) - from) / span * buckets)));
    counts[b][e.kind] = (counts[b][e.kind] || 0) + 1;
    kinds.add(e.kind);
  }
  const max = Math.max(1, ...counts.map(c => Object.values(c).reduce((a, b) => a + b, 0)));
  const s = $('svg', fig);
  s.setAttribute('viewBox', `0 0 ${width} ${height + 16}`);
  const bw = width / buckets;
  const parts = [];
  counts.forEach((c, i) => {
    let y = height;
    for (const k of Object.keys(kindColours)) {
      if (!c[k]) continue;
      const h = c[k] / max * height;
      y -= h;
      const r = svg('rect', { x: i * bw + 0.5, y, width: bw - 1, height: h, class: kindColours[k] });
      const t = document.createElementNS(svgNS, 'title');
      t.textContent = `${new Date(from + i * span / buckets).toISOString().slice(0, 16).replace('T', ' ')}: ${c[k]} ${k}`;
      r.append(t);
      parts.push(r);
    }
  });
  const label = (x, txt, anchor) => { const t = svg('text', { x, y: height + 13, 'text-anchor': anchor }); t.textContent = txt; return t; };
  parts.push(label(0, shortTime(new Date(from).toISOString()), 'start'), label(width, shortTime(new Date(to).toISOString()), 'end'));
  s.replaceChildren(...parts);
  $('.legend', fig).replaceChildren(...[...kinds].map(k => el('li', {}, el('span', { class: 'swatch ' + (kindColours[k] || '') }), k)));
}

// ---- exports -----------------------------------------------------------

$('#search-export')?.addEventListener('click', () => $('#export-dialog').showModal());
$('#export-cancel')?.addEventListener('click', () => $('#export-dialog').close());
$('#export-form')?.addEventListener('submit', async ev => {
  ev.preventDefault();
  const extra = Object.fromEntries([...new FormData(ev.target)].filter(([, v]) => v));
  $('#export-dialog').close();
  try {
    const x = await api('POST', '/v1/exports', { ...searchRequest(), ...extra });
    say(`Export ${x.id} requested (${x.status}). It needs ${x.approvals_needed} approval(s); see Exports.`);
  } catch (e) { say('Cannot request the export: ' + e.message, 'error'); }
});

views.exports = async () => {
  let xs;
  try { xs = (await api('GET', '/v1/exports')).exports || []; }
  catch (e) { say('Cannot list exports: ' + e.message, 'error'); return; }
  const me = body.dataset.name, legal = body.dataset.role === 'legal';
  const tb = $('#exports-table tbody');
  tb.replaceChildren(...xs.slice().reverse().map(x => {
    // The requester counts as the first approval and may not approve again.
    const approvedByMe = x.requested_by === me || (x.approvals || []).some(a => a.by === me);
    const status = x.status + (x.progress ? ` (${x.progress.events} events so far)` : '') + (x.result?.error ? ': ' + x.result.error : '');
    return el('tr', { 'data-id': x.id },
      el('th', { scope: 'row' }, x.id), el('td', {}, x.case || x.rights_request || ''),
      el('td', {}, shortTime(x.requested_at) + ' by ' + x.requested_by),
      el('td', {}, Object.entries(x.filters || {}).map(([k, v]) => `${k}=${v}`).join(' ')),
      el('td', {}, `${1 + (x.approvals || []).length} of ${x.approvals_needed}`),
      el('td', { class: 'status' }, status),
      el('td', { class: 'actions' },
        legal && x.status === 'pending' && !approvedByMe ? el('button', { type: 'button', onclick: () => approve(x) }, 'Approve') : '',
        legal && x.status === 'ready' ? el('a', { class: 'button', href: `/v1/exports/${encodeURIComponent(x.id)}/package`, download: `${x.id}.zip` }, 'Download') : ''));
  }));
  if (!xs.length) tb.append(el('tr', {}, el('td', { colspan: 7 }, 'No exports yet.')));
};

async function approve(x) {
  try { await api('POST', `/v1/exports/${encodeURIComponent(x.id)}/approve`); say(`Export ${x.id} approved.`); }
  catch (e) { say('Cannot approve: ' + e.message, 'error'); }
  views.exports();
}

// ---- access log --------------------------------------------------------

views.access = () => {
  const f = $('#access-form');
  if (!f.from.value) {
    const now = new Date();
    f.to.value = toInput(new Date(now.getTime() + 60e3));
    f.from.value = toInput(new Date(now.getTime() - 24 * 3600e3));
  }
};

$('#access-form')?.addEventListener('submit', async ev => {
  ev.preventDefault();
  const f = ev.target;
  const p = new URLSearchParams({ from: inputToRFC3339(f.from.value), to: inputToRFC3339(f.to.value) });
  if (f.login.value.trim()) p.set('login', f.login.value.trim());
  if (f.case.value.trim()) p.set('case', f.case.value.trim());
  const problems = $('#access-problems');
  problems.replaceChildren();
  try {
    const r = await fetch('/v1/access-log?' + p, { credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf } });
    if (r.status === 401) { location.assign('/sign-in'); return; }
    if (!r.ok) { const j = await r.json().catch(() => ({})); throw new APIError(r.status, explain(r.status, j.error)); }
    const lines = (await r.text()).split('\n').filter(Boolean).map(l => JSON.parse(l));
    const trailer = lines.find(l => l.trailer)?.trailer;
    const evs = lines.filter(l => !l.trailer);
    const t = $('#access-table');
    t.hidden = false;
    $('tbody', t).replaceChildren(...evs.map(e => {
      const a = e.attrs || {};
      const detail = a.phase === 'result'
        ? `${a.events ?? 0} events, ${a.segments ?? 0} segments, ${a.failed ?? 0} unreadable, ${a.duration_ms ?? 0} ms` + (a.error ? ', error: ' + a.error : '')
        : JSON.stringify(a.filters || {});
      return el('tr', {}, el('td', {}, shortTime(e.time)), el('td', {}, e.login), el('td', {}, `${e.action} ${a.phase || ''}`),
        el('td', {}, a.case || ''), el('td', {}, e.purpose || ''), el('td', {}, detail), el('td', {}, a.client || ''));
    }));
    if (!evs.length) $('tbody', t).append(el('tr', {}, el('td', { colspan: 7 }, 'No access in this range.')));
    if (trailer?.error) problems.append(el('p', { class: 'alert warn' }, 'Incomplete: ' + trailer.error));
    for (const fl of trailer?.failed || []) problems.append(el('p', { class: 'alert warn' }, `Segment ${fl.segment} could not be read: ${fl.error}`));
  } catch (e) { problems.replaceChildren(el('p', { class: 'alert error' }, e.message)); }
});

show();
