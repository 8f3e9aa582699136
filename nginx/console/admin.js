// admin.js: the Admin page (admin key). Health, live figures computed from
// two successive /metrics scrapes, the response cache (stats, purge by each
// selector), token budgets per client (reset) and the knowledge base
// (documents, upload, delete).

import { call, callJSON } from './api.js';
import { $, bytes, busy, compact, el, fmt, say } from './ui.js';
import { Spark } from './charts.js';

const POLL_MS = 2000;
let timer = null;
let prev = null; // the previous scrape's counters
let charts = null;

function fill(dl, rows) {
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { textContent: k }),
                                                  el('dd', { textContent: v })]));
}

// ---- health and /metrics -------------------------------------------------

function showHealth(h) {
  const npu = h.npu;
  fill($('#health'), [
    ['Status', h.status],
    ['Models', (h.models || [h.model]).map((m) =>
      `${m.id} (${m.type ? m.type + ', ' : ''}${m.loaded ? 'loaded' : 'not loaded'})`).join('; ')],
    ['Workers', `${h.workers.alive} of ${h.workers.configured} alive`],
    ['Queue depth', fmt(h.queue_depth)],
    ['In flight', fmt(h.in_flight)],
    ['NPU temperature', h.npu_temp_c === null ? 'no sensor' : `${fmt(h.npu_temp_c, 1)} °C`],
    ['NPU', npu ? `${npu.busy ? 'busy' : 'idle'}, ${fmt(npu.queue_depth)} waiting, ` +
                  `${fmt(npu.timeouts)} timeouts, ${fmt(npu.rejected)} rejected` : 'no arbiter'],
  ]);
}

// Prometheus text -> [{name, labels, value}] (comments and blank lines skipped).
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, k, v] of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    out.push({ name: m[1], labels, value: parseFloat(m[3]) });
  }
  return out;
}

const sum = (samples, name, keep = () => true) =>
  samples.filter((s) => s.name === name && keep(s.labels)).reduce((a, s) => a + s.value, 0);

function showMetrics(text) {
  const s = parseMetrics(text);
  // The console's own calls (health, metrics, admin) are not traffic.
  const cur = {
    t: performance.now() / 1000,
    req: sum(s, 'edgegate_requests_total', (l) => !['health', 'metrics', 'admin'].includes(l.endpoint)),
    tok: sum(s, 'edgegate_completion_tokens_total'),
    hits: sum(s, 'edgegate_cache_hits_total'),
    misses: sum(s, 'edgegate_cache_misses_total'),
  };
  const lookups = cur.hits + cur.misses;
  const hit = lookups ? cur.hits / lookups : 0;
  $('#fig-hit').textContent = `Cache hit rate: ${lookups ? fmt(hit * 100) + '%' : 'n/a'} ` +
                              `(${fmt(cur.hits)} of ${fmt(lookups)} lookups)`;
  charts.hit.push(hit);
  if (prev) {
    const dt = cur.t - prev.t;
    const rate = (k) => Math.max(0, cur[k] - prev[k]) / dt; // counters restart with the pool
    $('#fig-rps').textContent = `Requests/s: ${fmt(rate('req'), 1)}`;
    $('#fig-tps').textContent = `Tokens/s: ${fmt(rate('tok'), 1)}`;
    charts.rps.push(rate('req'));
    charts.tps.push(rate('tok'));
  }
  prev = cur;
}

// ---- cache ---------------------------------------------------------------

function showCache(c) {
  fill($('#cache-stats'), [
    ['Entries', fmt(c.entries)],
    ['Stored', `${bytes(c.bytes)} of ${bytes(c.max_bytes)}`],
    ['Hits', fmt(c.hits)],
    ['Misses', fmt(c.misses)],
    ['Puts', fmt(c.puts)],
    ['Evictions', fmt(c.evictions)],
    ['Expired', fmt(c.expired)],
  ]);
  $('#cache-stats').dataset.entries = c.entries;
}

async function poll() {
  const [h, m, c] = await Promise.allSettled([
    callJSON('/health', { key: null }),
    call('/metrics', { key: 'admin' }).then((r) => r.text()),
    callJSON('/admin/cache/stats', { key: 'admin' }),
  ]);
  if (h.status === 'fulfilled') showHealth(h.value);
  if (m.status === 'fulfilled') showMetrics(m.value);
  if (c.status === 'fulfilled') showCache(c.value);
  const failed = [h, m, c].find((r) => r.status === 'rejected');
  say($('#admin-status'), failed ? failed.reason : '', failed ? 'error' : '');
}

function purgeSelector() {
  const by = $('#purge-by').value;
  const v = $('#purge-value').value.trim();
  if (by === 'all') return { all: true };
  if (!v) throw new Error('Enter a value for this selector.');
  if (by === 'older_than_s' || by === 'kb_version_below') {
    if (!/^\d+$/.test(v)) throw new Error('Enter a whole number.');
    return { [by]: Number(v) };
  }
  return { [by]: v };
}

async function purge() {
  const status = $('#purge-status');
  try {
    const r = await callJSON('/admin/cache/purge', { key: 'admin', json: purgeSelector() });
    say(status, `Purged ${fmt(r.purged)} ${r.purged === 1 ? 'entry' : 'entries'}.`, 'ok');
    await poll();
  } catch (e) {
    say(status, e, 'error');
  }
}

// ---- budgets -------------------------------------------------------------

const used = (w) => (w.limit ? `${fmt(w.used)} of ${compact(w.limit)}` : `${fmt(w.used)} (no limit)`);

async function loadBudgets() {
  const status = $('#budgets-status');
  try {
    const r = await callJSON('/admin/budgets', { key: 'admin' });
    $('#budgets tbody').replaceChildren(...r.data.map((b) => {
      const reset = el('button', { type: 'button', textContent: 'Reset',
                                   attrs: { 'aria-label': `Reset the budget of ${b.client}` } });
      reset.addEventListener('click', () => busy(reset, async () => {
        try {
          await callJSON(`/admin/budgets/${encodeURIComponent(b.client)}/reset`, { key: 'admin', method: 'POST' });
          say(status, `Budget of ${b.client} reset.`, 'ok');
          await loadBudgets();
        } catch (e) { say(status, e, 'error'); }
      }));
      return el('tr', {},
        el('th', { scope: 'row', textContent: b.client }),
        el('td', { textContent: b.limit ? `${fmt(b.remaining)} of ${compact(b.limit)}` : 'no limit' }),
        el('td', { textContent: used(b.day) }),
        el('td', { textContent: used(b.month) }),
        el('td', {}, reset));
    }));
    if (!r.data.length) say(status, 'No client has used tokens yet.');
  } catch (e) {
    say(status, e, 'error');
  }
}

// ---- knowledge base ------------------------------------------------------

function kbType(name) {
  if (/\.(md|markdown)$/i.test(name)) return 'markdown';
  if (/\.html?$/i.test(name)) return 'html';
  return 'text';
}

async function loadKb() {
  const status = $('#kb-status');
  try {
    const r = await callJSON('/admin/kb', { key: 'admin' });
    const docs = r.documents || r.data || [];
    const st = r.stats || r;
    $('#kb-stats').textContent = `${fmt(st.documents ?? docs.length)} documents, ${fmt(st.chunks)} chunks, ` +
      `version ${st.version ?? r.version ?? 'n/a'}` + (st.map_used ? `, ${bytes(st.map_used)} used` : '');
    $('#kb-docs tbody').replaceChildren(...docs.map((d) => {
      const del = el('button', { type: 'button', textContent: 'Delete',
                                 attrs: { 'aria-label': `Delete ${d.id}` } });
      del.addEventListener('click', () => busy(del, async () => {
        try {
          await call(`/admin/kb/documents/${encodeURIComponent(d.id)}`, { key: 'admin', method: 'DELETE' });
          say(status, `Deleted ${d.id}.`, 'ok');
          await loadKb();
        } catch (e) { say(status, e, 'error'); }
      }));
      return el('tr', {},
        el('th', { scope: 'row', textContent: d.id }),
        el('td', { textContent: d.title || '' }),
        el('td', { textContent: d.type || '' }),
        el('td', { textContent: fmt(d.chunks) }),
        el('td', { textContent: bytes(d.bytes) }),
        el('td', {}, del));
    }));
  } catch (e) {
    say(status, e, 'error');
  }
}

async function upload() {
  const status = $('#kb-status');
  const files = [...$('#kb-files').files];
  const done = [];
  try {
    for (const f of files) {
      say(status, `Uploading ${f.name}…`);
      const r = await callJSON('/admin/kb/documents', { key: 'admin', json: {
        id: f.name, content: await f.text(), type: kbType(f.name) } });
      done.push(r.chunks === undefined ? f.name : `${f.name} (${fmt(r.chunks)} chunks)`);
    }
    say(status, `Added ${done.join(', ')}.`, 'ok');
    $('#kb-files').value = '';
  } catch (e) {
    say(status, `${done.length ? `Added ${done.join(', ')}; then ` : ''}${e}`, 'error');
  }
  await loadKb();
}

// ---- page ------------------------------------------------------------------

function refresh() {
  return Promise.all([poll(), loadBudgets(), loadKb()]);
}

export function init() {
  charts = { rps: new Spark($('#chart-rps')), tps: new Spark($('#chart-tps')),
             hit: new Spark($('#chart-hit')) };
  $('#admin-refresh').addEventListener('click', (e) => busy(e.currentTarget, refresh));
  $('#purge-by').addEventListener('change', () => {
    const by = $('#purge-by').value;
    const input = $('#purge-value');
    input.disabled = by === 'all';
    input.inputMode = by === 'older_than_s' || by === 'kb_version_below' ? 'numeric' : 'text';
    if (!input.disabled) input.focus();
  });
  $('#purge-form').addEventListener('submit', (e) => { e.preventDefault(); busy($('#purge-send'), purge); });
  $('#kb-form').addEventListener('submit', (e) => { e.preventDefault(); busy($('#kb-send'), upload); });
  document.addEventListener('keys-changed', () => { if (timer) refresh(); });
}

export function show() {
  prev = null;
  refresh();
  timer = setInterval(poll, POLL_MS);
}

export function hide() {
  clearInterval(timer);
  timer = null;
}
